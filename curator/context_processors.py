from curator.permissions import is_curator


def roles(request):
    return {"user_is_curator": is_curator(request.user)}
