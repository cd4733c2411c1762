from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path


def home(request: HttpRequest) -> HttpResponse:
    return redirect("run_list")


def run_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/run_list.html", {})


urlpatterns = [
    path("", home, name="home"),
    path("runs/", run_list, name="run_list"),
]
