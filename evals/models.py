"""Docket's state: judges, datasets and their rows, runs, the remote batches that carry them, results.

One unit over 450 lines: the schema. Django finds every model of the app here, and migrations are
made from it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

MAX_BATCH_SIZE = 100
# The fields of a row that a batch input carries to the judge (Scorable's batch input, S2).
INPUT_FIELDS = ("request", "response", "contexts", "expected_output", "turns", "system_prompt")
# What a row sends the judge (Example.as_judge_input): its inputs, and who and which session it is from.
JUDGE_INPUT_FIELDS = (*INPUT_FIELDS, "user_id", "session_id")
# A key column's values up to this length are kept as they are (and shown); longer ones are hashed.
KEY_LENGTH = 64
DEFAULT_THRESHOLD = 0.5


def turns_before_last_answer(turns: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A conversation without its last assistant turn and what follows it: the part that was asked."""
    turns = list(turns or [])
    for index in range(len(turns) - 1, -1, -1):
        if isinstance(turns[index], dict) and turns[index].get("role") == "assistant":
            return turns[:index]
    return turns


class Judge(models.Model):
    """A judge as the judge API last described it; synced, never edited here."""

    class Source(models.TextChoices):
        SCORABLE = "scorable", "Scorable"
        OFFLINE = "offline", "Offline judge"

    api_url = models.CharField(max_length=500, help_text="The judge API this judge came from.")
    remote_id = models.CharField(max_length=64)
    source = models.CharField(max_length=16, choices=Source.choices)
    name = models.CharField(max_length=512)
    intent = models.TextField(blank=True)
    version_id = models.CharField(max_length=64, blank=True)
    # [{id, name, model, intent, version_id}]
    evaluators = models.JSONField(default=list)
    # {input_name: {type, items?}} as the API gives it
    inputs = models.JSONField(default=dict)
    remote_created_at = models.DateTimeField(null=True, blank=True)
    synced_at = models.DateTimeField(default=timezone.now)
    # False once a sync no longer finds the judge; kept because runs point at it.
    is_listed = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["api_url", "remote_id"], name="judge_unique_per_api"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def required_inputs(self) -> list[str]:
        return sorted(self.inputs)

    @property
    def evaluator_names(self) -> list[str]:
        return [evaluator.get("name", "") for evaluator in self.evaluators]


