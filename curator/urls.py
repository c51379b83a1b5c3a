from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from curator import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", login_not_required(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("media/<path:path>", views.media_file, name="media"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("curator.api_urls")),
    path("labeling/", include("labeling.urls")),
    path("training/", include("training.urls")),
    path("predict/", include("training.predict_urls")),
    path("review/", include("review.urls")),
    path("", include("curator.dataset_urls")),
]
