from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


def judge_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/judge_list.html", {})


urlpatterns = [
    path("judges/", judge_list, name="judge_list"),
]