class Dataset(models.Model):
    class Status(models.TextChoices):
        IMPORTING = "importing", "Importing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now)
    file_name = models.CharField(max_length=255, blank=True)
    file_size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    file_format = models.CharField(max_length=16, blank=True)
    encoding = models.CharField(max_length=32, blank=True)
    # {column_name: field}, field one of Example's input fields, "metadata" or "ignore"
    mapping = models.JSONField(default=dict)
    columns = models.JSONField(default=list)
    metadata_columns = models.JSONField(default=list)
    row_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    rows_done = models.PositiveIntegerField(default=0)
    import_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Upload(models.Model):
    """A file received but not yet imported: parsed, previewed, mapped and validated before any row is written."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        VALIDATED = "validated", "Validated"
        IMPORTING = "importing", "Importing"
        IMPORTED = "imported", "Imported"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    path = models.CharField(max_length=500, help_text="Where the received file lies, under var/uploads.")
    original_name = models.CharField(max_length=255)
    size = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    file_format = models.CharField(max_length=16, blank=True)
    encoding = models.CharField(max_length=32, blank=True)
    # Parsing choices: delimiter, sheet, and the like.
    options = models.JSONField(default=dict, blank=True)
    columns = models.JSONField(default=list, blank=True)
    mapping = models.JSONField(default=dict, blank=True)
    # Counts and the first problems found by validation.
    report = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    dataset = models.ForeignKey(
        Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploads"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.original_name


class Example(models.Model):
    """One row of a dataset, with its text already split into the judge API's input fields."""

    # No index of its own: the (dataset, position) unique constraint covers it, and every index costs
    # inserts on large imports.
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="examples", db_index=False)
    position = models.PositiveIntegerField()
    source_line = models.PositiveIntegerField(default=0)
    request = models.TextField(blank=True)
    response = models.TextField(blank=True)
    contexts = models.JSONField(default=list, blank=True)
    expected_output = models.TextField(blank=True)
    turns = models.JSONField(null=True, blank=True)
    system_prompt = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Sent with the row and copied by the judge onto its execution log (filterable there); at most 255.
    user_id = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    # Pairs the same row across datasets (compare, history): "k:<key>" from a key column the user mapped,
    # else "h:<sha256>" of the inputs. Never the response: that is what changes between runs compared.
    input_key = models.CharField(max_length=80, blank=True, db_index=True)

    class Meta:
        ordering = ["dataset", "position"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "position"], name="example_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id}#{self.position}"

    @staticmethod
    def make_input_key(
        *,
        key: str = "",
        request: str,
        contexts: list[str] | None,
        expected_output: str,
        turns: list[dict[str, Any]] | None,
        system_prompt: str,
    ) -> str:
        """The row's pairing key: the user's key when there is one, else a hash of what the model was asked.

        The hash covers request, contexts, expected output, system prompt and the turns before the last
        assistant turn (the last assistant turn is the response under test).
        """
        key = key.strip()
        if key:
            if len(key) <= KEY_LENGTH:
                return f"k:{key}"
            return "k#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        digest = hashlib.sha256()
        for part in (request, "\x1f".join(contexts or []), expected_output, system_prompt):
            digest.update(part.encode("utf-8", "surrogatepass"))
            digest.update(b"\x1e")
        for turn in turns_before_last_answer(turns):
            digest.update(
                f"{turn.get('role', '')}\x1f{turn.get('content') or ''}".encode("utf-8", "surrogatepass")
            )
            digest.update(b"\x1d")
        return "h:" + digest.hexdigest()

    @property
    def key(self) -> str:
        """The user's key for this row, or "" when the row is paired by a hash of its inputs."""
        return self.input_key[2:] if self.input_key.startswith("k:") else ""

    def as_judge_input(self) -> dict[str, Any]:
        """The BatchInput the judge API takes: only the fields this row has."""
        data: dict[str, Any] = {}
        for name in JUDGE_INPUT_FIELDS:
            value = getattr(self, name)
            if value:
                data[name] = value
        return data

    def has_input(self, name: str) -> bool:
        value = getattr(self, name, None)
        return bool(value)


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> RunQuerySet:
        return self.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING])

    def tagged(self, tag: str) -> RunQuerySet:
        """Runs with this tag (any case). The JSON text of the tag list holds each tag as a quoted string:
        escaped to ASCII where the JSON is stored as text (SQLite), as written where it is jsonb."""
        return self.filter(
            Q(tags__icontains=json.dumps(tag)) | Q(tags__icontains=json.dumps(tag, ensure_ascii=False))
        )


