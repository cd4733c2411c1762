from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard.api.urls import urls as api_urls

VIEW_AREAS = (
    "runs",
    "sharing",
    "results",
    "compare",
    "history",
    "reviews",
    "calibration",
    "noise",
    "budget",
    "datasets",
    "judges",
    "ops",
    "tokens",
)

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls),
    # Each area keeps its routes next to its views (in this order: the first route that matches wins).
    *(path("", include(f"dashboard.views.{area}")) for area in VIEW_AREAS),
]

if settings.OFFLINE_JUDGE_ENABLED:
    urlpatterns.append(path("judge-api/", include("offline_judge.urls")))
