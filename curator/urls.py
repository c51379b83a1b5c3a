from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.utils.functional import lazy
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from curator import account_views, health, views

urlpatterns = [
    # The admin's log-in page through the same limit on failed attempts as ours (before admin.site.urls).
    path("admin/login/", account_views.admin_login),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages that name no icon (the admin's): no 404 there either.
    # (Resolved per request: in production the static URL needs collectstatic's manifest, which
    # does not exist yet when `migrate` or another command first imports the URLs.)
    path("favicon.ico", login_not_required(RedirectView.as_view(url=lazy(static, str)("favicon.svg"), permanent=True))),
    # Django's log-in view with a limit on failed attempts (curator/throttling.py).
    path("accounts/login/", account_views.login, name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/token/", account_views.api_token, name="account-token"),
    path("healthz", health.healthz, name="healthz"),
    path("media/<path:path>", views.media_file, name="media"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its start-up script as a file: the CSP runs no inline script.
    path("api/v1/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("curator.api_urls")),
    # labeling.urls holds /labeling/... and the face page /datasets/<id>/faces/<id>/.
    path("", include("labeling.urls")),
    path("training/", include("training.urls")),
    path("predict/", include("training.predict_urls")),
    path("review/", include("review.urls")),
    path("embeddings/", include("embeddings.urls")),
    path("", include("curator.dataset_urls")),
]
