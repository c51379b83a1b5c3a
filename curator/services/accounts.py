"""A user's own API token (DRF authtoken: one token per user). The key is shown once, on the page
that creates it; afterwards only its existence and age are shown, and revoking deletes it."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from rest_framework.authtoken.models import Token


def api_token_create(*, user: AbstractBaseUser) -> Token:
    """A new token for the user, replacing (and so revoking) the one they had."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_revoke(*, user: AbstractBaseUser) -> bool:
    """Delete the user's token; False when they had none."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return bool(deleted)
