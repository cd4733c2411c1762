"""Runs: check a dataset against a judge, create the run and its remote batches, cancel, retry."""

from __future__ import annotations

import contextlib
import enum
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from evals.client import JudgeError
from evals.ingest.mapping import normalize
from evals.models import INPUT_FIELDS, MAX_BATCH_SIZE, Dataset, Example, Item, Judge, RemoteBatch, Run
from evals.selectors.datasets import dataset_input_counts
from evals.selectors.runs import run_chain, run_items_merged, run_root
from evals.services.judges import judge_refresh

# A judge may declare inputs beyond INPUT_FIELDS (variables of its scoring criteria, e.g. `product_name`):
# no batch input (BatchExecutionInputRequest, scorable 1.15) has a field for them.
MAX_TAG_LENGTH = 200
RESERVED_TAG_PREFIX = "docket:"
WRITE_CHUNK = 2_000


class RunError(Exception):
    """A run that cannot be started or changed; the message is for the user, `field` names the input
    at fault when one is ("evaluator_ids", "project_id", "max_cost"; "" otherwise)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class Unset(enum.Enum):
    """`max_cost=UNSET`: the run gets the default cap (or its source run's), unlike None, no cap."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True)
class JudgeInput:
    """One input a judge declares. `standard`: a batch row can carry it; a custom one it cannot."""

    name: str
    type: str
    standard: bool


def judge_inputs(judge: Judge) -> list[JudgeInput]:
    """The judge's declared inputs, the standard ones first (in the API's order), then the custom ones."""
    found = []
    for name, spec in judge.inputs.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = str(spec.get("type") or "string")
        items = spec.get("items")
        if isinstance(items, dict) and items.get("type"):
            kind = f"{kind} of {items['type']}"
        found.append(JudgeInput(name=name, type=kind, standard=name in INPUT_FIELDS))
    standard = sorted((i for i in found if i.standard), key=lambda i: INPUT_FIELDS.index(i.name))
    return standard + sorted((i for i in found if not i.standard), key=lambda i: i.name)


def custom_inputs(judge: Judge) -> list[str]:
    return [entry.name for entry in judge_inputs(judge) if not entry.standard]


@dataclass(frozen=True)
class CustomInput:
    """A judge input no batch row can carry, and the dataset column that looks like it ("" if none)."""

    name: str
    column: str = ""


@dataclass(frozen=True)
class EvaluatorSet:
    """The evaluators a run sends: `ids` is [] for the whole judge; `names` in the judge's order."""

    ids: list[str]
    names: list[str]

    @property
    def whole_judge(self) -> bool:
        return not self.ids


def evaluator_set(*, judge: Judge, chosen: Sequence[str] | None) -> EvaluatorSet:
    """The judge's evaluators that `chosen` names, by remote id or by name (any case).

    Nothing chosen, or every evaluator chosen, is the whole judge: the run then sends the judge itself,
    as a run without a set does. Raises RunError (field "evaluator_ids") for a name the judge lacks.
    """
    evaluators = [e for e in judge.evaluators if isinstance(e, dict)]
    wanted = [str(entry).strip() for entry in chosen or () if str(entry).strip()]
    picked: set[int] = set()
    for entry in wanted:
        index = next((i for i, e in enumerate(evaluators) if str(e.get("id") or "") == entry), None)
        if index is None:
            index = next(
                (
                    i
                    for i, e in enumerate(evaluators)
                    if str(e.get("name") or "").casefold() == entry.casefold()
                ),
                None,
            )
        if index is None:
            listed = ", ".join(str(e.get("name") or e.get("id")) for e in evaluators) or "none"
            raise RunError(
                f'"{entry[:80]}" is not an evaluator of {judge.name} (its evaluators: {listed}).',
                field="evaluator_ids",
            )
        picked.add(index)
    names = [str(e.get("name") or "") for e in evaluators]
    if not picked or len(picked) == len(evaluators):
        return EvaluatorSet(ids=[], names=names)
    chosen_evaluators = [evaluators[i] for i in sorted(picked)]
    nameless = [str(e.get("name") or "") for e in chosen_evaluators if not e.get("id")]
    if nameless:
        raise RunError(
            f"The judge API gave no id for {', '.join(nameless)}: sync the judges, then choose again.",
            field="evaluator_ids",
        )
    return EvaluatorSet(
        ids=[str(e["id"]) for e in chosen_evaluators],
        names=[str(e.get("name") or "") for e in chosen_evaluators],
    )


def clean_project_id(value: str, *, from_settings: bool = False) -> str:
    """A judge API project id in its normal form ("" = the judge's own project); RunError if not a UUID."""
    value = value.strip()
    if not value:
        return ""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        where = " (SCORABLE_PROJECT_ID)" if from_settings else ""
        raise RunError(
            f'Project id{where} "{value[:80]}" is not a UUID; project ids look like '
            "0f8fad5b-d9cb-469f-a165-70867728950e.",
            field="project_id",
        ) from None


def clean_max_cost(value: float | None, *, from_settings: bool = False) -> float | None:
    """A spending cap: a number above 0, or None for no cap."""
    if value is None:
        return None
    where = " (DOCKET_DEFAULT_MAX_COST)" if from_settings else ""
    try:
        cap = float(value)
    except (TypeError, ValueError):
        raise RunError(f"The spending cap{where} must be a number.", field="max_cost") from None
    if not math.isfinite(cap) or cap <= 0:
        raise RunError(
            f"The spending cap{where} must be more than $0; leave it empty for no cap.", field="max_cost"
        )
    return cap


@dataclass(frozen=True)
class Preflight:
    rows: int
    batches: int
    batch_size: int
    evaluators: list[str]
    required_inputs: list[str]
    missing_inputs: list[str]
    # Inputs the dataset has for only some rows: those rows will fail at the judge.
    partial_inputs: dict[str, int] = field(default_factory=dict)
    estimated_seconds: float | None = None
    estimate_basis: str = ""
    # An evaluator set: the remote ids sent instead of the judge ([] = the whole judge).
    evaluator_ids: list[str] = field(default_factory=list)
    # Inputs the judge declares beyond INPUT_FIELDS: sent nowhere, since no batch input can carry them.
    custom_inputs: list[CustomInput] = field(default_factory=list)
    # Spending: rows x cost per item, or None with the reason in cost_basis.
    cost_per_item: float | None = None
    estimated_cost: float | None = None
    cost_basis: str = ""
    max_cost: float | None = None

    @property
    def evaluator_set(self) -> bool:
        return bool(self.evaluator_ids)

    @property
    def blocked(self) -> bool:
        # With an evaluator set a missing input only warns: the judge API does not say which of the
        # judge's evaluators reads which input, and the chosen ones may not need it.
        return (bool(self.missing_inputs) and not self.evaluator_set) or self.rows == 0

    @property
    def over_cap(self) -> bool:
        return (
            self.max_cost is not None
            and self.estimated_cost is not None
            and self.estimated_cost > self.max_cost
        )

    @property
    def estimated_cost_text(self) -> str:
        return format_money(self.estimated_cost)

    @property
    def cost_per_item_text(self) -> str:
        return format_money(self.cost_per_item)

    @property
    def max_cost_text(self) -> str:
        return format_money(self.max_cost) if self.max_cost is not None else "no cap"

    @property
    def items_within_cap(self) -> int | None:
        """About how many items the cap pays for, when the estimate passes it."""
        if not self.over_cap or not self.cost_per_item or self.max_cost is None:
            return None
        return int(self.max_cost // self.cost_per_item)


def run_preflight(
    *,
    dataset: Dataset,
    judge: Judge,
    batch_size: int = MAX_BATCH_SIZE,
    evaluator_ids: Sequence[str] | None = None,
    max_cost: float | None = None,
) -> Preflight:
    """What a run would do, before it starts. `evaluator_ids` the form offered but the judge no longer
    has are left out rather than refused: run_create refuses them."""
    rows = dataset.examples.count()
    counts = dataset_input_counts(dataset) if rows else dict.fromkeys(INPUT_FIELDS, 0)
    known = {str(e.get("id")) for e in judge.evaluators if isinstance(e, dict) and e.get("id")}
    chosen = evaluator_set(judge=judge, chosen=[i for i in evaluator_ids or () if i in known])
    required = [name for name in judge.required_inputs if name in INPUT_FIELDS]
    # A judge input the dataset has in no row at all blocks the run: every item would fail.
    missing = [name for name in required if name in counts and counts[name] == 0]
    # Turns can stand in for request/response (the judge reads the conversation).
    if counts.get("turns"):
        missing = [name for name in missing if name not in ("request", "response")]
    partial = {name: rows - counts[name] for name in required if name in counts and 0 < counts[name] < rows}
    estimated, basis = _estimate_seconds(judge=judge, rows=rows)
    per_item, cost_basis = _cost_per_item(judge=judge, chosen=chosen)
    return Preflight(
        rows=rows,
        batches=math.ceil(rows / batch_size) if rows else 0,
        batch_size=batch_size,
        evaluators=chosen.names,
        required_inputs=required,
        missing_inputs=missing,
        partial_inputs=partial,
        estimated_seconds=estimated,
        estimate_basis=basis,
        evaluator_ids=chosen.ids,
        custom_inputs=[
            CustomInput(name=name, column=_column_like(dataset, name)) for name in custom_inputs(judge)
        ],
        cost_per_item=per_item,
        estimated_cost=rows * per_item if per_item is not None else None,
        cost_basis=cost_basis,
        max_cost=max_cost,
    )


def _column_like(dataset: Dataset, name: str) -> str:
    """A column of the dataset named like a custom input (kept as metadata: no batch input takes it)."""
    wanted = normalize(name)
    return next((column for column in dataset.columns if normalize(str(column)) == wanted), "")


def _cost_per_item(*, judge: Judge, chosen: EvaluatorSet) -> tuple[float | None, str]:
    """What one item will cost: the judge's recent cost per item, or for an evaluator set what its
    evaluators cost per item (evals.services.costs); None with the reason when nothing is known."""
    try:
        # Imported here: costs.py builds on the pump and on this module.
        from evals.services.costs import cost_per_item_estimate
    except ImportError:
        return None, "cost estimates are not available in this version of Docket"
    # An unsaved run: the estimate reads its judge's recent runs and, for a set, its evaluators' costs.
    return cost_per_item_estimate(Run(judge=judge, evaluators=chosen.names, evaluator_ids=chosen.ids))


def format_money(value: float | None) -> str:
    """A cost as every page shows it ("$12.50", "$0.0123", "$0.000123"), or "unknown"."""
    try:
        from evals.services.costs import format_cost
    except ImportError:
        return "unknown" if value is None else f"${value:,.4f}"
    return format_cost(value)


def _estimate_seconds(*, judge: Judge, rows: int) -> tuple[float | None, str]:
    """From the throughput of this judge's last finished run, if there is one."""
    last = (
        Run.objects.filter(judge=judge, status__in=[Run.Status.COMPLETED, Run.Status.PARTIAL])
        .exclude(started_at=None)
        .exclude(finished_at=None)
        .filter(completed_count__gte=10)
        .order_by("-finished_at")
        .first()
    )
    if last is None or last.started_at is None or last.finished_at is None:
        return None, "No finished run of this judge yet to estimate from."
    seconds = max((last.finished_at - last.started_at).total_seconds(), 0.001)
    rate = last.done_count / seconds
    return rows / rate, f"At the pace of the last run of this judge ({rate:.1f} items/s)."


def validate_tags(tags: Sequence[str]) -> list[str]:
    cleaned = []
    for tag in tags:
        tag = tag.strip()
        if not tag:
            continue
        if tag.lower().startswith(RESERVED_TAG_PREFIX):
            raise RunError(
                f'Tag "{tag}": tags starting with "docket:" are reserved for Docket\'s own bookkeeping.'
            )
        if len(tag) > MAX_TAG_LENGTH:
            raise RunError(f'Tag "{tag[:40]}…" is longer than {MAX_TAG_LENGTH} characters.')
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def run_create(
    *,
    dataset: Dataset,
    judge: Judge,
    created_by: User | AnonymousUser | None = None,
    name: str = "",
    tags: Sequence[str] = (),
    judge_version_id: str = "",
    batch_size: int = MAX_BATCH_SIZE,
    examples: QuerySet[Example] | None = None,
    retry_of: Run | None = None,
    threshold_overrides: Mapping[str, float] | None = None,
    noise_of: Run | None = None,
    noise_repeat: int = 0,
    evaluator_ids: Sequence[str] | None = None,
    project_id: str | None = None,
    max_cost: float | None | Unset = UNSET,
) -> Run:
    """Create a run with one item per example and its remote batches, then wake the pump.

    `threshold_overrides` ({evaluator: value}) are this run's pass thresholds for good, over the judge's.
    `noise_of`/`noise_repeat`: this run is repeat r of a noise check of that run (evals.services.noise).
    `evaluator_ids`: an evaluator set (remote ids or names of the judge's evaluators); None or all of
    them is the whole judge. `project_id`: the judge API project ("" = the judge's own), by default
    SCORABLE_PROJECT_ID. `max_cost`: the spending cap (None = none), by default DOCKET_DEFAULT_MAX_COST.

    A retry or a noise check re-judges rows of a source run, so unless told otherwise it takes the
    source's evaluator set and project (the verdicts must be comparable) and its cap: a cap bounds
    what one run may spend, and a retry or a repeat sends no more rows than its source did. (The
    alternative, what is left of the source's cap, can be nothing and would start a run that can
    send nothing.)
    """
    if dataset.status != Dataset.Status.READY:
        raise RunError(f'Dataset "{dataset.name}" is not ready yet ({dataset.get_status_display().lower()}).')
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise RunError(f"Batch size must be between 1 and {MAX_BATCH_SIZE}.")
    tags = validate_tags(tags)
    source = retry_of or noise_of
    if evaluator_ids is None and source is not None:
        evaluator_ids = source.evaluator_ids
    if project_id is None:
        project_id = (
            source.project_id
            if source is not None
            else clean_project_id(str(settings.SCORABLE_PROJECT_ID or ""), from_settings=True)
        )
    project_id = clean_project_id(project_id)
    if isinstance(max_cost, Unset):
        if source is not None:
            max_cost = source.max_cost
        else:
            max_cost = clean_max_cost(settings.DOCKET_DEFAULT_MAX_COST, from_settings=True)
    max_cost = clean_max_cost(max_cost)
    judge_version_id = judge_version_id.strip()
    if not judge_version_id:
        # Pin the judge's current version so every batch of the run is judged alike.
        if not judge.version_id:
            # If the API cannot say, no version means "the latest" to it.
            with contextlib.suppress(JudgeError):
                judge = judge_refresh(judge=judge)
        judge_version_id = judge.version_id
    # After the refresh above: the set is checked against the judge's evaluators as they are now.
    chosen = evaluator_set(judge=judge, chosen=evaluator_ids)
    if examples is None:
        preflight = run_preflight(
            dataset=dataset, judge=judge, batch_size=batch_size, evaluator_ids=chosen.ids
        )
        if preflight.rows == 0:
            raise RunError(f'Dataset "{dataset.name}" has no rows.')
        if preflight.blocked:
            names = ", ".join(f'"{name}"' for name in preflight.missing_inputs)
            raise RunError(f"The judge needs {names}, which no row of this dataset has. Map a column to it.")
        examples = dataset.examples.all()

    user = created_by if isinstance(created_by, User) else None
    positions = list(examples.order_by("position").values_list("id", "position"))
    if not positions:
        raise RunError("There is nothing to run.")
    with transaction.atomic():
        run = Run.objects.create(
            name=name.strip()[:200],
            dataset=dataset,
            judge=judge,
            judge_version_id=judge_version_id,
            tags=tags,
            batch_size=batch_size,
            total_count=len(positions),
            created_by=user,
            retry_of=retry_of,
            evaluators=chosen.names,
            threshold_overrides=dict(threshold_overrides or {}),
            noise_of=noise_of,
            noise_repeat=noise_repeat,
            evaluator_ids=chosen.ids,
            project_id=project_id,
            max_cost=max_cost,
        )
        batches = RemoteBatch.objects.bulk_create(
            RemoteBatch(run=run, position=index, size=len(positions[start : start + batch_size]))
            for index, start in enumerate(range(0, len(positions), batch_size))
        )
        items = []
        for offset, (example_id, position) in enumerate(positions):
            batch_index, index_in_batch = divmod(offset, batch_size)
            items.append(
                Item(
                    run=run,
                    example_id=example_id,
                    batch=batches[batch_index],
                    position=position,
                    index_in_batch=index_in_batch,
                )
            )
            if len(items) >= WRITE_CHUNK:
                Item.objects.bulk_create(items)
                items = []
        Item.objects.bulk_create(items)
        transaction.on_commit(wake_pump)
    return run


def wake_pump() -> None:
    from django_q.tasks import async_task

    async_task("evals.tasks.pump", task_name="pump", group="pump")


def run_cancel(*, run: Run) -> Run:
    """Stop submitting: unsent items become cancelled; batches already sent are still collected.

    A batch whose create is out right now is cancelled by the pump when that create fails or turns
    out not to have happened (evals.services.batches.batches_cancel, the one cancel of batches).
    """
    from evals.services.batches import batches_cancel  # batches builds on this module

    if run.is_finished:
        raise RunError("This run has already finished.")
    now = timezone.now()
    with transaction.atomic():
        Run.objects.filter(pk=run.pk, cancel_requested_at=None).update(cancel_requested_at=now)
        if not batches_cancel(run_id=run.pk):
            bump_change_seq(run)
        run_finish_if_done(run_id=run.pk)
    run.refresh_from_db()
    return run


def bump_change_seq(run: Run | int) -> int:
    """Take the next change number of a run, inside the caller's transaction.

    The UPDATE locks the run's row until commit, so writers of one run commit in the order of their
    numbers and a page that has seen number n has seen every change up to n.
    """
    run_id = run if isinstance(run, int) else run.pk
    Run.objects.filter(pk=run_id).update(change_seq=F("change_seq") + 1)
    return Run.objects.filter(pk=run_id).values_list("change_seq", flat=True).get()


def run_finish_if_done(*, run_id: int) -> bool:
    """Give a run its final status once none of its batches is unfinished (inside a transaction)."""
    if RemoteBatch.objects.filter(run_id=run_id).unfinished().exists():
        return False
    run = Run.objects.get(pk=run_id)
    if run.is_finished:
        return False
    if run.cancel_requested_at and run.cancelled_count:
        status = Run.Status.CANCELLED
    elif run.failed_count and not run.completed_count:
        status = Run.Status.FAILED
    elif run.failed_count:
        status = Run.Status.PARTIAL
    else:
        status = Run.Status.COMPLETED
    updated = (
        Run.objects.filter(pk=run_id)
        .exclude(status__in=Run.FINISHED)
        .update(
            status=status,
            finished_at=timezone.now(),
            backoff_until=None,
            backoff_reason="",
            change_seq=F("change_seq") + 1,
        )
    )
    return bool(updated)


# --- Retry -------------------------------------------------------------------------------------------

# Rows a retry skips are listed on the retry form; this many are shown by name, the rest counted.
RETRY_EXCLUDED_SHOWN = 20


def _missing_input(judge: Judge) -> Q | None:
    """Items whose row lacks an input the judge requires: the same rule as `run_preflight`.

    Turns stand in for request and response (the judge reads the conversation).
    """
    no_turns = Q(example__turns__isnull=True) | Q(example__turns=[])
    missing: Q | None = None
    for name in judge.required_inputs:
        if name not in INPUT_FIELDS:
            continue
        if name in ("contexts", "turns"):
            lacks = Q(**{f"example__{name}__isnull": True}) | Q(**{f"example__{name}": []})
        else:
            lacks = Q(**{f"example__{name}": ""})
        if name in ("request", "response"):
            lacks &= no_turns
        missing = lacks if missing is None else missing | lacks
    return missing


@dataclass(frozen=True)
class Excluded:
    """A row a retry would not fix, and why."""

    item: Item
    reason: str


@dataclass(frozen=True)
class RetryPlan:
    """What a retry of a chain would send: rows whose latest verdict is failed or cancelled."""

    root: Run
    failed: int
    cancelled: int
    excluded_count: int
    excluded: list[Excluded]
    active_retry: Run | None
    # Why no retry can start now ("" when one can).
    blocked: str = ""

    @property
    def to_send(self) -> int:
        return self.failed + self.cancelled

    @property
    def label(self) -> str:
        """ "Retry 12 failed", "Resume 3,000 cancelled", or both."""
        parts = []
        if self.failed:
            parts.append(f"Retry {self.failed:,} failed")
        if self.cancelled:
            parts.append(f"{'resume' if parts else 'Resume'} {self.cancelled:,} cancelled")
        return ", ".join(parts)


def _retry_candidates(root: Run) -> tuple[QuerySet[Item], Q]:
    """Items of the chain whose latest verdict is failed or cancelled, and what makes one unfixable."""
    latest = run_items_merged(root).filter(status__in=[Item.Status.FAILED, Item.Status.CANCELLED])
    unfixable = Q(error_is_permanent=True)
    missing = _missing_input(root.judge)
    if missing is not None:
        unfixable |= missing
    return latest, unfixable


def _active_retry(root: Run) -> Run | None:
    return Run.objects.active().filter(pk__in=run_chain(root)).exclude(pk=root.pk).order_by("pk").first()


def run_retry_plan(*, run: Run, shown: int = RETRY_EXCLUDED_SHOWN) -> RetryPlan:
    """What "retry" would send for the chain `run` belongs to, what it skips and why."""
    root = run_root(run)
    active = _active_retry(root)
    blocked = ""
    if active is not None:
        blocked = f"{active} is already retrying this run's failed items."
    elif not root.is_finished:
        blocked = "Wait for the run to finish (or cancel it) before retrying its failed items."
    latest, unfixable = _retry_candidates(root)
    sendable = latest.exclude(unfixable)
    failed = sendable.filter(status=Item.Status.FAILED).count()
    cancelled = sendable.filter(status=Item.Status.CANCELLED).count()
    skipped = latest.filter(unfixable)
    excluded_count = skipped.count()
    excluded = [
        Excluded(item=item, reason=_unfixable_reason(item, root.judge))
        for item in skipped.select_related("example").order_by("position")[:shown]
    ]
    return RetryPlan(
        root=root,
        failed=failed,
        cancelled=cancelled,
        excluded_count=excluded_count,
        excluded=excluded,
        active_retry=active,
        blocked=blocked,
    )


def _unfixable_reason(item: Item, judge: Judge) -> str:
    example = item.example
    has_turns = bool(example.turns)
    lacking = [
        name
        for name in judge.required_inputs
        if name in INPUT_FIELDS
        and not example.has_input(name)
        and not (has_turns and name in ("request", "response"))
    ]
    if lacking:
        names = ", ".join(name.replace("_", " ") for name in lacking)
        return f"The row has no {names}, which the judge requires."
    detail = item.error_message.strip()
    return f"The judge rejected this row: {detail}" if detail else "The judge rejected this row."


def run_retry(*, run: Run, created_by: User | AnonymousUser | None = None) -> tuple[Run, bool]:
    """Start a retry of the chain `run` belongs to, or return the one already queued or running.

    Returns (retry, created). Idempotent under concurrency: the `run_one_active_retry` constraint
    lets one insert win; the loser's savepoint rolls back and it returns the winner's run.
    """
    root = run_root(run)
    active = _active_retry(root)
    if active is not None:
        return active, False
    if not root.is_finished:
        raise RunError("Wait for the run to finish (or cancel it) before retrying its failed items.")
    latest, unfixable = _retry_candidates(root)
    examples = Example.objects.filter(pk__in=latest.exclude(unfixable).values("example_id"))
    if not examples.exists():
        skipped = latest.filter(unfixable).count()
        if skipped:
            raise RunError(
                f"{skipped:,} row{'s' if skipped != 1 else ''} failed for a reason a retry cannot fix: "
                "there is nothing to retry."
            )
        raise RunError("No item of this run failed or was cancelled: there is nothing to retry.")
    number = root.retries.count() + 1
    name = f"Retry of {root}" if number == 1 else f"Retry {number} of {root}"
    try:
        # run_create writes inside its own atomic block (a savepoint when the caller has a transaction),
        # so a losing insert rolls back whole and the caller's transaction stays usable.
        retry = run_create(
            dataset=root.dataset,
            judge=root.judge,
            created_by=created_by,
            name=name[:200],
            tags=root.tags,
            judge_version_id=root.judge_version_id,
            batch_size=root.batch_size,
            examples=examples,
            retry_of=root,
        )
    except IntegrityError:
        # Another request's retry of this chain committed first (the pre-check above raced with it).
        active = _active_retry(root)
        if active is None:
            raise
        return active, False
    return retry, True


def run_retry_failed(*, run: Run, created_by: User | AnonymousUser | None = None) -> Run:
    """The retry of `run`'s failed and cancelled rows: a new one, or the one already under way."""
    return run_retry(run=run, created_by=created_by)[0]
