from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.api.urls import urls as api_urls

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls),
    # Each area keeps its routes next to its views.
    path("", include("dashboard.views.runs")),
    path("", include("dashboard.views.sharing")),
    path("", include("dashboard.views.results")),
    path("", include("dashboard.views.compare")),
    path("", include("dashboard.views.history")),
    path("", include("dashboard.views.reviews")),
    path("", include("dashboard.views.calibration")),
    path("", include("dashboard.views.noise")),
    path("", include("dashboard.views.budget")),
    path("", include("dashboard.views.datasets")),
    path("", include("dashboard.views.judges")),
    path("", include("dashboard.views.ops")),
    path("", include("dashboard.views.tokens")),
]

if settings.OFFLINE_JUDGE_ENABLED:
    urlpatterns.append(path("judge-api/", include("offline_judge.urls")))
