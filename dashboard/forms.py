from __future__ import annotations

from typing import Any

from django import forms

from evals.models import MAX_BATCH_SIZE, Dataset, Judge, Run
from evals.services.judges import judges_for_current_api


class RunForm(forms.Form):
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), empty_label="Choose a dataset…")
    judge = forms.ModelChoiceField(queryset=Judge.objects.none(), empty_label="Choose a judge…")
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
    batch_size = forms.IntegerField(
        min_value=1,
        max_value=MAX_BATCH_SIZE,
        initial=MAX_BATCH_SIZE,
        help_text=f"Items per remote batch, at most {MAX_BATCH_SIZE}.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(status=Dataset.Status.READY)  # type: ignore[attr-defined]
        self.fields["judge"].queryset = judges_for_current_api().filter(is_listed=True)  # type: ignore[attr-defined]

    def clean_tags(self) -> list[str]:
        return [tag.strip() for tag in self.cleaned_data["tags"].split(",") if tag.strip()]


class RunFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "Any status"), *Run.Status.choices], required=False)
    judge = forms.ModelChoiceField(queryset=Judge.objects.none(), required=False, empty_label="Any judge")
    tag = forms.CharField(required=False, max_length=200)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["judge"].queryset = Judge.objects.filter(runs__isnull=False).distinct()  # type: ignore[attr-defined]
