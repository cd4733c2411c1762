"""What a run is asked for, before it is created: checked (RunError names the field at fault) and described.

`run_preflight` says what a run would send, to which evaluators, for how long and at what cost (the run
form's live summary); the judge page lists a judge's inputs (`judge_inputs`, `custom_inputs`).
`run_create` (evals.services.runs) checks the same choices with these functions and creates the run.
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from evals.ingest.mapping import normalize
from evals.models import INPUT_FIELDS, MAX_BATCH_SIZE, Dataset, Judge, Run
from evals.money import format_cap, format_cost
from evals.selectors.datasets import dataset_input_counts
from evals.services.costs import cost_per_item_estimate

# A judge may declare inputs beyond INPUT_FIELDS (variables of its scoring criteria, e.g. `product_name`):
# no batch input (BatchExecutionInputRequest, scorable 1.15) has a field for them.
MAX_TAG_LENGTH = 200


RESERVED_TAG_PREFIX = "docket:"


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
        return format_cost(self.estimated_cost)

    @property
    def cost_per_item_text(self) -> str:
        return format_cost(self.cost_per_item)

    @property
    def max_cost_text(self) -> str:
        return format_cap(self.max_cost)

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
    # An unsaved run: the estimate reads its judge's recent runs and, for a set, its evaluators' costs.
    return cost_per_item_estimate(Run(judge=judge, evaluators=chosen.names, evaluator_ids=chosen.ids))


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
