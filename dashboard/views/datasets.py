from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


def dataset_list(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/dataset_list.html", {})


urlpatterns = [
    path("datasets/", dataset_list, name="dataset_list"),
]