class BackoffKind(models.TextChoices):
    THROTTLED = "throttled", "judge API throttled"
    QUOTA = "quota", "judge API quota exceeded"
    ERROR = "error", "judge API error"
    # Not the judge: the run's spending cap. Nothing new is sent until someone raises it.
    BUDGET = "budget", "budget reached"


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.COMPLETED, Status.PARTIAL, Status.FAILED, Status.CANCELLED)

    # Tags remote batches `docket:<uid>:<batch>`, unique across every Docket that shares a judge account.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, blank=True)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="runs")
    judge = models.ForeignKey(Judge, on_delete=models.PROTECT, related_name="runs")
    judge_version_id = models.CharField(max_length=64, blank=True)
    tags = models.JSONField(default=list, blank=True)
    batch_size = models.PositiveSmallIntegerField(default=MAX_BATCH_SIZE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total_count = models.PositiveIntegerField(default=0)
    completed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    # Bumped in every transaction that changes this run or its items; the live page's cursor.
    change_seq = models.BigIntegerField(default=0)
    # Set while the judge API throttles or fails and the pump waits before trying again.
    backoff_until = models.DateTimeField(null=True, blank=True)
    backoff_reason = models.CharField(max_length=300, blank=True)
    # Why the run waits, as a state the pump reads (backoff_reason is the words shown to people).
    backoff_kind = models.CharField(max_length=16, choices=BackoffKind.choices, blank=True)
    # A run-wide problem worth showing (a judge that rejects every batch, say).
    last_error = models.TextField(blank=True)
    # The evaluator names the run's table shows, in the judge's order (new ones appended as seen).
    evaluators = models.JSONField(default=list, blank=True)
    # {evaluator: {"n", "sum", "min", "max"}} kept up to date as scores arrive, so lists need no aggregates.
    score_summary = models.JSONField(default=dict, blank=True)
    # The pass threshold of each evaluator, {name: value}, as the judge's execution log gave them. Learned
    # once, when the first item completes (thresholds_learned_at), and never changed after: every pass
    # rate, compare and gate of this run reads them. An evaluator the log did not name passes at 0.5.
    thresholds = models.JSONField(default=dict, blank=True)
    thresholds_learned_at = models.DateTimeField(null=True, blank=True)
    # Thresholds chosen when the run was started ({name: value}, the API's `thresholds`): they win over
    # the learned ones for this run's whole life, and every page, compare and gate says "override".
    threshold_overrides = models.JSONField(default=dict, blank=True)
    # A noise check: this run re-judges a random sample of `noise_of`'s items (repeat 1..M of the check),
    # at the same positions, so each re-judged item pairs with the original verdict by position.
    noise_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="noise_runs"
    )
    noise_repeat = models.PositiveSmallIntegerField(default=0)
    # An evaluator set: the remote ids of the evaluators this run sends instead of the whole judge
    # (POST /v1/batch-executions/ with evaluator_ids); empty runs the judge.
    evaluator_ids = models.JSONField(default=list, blank=True)
    # The judge API project that receives the run's batches and logs; "" is the judge's own.
    project_id = models.CharField(max_length=64, blank=True)
    # Spending: totals from the judge's execution logs, added as each batch's logs are read.
    max_cost = models.FloatField(null=True, blank=True, help_text="Stop sending new batches past this cost.")
    cost_total = models.FloatField(default=0.0)
    cost_items = models.PositiveIntegerField(default=0)  # items whose cost is known
    cost_by_evaluator = models.JSONField(default=dict, blank=True)  # {evaluator: sum of its cost}

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # At most one queued or running retry per run: a second "retry" POST returns to it.
            models.UniqueConstraint(
                fields=["retry_of"],
                condition=Q(retry_of__isnull=False, status__in=["queued", "running"]),
                name="run_one_active_retry",
            ),
            # At most one noise check of a run in flight: a second "re-judge a sample" returns to it.
            models.UniqueConstraint(
                fields=["noise_of", "noise_repeat"],
                condition=Q(noise_of__isnull=False, status__in=["queued", "running"]),
                name="run_one_active_noise_check",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"Run {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def pending_count(self) -> int:
        return max(self.total_count - self.completed_count - self.failed_count - self.cancelled_count, 0)

    @property
    def done_count(self) -> int:
        return self.completed_count + self.failed_count + self.cancelled_count

    def threshold_for(self, name: str, *, override: float | None = None) -> tuple[float, str]:
        """An evaluator's pass threshold in this run and where it came from.

        "override" (asked for explicitly, or chosen when the run was started), "judge" (the judge's execution log), "default" (0.5, the log
        named no threshold for it) or "pending" (0.5 until the first item completes and the log is read).
        """
        if override is not None:
            return override, "override"
        chosen = self.threshold_overrides.get(name)
        if isinstance(chosen, int | float) and not isinstance(chosen, bool):
            return float(chosen), "override"
        value = self.thresholds.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), "judge"
        return DEFAULT_THRESHOLD, "default" if self.thresholds_learned_at else "pending"

    def passes(self, name: str, score: float | None, *, override: float | None = None) -> bool | None:
        """The judge's verdict on one score: pass when it reaches the evaluator's threshold in this run
        (or `override`, a threshold asked for instead: see threshold_for). The one pass/fail rule."""
        if score is None:
            return None
        return score >= self.threshold_for(name, override=override)[0]

    def passing(self, name: str, *, override: float | None = None, field: str = "score") -> Q:
        """`passes` as a filter on `field`, to count passes in the database instead of score by score."""
        return Q(**{f"{field}__gte": self.threshold_for(name, override=override)[0]})

    @property
    def evaluator_means(self) -> list[tuple[str, float | None, int]]:
        means = []
        for name in self.evaluators:
            entry = self.score_summary.get(name) or {}
            n = int(entry.get("n", 0))
            means.append((name, entry["sum"] / n if n else None, n))
        return means


