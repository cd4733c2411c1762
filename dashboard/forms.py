from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict

from evals.models import MAX_BATCH_SIZE, Dataset, Judge, Run
from evals.services.judges import judges_for_current_api
from evals.services.run_options import RunError, clean_max_cost, clean_project_id


class RunForm(forms.Form):
    """Start a run. The evaluator checkboxes belong to one judge: `evaluators_for` says which, so ticks
    sent for a judge the user has since changed are dropped (the new judge runs whole) instead of
    being refused as unknown choices."""

    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), empty_label="Choose a dataset…")
    judge = forms.ModelChoiceField(queryset=Judge.objects.none(), empty_label="Choose a judge…")
    evaluators = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="All ticked runs the whole judge; untick some to run only the others (an evaluator set).",
    )
    evaluators_for = forms.IntegerField(required=False, widget=forms.HiddenInput)
    max_cost = forms.FloatField(
        required=False,
        label="Spending cap ($)",
        widget=forms.NumberInput(attrs={"step": "any", "min": "0", "inputmode": "decimal"}),
        error_messages={"invalid": "Enter an amount such as 5 or 12.50, or leave it empty for no cap."},
    )
    name = forms.CharField(max_length=200, required=False, help_text="Optional; shown in lists and exports.")
    tags = forms.CharField(
        max_length=2000,
        required=False,
        help_text="Comma-separated, e.g. release-2.3, nightly. Every execution log gets them.",
    )
    judge_version_id = forms.CharField(
        max_length=64,
        required=False,
        label="Judge version id",
        help_text="Leave empty for the current version.",
    )
    project_id = forms.CharField(
        max_length=64,
        required=False,
        label="Project id",
        help_text="The judge API project that receives the run's batches and logs; empty: the judge's own.",
    )
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        initial=MAX_BATCH_SIZE,
        help_text=f"Items per remote batch, at most {MAX_BATCH_SIZE}.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(status=Dataset.Status.READY)  # type: ignore[attr-defined]
        judges = judges_for_current_api().filter(is_listed=True)
        self.fields["judge"].queryset = judges  # type: ignore[attr-defined]
        self.fields["project_id"].initial = settings.SCORABLE_PROJECT_ID
        if settings.SCORABLE_PROJECT_ID:
            self.fields["project_id"].help_text = (
                "The judge API project that receives the run's batches and logs (SCORABLE_PROJECT_ID by "
                "default); empty: the judge's own."
            )
        self.fields["max_cost"].initial = settings.DOCKET_DEFAULT_MAX_COST
        self.fields["max_cost"].help_text = (
            "The run pauses before a batch would take it past this; empty: no cap."
            + (" The default is DOCKET_DEFAULT_MAX_COST." if settings.DOCKET_DEFAULT_MAX_COST else "")
        )
        source = self.data if self.is_bound else self.initial
        pk = str(source.get("judge") or "")
        judge = judges.filter(pk=int(pk)).first() if pk.isascii() and pk.isdigit() and len(pk) < 18 else None
        self.chosen_judge: Judge | None = judge
        evaluators = [e for e in judge.evaluators if isinstance(e, dict) and e.get("id")] if judge else []
        choices = [(str(e["id"]), str(e.get("name") or e["id"])) for e in evaluators]
        self.fields["evaluators"].choices = choices  # type: ignore[attr-defined]
        ids = [value for value, _label in choices]
        same_judge = judge is not None and str(source.get("evaluators_for") or "") == str(judge.pk)
        if isinstance(self.data, QueryDict):
            data = self.data.copy()
            if not same_judge:
                # Ticks made for another judge (or none shown yet): this judge runs whole.
                data.setlist("evaluators", ids)
            data["evaluators_for"] = str(judge.pk) if judge else ""
            self.data = data
        if not self.is_bound:
            wanted = self.initial.get("evaluators") or []
            kept = [i for i in wanted if i in ids] if same_judge else []
            self.initial["evaluators"] = kept or ids
        self.initial["evaluators_for"] = judge.pk if judge else None

    @property
    def evaluator_ids(self) -> list[str]:
        """The ids shown for this judge (not necessarily ticked)."""
        return [str(value) for value, _label in self.fields["evaluators"].choices]  # type: ignore[attr-defined]

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]

    def clean_evaluators(self) -> list[str]:
        chosen = list(self.cleaned_data["evaluators"])
        if self.chosen_judge is not None and self.evaluator_ids and not chosen:
            raise forms.ValidationError("Tick at least one evaluator; all of them runs the whole judge.")
        return chosen

    def clean_project_id(self) -> str:
        try:
            return clean_project_id(self.cleaned_data["project_id"])
        except RunError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def clean_max_cost(self) -> float | None:
        try:
            return clean_max_cost(self.cleaned_data["max_cost"])
        except RunError as exc:
            raise forms.ValidationError(str(exc)) from exc


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *Run.Status.choices], required=False)
    judge = forms.ModelChoiceField(queryset=Judge.objects.none(), required=False, empty_label="Any judge")
    tag = forms.CharField(required=False, max_length=200)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["judge"].queryset = Judge.objects.filter(runs__isnull=False).distinct()  # type: ignore[attr-defined]
