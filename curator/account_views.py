"""The user's own account pages: log-in with a limit on failed attempts, and the API token page."""

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from curator import throttling
from curator.services import accounts


class LoginView(auth_views.LoginView):
    """Django's log-in view, refusing further attempts (429 with Retry-After) once a user name or a
    client address failed too often (settings.CURATOR_LOGIN_USER_RATE / CURATOR_LOGIN_IP_RATE)."""

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        block = throttling.login_blocked(request, request.POST.get("username", ""))
        if block is not None:
            response = render(request, "registration/login_throttled.html", {"message": block.message}, status=429)
            response["Retry-After"] = str(block.seconds)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        throttling.login_failure_record(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        throttling.login_success_record(self.request, form.get_user().get_username())
        return super().form_valid(form)


@never_cache  # the page that shows a new key must not be kept by the browser or a proxy
@require_http_methods(["GET", "POST"])
def api_token(request: HttpRequest) -> HttpResponse:
    """Create (or replace) and revoke your own API token; a new key is shown on this response only."""
    new_key = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            new_key = accounts.api_token_create(user=request.user).key
        elif action == "revoke":
            if accounts.api_token_revoke(user=request.user):
                messages.success(request, "Your API token was revoked; scripts using it now get 401.")
            else:
                messages.info(request, "You had no API token.")
            return redirect("account-token")
        else:
            messages.error(request, "Unknown action: choose Create or Revoke.")
            return redirect("account-token")
    token = Token.objects.filter(user=request.user).first()
    return render(request, "curator/account_token.html", {"token": token, "new_key": new_key})
