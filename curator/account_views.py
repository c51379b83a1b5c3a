"""The user's own account pages: log-in with a limit on failed attempts, and the API token page."""

import functools
from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from curator import throttling
from curator.services import accounts


def login_throttled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A log-in view (ours or the admin's) that refuses further attempts (429 with Retry-After)
    once a user name or a client address failed too often (settings.CURATOR_LOGIN_USER_RATE /
    CURATOR_LOGIN_IP_RATE). Both log-in pages go through this one wrapper, so failures at either
    count toward the same limits.

    Django's LoginView answers a POST with a redirect when the log-in succeeded and with the form
    again (200) when it did not; that is how the outcome is read here."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        username = request.POST.get("username", "")
        block = throttling.login_blocked(request, username)
        if block is not None:
            response = render(request, "registration/login_throttled.html", {"message": block.message}, status=429)
            response["Retry-After"] = str(block.seconds)
            return response
        response = view(request, *args, **kwargs)
        if response.status_code in (301, 302, 303) and request.user.is_authenticated:
            throttling.login_success_record(request, request.user.get_username())
        elif response.status_code == 200:
            throttling.login_failure_record(request, username)
        return response

    return login_not_required(wrapper)


login = login_throttled(auth_views.LoginView.as_view())
# The admin's own page (its template, its staff-only form), behind the same limits.
admin_login = login_throttled(admin.site.login)


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