class RemoteBatchQuerySet(models.QuerySet["RemoteBatch"]):
    def unfinished(self) -> RemoteBatchQuerySet:
        return self.filter(status__in=RemoteBatch.UNFINISHED)

    def in_flight(self) -> RemoteBatchQuerySet:
        return self.filter(status__in=[RemoteBatch.Status.SUBMITTING, RemoteBatch.Status.RUNNING])

    def due(self, now: Any = None) -> RemoteBatchQuerySet:
        now = now or timezone.now()
        return self.unfinished().filter(
            Q(next_action_at__isnull=True) | Q(next_action_at__lte=now),
            Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        )


class RemoteBatch(models.Model):
    """One remote batch execution: at most 100 of a run's items, created once, polled until done."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"  # not sent yet
        SUBMITTING = "submitting", "Submitting"  # a create was sent; its outcome may be unknown
        RUNNING = "running", "Running"  # the judge accepted it; being polled
        COMPLETED = "completed", "Completed"
        PARTIAL = "partial", "Partial"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    UNFINISHED = (Status.WAITING, Status.SUBMITTING, Status.RUNNING)

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="batches")
    position = models.PositiveIntegerField()
    size = models.PositiveSmallIntegerField(default=0)
    remote_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    remote_status = models.CharField(max_length=16, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    polls = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_action_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=100, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Seconds until the next poll when nothing changes; grows while the batch stands still.
    poll_interval = models.FloatField(default=1.0)
    # Times a bad row was cut out of this batch (a 400 naming inputs[i]); each re-send gets a new tag.
    splits = models.PositiveSmallIntegerField(default=0)
    # Since when the judge has reported a batch status Docket does not know.
    unknown_status_since = models.DateTimeField(null=True, blank=True)
    # The batch's execution logs were read (cost per item and evaluator): once, after it finished.
    logs_fetched_at = models.DateTimeField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True)

    objects = RemoteBatchQuerySet.as_manager()

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="batch_unique_position"),
        ]
        indexes = [models.Index(fields=["status", "next_action_at"], name="batch_due_idx")]

    def __str__(self) -> str:
        return self.tag

    @property
    def tag(self) -> str:
        # A batch re-sent without a bad row is another remote batch: a new tag keeps lookups exact.
        suffix = f".{self.splits}" if self.splits else ""
        return f"docket:{self.run.uid}:{self.position}{suffix}"

    @property
    def is_finished(self) -> bool:
        return self.status not in self.UNFINISHED


class Item(models.Model):
    """One example inside a run, and what the judge said about it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="items")
    example = models.ForeignKey(Example, on_delete=models.CASCADE, related_name="items")
    batch = models.ForeignKey(
        RemoteBatch, null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    position = models.PositiveIntegerField()
    index_in_batch = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error_message = models.TextField(blank=True)
    execution_log_id = models.CharField(max_length=64, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    change_seq = models.BigIntegerField(default=0)
    # Cost, model and latency from the judge's execution log, fetched on demand and kept.
    log_detail = models.JSONField(null=True, blank=True)
    # The item failed for a reason a retry cannot fix (the judge rejected its input); retries skip it.
    error_is_permanent = models.BooleanField(default=False)
    # What judging the item cost, from the execution logs of its batch; per evaluator {name: cost}.
    cost = models.FloatField(null=True, blank=True)
    evaluator_costs = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="item_unique_position"),
        ]
        indexes = [
            models.Index(fields=["run", "change_seq"], name="item_changes_idx"),
            models.Index(fields=["run", "status", "position"], name="item_status_idx"),
            models.Index(fields=["batch", "index_in_batch"], name="item_batch_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.run_id}#{self.position}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Score(models.Model):
    """One evaluator's verdict on one item."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="scores")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="scores")
    evaluator_name = models.CharField(max_length=512)
    evaluator_id = models.CharField(max_length=64, blank=True)
    score = models.FloatField(null=True, blank=True)
    justification = models.TextField(blank=True)
    confidence = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["item", "evaluator_name"]
        constraints = [
            models.UniqueConstraint(fields=["item", "evaluator_name"], name="score_unique_evaluator"),
        ]
        indexes = [models.Index(fields=["run", "evaluator_name", "score", "item"], name="score_sort_idx")]

    def __str__(self) -> str:
        return f"{self.evaluator_name}={self.score}"


class Review(models.Model):
    """A person's verdict on one evaluator's score of one item: pass or fail, perhaps a corrected score
    and a comment. One per reviewer, item and evaluator; its author may change it."""

    class Label(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="reviews")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="reviews")
    evaluator_name = models.CharField(max_length=512)
    # Kept when the account goes (reviewer_name says who it was): a calibration set outlives its people.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    reviewer_name = models.CharField(max_length=150)
    label = models.CharField(max_length=4, choices=Label.choices)
    # The score the reviewer would have given, on the judge's scale (0 to 1); None: only pass or fail.
    score = models.FloatField(null=True, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["item", "evaluator_name", "updated_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["item", "evaluator_name", "reviewer"], name="review_one_per_reviewer"
            ),
            models.CheckConstraint(condition=Q(label__in=["pass", "fail"]), name="review_label_valid"),
        ]
        indexes = [models.Index(fields=["run", "evaluator_name"], name="review_run_idx")]

    def __str__(self) -> str:
        return f"{self.reviewer_name}: {self.evaluator_name} {self.label}"

    @property
    def passed(self) -> bool:
        return self.label == self.Label.PASS


class ShareLinkQuerySet(models.QuerySet["ShareLink"]):
    def usable(self) -> ShareLinkQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ShareLink(models.Model):
    """Read-only access to one run for people without an account. Only the token's SHA-256 is kept."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="share_links")
    token_hash = models.CharField(max_length=64, unique=True)
    label = models.CharField(max_length=200, blank=True)
    hide_text = models.BooleanField(default=False)
    # With hide_text: justifications may quote the hidden text, so they are shown only when asked for.
    show_justifications = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveIntegerField(default=0)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.label or f"Share link {self.pk}"

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class PumpSlot(models.Model):
    """One of the few pumps allowed to run at once, held by lease; also the pump's heartbeat."""

    slot = models.PositiveSmallIntegerField(unique=True)
    owner = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    beat_at = models.DateTimeField(null=True, blank=True)
    batches_worked = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["slot"]

    def __str__(self) -> str:
        return f"pump slot {self.slot}"


class JudgeApiEvent(models.Model):
    """A judge API call that failed or was throttled: what the status page shows (kept for a day)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=16)  # create, lookup, poll
    status = models.CharField(max_length=32, help_text="HTTP status, or what happened instead (timeout...).")
    throttled = models.BooleanField(default=False)
    message = models.TextField(blank=True)
    attempt = models.PositiveIntegerField(default=1)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.action} {self.status}"


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))


class ApiToken(models.Model):
    """A personal token for Docket's HTTP API (`Authorization: Bearer ...`). Only its SHA-256 is kept."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Read and write"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True)
    # The token's first characters, kept to tell tokens apart in the list ("dkt_3fA9…").
    prefix = models.CharField(max_length=12)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @property
    def can_write(self) -> bool:
        return self.scope == self.Scope.WRITE
