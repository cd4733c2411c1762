"""The offline judge's state: batches, their items, execution logs, and the clock of its processing lanes.

Results are computed when a batch is created and revealed by time: every item is scheduled on a lane
at create time and stores when it starts and completes. What a client sees at time t (statuses, counts,
results) is derived from those stored times, so it can be filtered in SQL and never needs a worker.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.db.models import Q


class Outcome(models.TextChoices):
    """How an item or a batch ends. What it shows before then depends on the time."""

    COMPLETED = "completed", "Completed"
    PARTIAL = "partial", "Partial"
    FAILED = "failed", "Failed"


class BatchStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    PARTIAL = "partial", "Partial"


class BatchQuerySet(models.QuerySet["Batch"]):
    def with_status(self, status: str, now: datetime) -> BatchQuerySet:
        """Batches whose status at `now` is `status`, decided in SQL from the stored schedule."""
        if status == BatchStatus.PENDING:
            return self.filter(first_started_at__gt=now)
        if status == BatchStatus.PROCESSING:
            return self.filter(first_started_at__lte=now, last_completed_at__gt=now)
        return self.filter(last_completed_at__lte=now, outcome=status)

    def created_between(self, start: datetime | None, end: datetime | None) -> BatchQuerySet:
        query = Q()
        if start is not None:
            query &= Q(created_at__gte=start)
        if end is not None:
            query &= Q(created_at__lte=end)
        return self.filter(query)


class Batch(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Creation order, handed out under the lane clock's lock: strict even when two creates share a timestamp.
    seq = models.PositiveBigIntegerField(unique=True)
    # Null for an evaluator-only batch (POST /v1/batch-executions/ with evaluator_ids).
    judge_id = models.UUIDField(null=True, blank=True, db_index=True)
    judge_version_id = models.UUIDField(null=True, blank=True)
    judge_name = models.CharField(max_length=512, blank=True)
    # [{id, name, version_id}] as run, kept so the reply never depends on today's catalogue.
    evaluators = models.JSONField(default=list)
    project_id = models.UUIDField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField()
    first_started_at = models.DateTimeField()
    last_completed_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    total_count = models.PositiveIntegerField()
    # Set when a fault failed the whole batch; every item then carries this message.
    failure = models.TextField(blank=True)

    objects = BatchQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [models.Index(fields=["created_at"], name="oj_batch_created_idx")]

    def __str__(self) -> str:
        return str(self.id)

    def status_at(self, now: datetime) -> str:
        if now < self.first_started_at:
            return BatchStatus.PENDING
        if now < self.last_completed_at:
            return BatchStatus.PROCESSING
        return self.outcome


class BatchTag(models.Model):
    """One tag of one batch, as a row, so that "batches with this tag" is a plain query on any database."""

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="tag_rows")
    tag = models.CharField(max_length=1000)

    class Meta:
        indexes = [models.Index(fields=["tag"], name="oj_batch_tag_idx")]

    def __str__(self) -> str:
        return self.tag


class ExecutionLog(models.Model):
    """An execution log: a judge-level (or evaluator-set) log per item, and one child per evaluator.

    `detail` is the reply of GET /v1/execution-logs/{id}/ minus id, created_at and tags. A child keeps
    only what differs from its parent (its evaluator's score, cost, model, justification): the inputs,
    up to 3.5 million characters each, are stored once, on the parent. The columns are what the list
    endpoint filters and shows, so a page of logs never reads `detail` unless `include` asks for it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # When the log becomes visible: the item's completion time, or the moment a single execute returned.
    created_at = models.DateTimeField(db_index=True)
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="logs")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    judge_id = models.UUIDField(null=True, blank=True)
    execution_type = models.CharField(max_length=16, default="judge")
    executed_item_id = models.UUIDField(null=True, blank=True)
    executed_item_name = models.CharField(max_length=1000, blank=True)
    executed_item_version_id = models.UUIDField(null=True, blank=True)
    project_id = models.UUIDField(null=True, blank=True)
    user_id = models.CharField(max_length=255, blank=True)
    session_id = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=1000, blank=True)
    request_preview = models.CharField(max_length=500, blank=True)
    response_preview = models.CharField(max_length=500, blank=True)
    score = models.FloatField(null=True, blank=True)
    cost = models.FloatField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    # False: the tags are the batch's (rows of BatchTag), so a batch's thousands of logs need no tag rows.
    # True: the log's own, as rows of LogTag (a single execute's tags, or tags replaced by set-tags).
    own_tags = models.BooleanField(default=False)
    detail = models.JSONField(default=dict)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at", "id"], name="oj_log_created_id_idx"),
            models.Index(fields=["batch", "created_at"], name="oj_log_batch_created_idx"),
        ]

    def __str__(self) -> str:
        return str(self.id)


class LogTag(models.Model):
    """One tag of a log whose tags are its own (`ExecutionLog.own_tags`), as a row, for exact matching."""

    log = models.ForeignKey(ExecutionLog, on_delete=models.CASCADE, related_name="tag_rows")
    tag = models.CharField(max_length=1000)

    class Meta:
        indexes = [models.Index(fields=["tag"], name="oj_log_tag_idx")]

    def __str__(self) -> str:
        return self.tag


class BatchItem(models.Model):
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField()
    # The submitted input as the API echoes it: request, response, contexts, expected_output, turns.
    input = models.JSONField(default=dict)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    # The six-field EvaluatorResult list, revealed once completed_at has passed.
    evaluator_results = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    execution_log = models.OneToOneField(
        ExecutionLog, null=True, blank=True, on_delete=models.SET_NULL, related_name="item"
    )
    started_at = models.DateTimeField()
    completed_at = models.DateTimeField()

    class Meta:
        ordering = ["batch", "index"]
        constraints = [models.UniqueConstraint(fields=["batch", "index"], name="oj_item_unique_index")]

    def __str__(self) -> str:
        return f"{self.batch_id}#{self.index}"

    def status_at(self, now: datetime) -> str:
        if now < self.started_at:
            return BatchStatus.PENDING
        if now < self.completed_at:
            return BatchStatus.PROCESSING
        return self.outcome


class LaneClock(models.Model):
    """The one row holding when each processing lane is next free, in microseconds since the epoch.

    Every create locks it, so items are scheduled first come, first served across all batches.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    free_at_us = models.JSONField(default=list)
    batches_created = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{len(self.free_at_us)} lanes"
