"""What the dataset and upload pages list."""

from __future__ import annotations

from django.db.models import QuerySet

from evals.models import INPUT_FIELDS, Dataset, Upload


def upload_duplicates(upload: Upload) -> QuerySet[Dataset]:
    """Datasets imported from a file with the same SHA-256."""
    return (
        Dataset.objects.filter(sha256=upload.sha256)
        .exclude(status=Dataset.Status.FAILED)
        .order_by("-created_at")
    )


def dataset_input_counts(dataset: Dataset) -> dict[str, int]:
    """How many rows carry each judge input field."""
    examples = dataset.examples.all()
    counts = {}
    for name in INPUT_FIELDS:
        if name in ("contexts", "turns"):
            filled = examples.exclude(**{f"{name}__isnull": True}).exclude(**{name: []})
        else:
            filled = examples.exclude(**{name: ""})
        counts[name] = filled.count()
    return counts
