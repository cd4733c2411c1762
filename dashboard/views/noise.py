"""Judge noise: the plan of "re-judge a sample" and starting it. Team only; results show on the calibration page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import URLPattern, path, reverse
from django.views.decorators.http import require_GET, require_http_methods

from dashboard.http import HtmxHttpRequest
from evals.models import Run
from evals.services.noise import (
    DEFAULT_REPEATS,
    DEFAULT_SAMPLE,
    MAX_REPEATS,
    MAX_SAMPLE,
    NoiseError,
    noise_check_create,
    noise_check_plan,
    noise_report,
)


def _count_field(
    *, label: str, name: str, unit: str, maximum: int, initial: int, help_text: str
) -> forms.IntegerField:
    """A whole number from 1 to `maximum`, with messages that call the field `name` and count in `unit`."""
    between = f"{name}: choose between 1 and {maximum:,} {unit}."
    return forms.IntegerField(
        label=label,
        min_value=1,
        max_value=maximum,
        initial=initial,
        error_messages={
            "required": f"{name}: enter how many {unit}.",
            "invalid": f"{name}: enter a whole number of {unit}.",
            "min_value": between,
            "max_value": between,
        },
        help_text=help_text,
    )


class NoiseCheckForm(forms.Form):
    sample = _count_field(
        label="Items to re-judge",
        name="Sample",
        unit="items",
        maximum=MAX_SAMPLE,
        initial=DEFAULT_SAMPLE,
        help_text=f"A random sample of the run's scored items, at most {MAX_SAMPLE:,}.",
    )
    repeats = _count_field(
        label="Repeats",
        name="Repeats",
        unit="repeats",
        maximum=MAX_REPEATS,
        initial=DEFAULT_REPEATS,
        help_text=f"How many more times each item is judged, at most {MAX_REPEATS}.",
    )


def _calibration_url(run: Run) -> str:
    return reverse("run_calibration", args=[run.pk]) + "#noise"


def _page(request: HtmxHttpRequest, run: Run, form: NoiseCheckForm, *, status: int = 200) -> HttpResponse:
    """The plan page. The plan is shown for the numbers of a valid form; with bad numbers, only the form
    and what is wrong with them."""
    plan = None
    if not any(name in form.errors for name in form.fields):
        plan = noise_check_plan(
            run=run, sample=form.cleaned_data["sample"], repeats=form.cleaned_data["repeats"]
        )
    context: dict[str, Any] = {
        "run": run,
        "form": form,
        "plan": plan,
        "noise_plan": plan,
        "noise": noise_report(run=run),
        "errors": [error for errors in form.errors.values() for error in errors],
    }
    return render(request, "dashboard/run_noise.html", context, status=status)


@require_http_methods(["GET", "POST"])
def run_noise(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """GET: what re-judging a sample would send (`?sample=&repeats=` change it). POST: start the check,
    or return to the one already under way, and go to the calibration page's noise section."""
    run = get_object_or_404(Run.objects.select_related("dataset", "judge"), pk=pk)
    if request.method == "POST":
        form = NoiseCheckForm(request.POST)
    else:
        asked = {key: request.GET[key] for key in ("sample", "repeats") if key in request.GET}
        form = NoiseCheckForm({"sample": DEFAULT_SAMPLE, "repeats": DEFAULT_REPEATS, **asked})
    if not form.is_valid():
        return _page(request, run, form, status=400)
    sample, repeats = form.cleaned_data["sample"], form.cleaned_data["repeats"]
    if request.method == "GET":
        return _page(request, run, form)
    try:
        runs, created = noise_check_create(run=run, sample=sample, repeats=repeats, created_by=request.user)
    except NoiseError as error:
        form.add_error(error.field if error.field in form.fields else None, error.message)
        return _page(request, run, form, status=400)
    if created:
        items = sum(check.total_count for check in runs)
        messages.success(
            request,
            f"Started: {items:,} item{'s' if items != 1 else ''} in {len(runs)} run{'s' if len(runs) != 1 else ''}.",
        )
    else:
        messages.info(request, "A noise check of this run is already under way: nothing new was sent.")
    return redirect(_calibration_url(run))


# A fragment endpoint of its own, not a #partial of a page: the section sits on two pages (calibration,
# noise plan), and polling either page's view would recompute its bootstrap report or plan every 5 s.
@require_GET
def run_noise_section(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The noise section alone: what the calibration page's section polls while a check is in flight."""
    run = get_object_or_404(Run.objects.select_related("dataset", "judge"), pk=pk)
    return render(
        request, "dashboard/_noise.html", {"run": run, "noise": noise_report(run=run), "noise_plan": None}
    )


urlpatterns: list[URLPattern] = [
    path("runs/<int:pk>/noise/", run_noise, name="run_noise"),
    path("runs/<int:pk>/noise/section/", run_noise_section, name="run_noise_section"),
]
