"""Fault injection and simulated timing, configured by settings.OFFLINE_JUDGE_FAULTS.

The setting is a comma list of key=value, for example "throttle=0.1,retry_after=2,item_ms=50,seed=7".
It is parsed on every request (so tests can override settings) and cached by its string; the cached
plan owns the random generator, so a seeded plan gives the same sequence of decisions for the same
sequence of requests. Runserver is threaded, hence the lock around every draw.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field

from django.conf import settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Option:
    default: float
    kind: type
    minimum: float
    maximum: float | None
    meaning: str


OPTIONS: dict[str, Option] = {
    "latency_ms": Option(0, float, 0, None, "milliseconds slept before every /v1/ request"),
    "item_ms": Option(120, float, 0, None, "simulated processing time of one item, in milliseconds"),
    "lanes": Option(4, int, 1, 1000, "items processed at once, across all batches"),
    "throttle": Option(0, float, 0, 1, "share of requests answered 429 (not carried out)"),
    "retry_after": Option(1, int, 0, 86400, "seconds in the Retry-After header of a 429"),
    "error": Option(0, float, 0, 1, "share of requests answered 500 (not carried out)"),
    "drop": Option(
        0, float, 0, 1, "share of requests carried out but answered 502 with no body after drop_s"
    ),
    "drop_s": Option(5, float, 0, 3600, "seconds a dropped reply is held before the 502"),
    "item_fail": Option(0, float, 0, 1, "share of items that fail"),
    "batch_fail": Option(0, float, 0, 1, "share of batches that fail as a whole"),
    "noise": Option(
        0, float, 0, 1, "standard deviation of Gaussian noise added to every score (clamped to [0, 1])"
    ),
    "seed": Option(0, int, -(2**63), 2**63, "seed of the fault decisions; unset means random"),
}


class FaultConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RequestFate:
    """What happens to one request, drawn before it is handled."""

    throttled: bool = False
    errored: bool = False
    dropped: bool = False


@dataclass
class FaultPlan:
    values: dict[str, float]
    seeded: bool = False
    _requests: random.Random = field(default_factory=random.Random)
    _items: random.Random = field(default_factory=random.Random)
    _noise: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.seeded:
            seed = int(self.values["seed"])
            # Separate generators: item draws depend on batch sizes, and must not shift the request
            # sequence; noise draws depend on how many evaluators scored, and must shift neither.
            self._requests = random.Random(f"requests:{seed}")
            self._items = random.Random(f"items:{seed}")
            self._noise = random.Random(f"noise:{seed}")

    @property
    def latency_s(self) -> float:
        return self.values["latency_ms"] / 1000

    @property
    def item_s(self) -> float:
        return self.values["item_ms"] / 1000

    @property
    def lane_count(self) -> int:
        return int(self.values["lanes"])

    @property
    def retry_after_s(self) -> int:
        return int(self.values["retry_after"])

    @property
    def drop_s(self) -> float:
        return self.values["drop_s"]

    def describe(self) -> dict[str, float | int | None]:
        """The effective values, typed as configured; seed is None when decisions are random."""
        shown: dict[str, float | int | None] = {}
        for key, option in OPTIONS.items():
            shown[key] = int(self.values[key]) if option.kind is int else self.values[key]
        if not self.seeded:
            shown["seed"] = None
        return shown

    def request_fate(self) -> RequestFate:
        with self._lock:
            # Always three draws, so one request's outcome never shifts the next request's decisions.
            throttle, error, drop = self._requests.random(), self._requests.random(), self._requests.random()
        if throttle < self.values["throttle"]:
            return RequestFate(throttled=True)
        if error < self.values["error"]:
            return RequestFate(errored=True)
        return RequestFate(dropped=drop < self.values["drop"])

    def batch_fails(self) -> bool:
        with self._lock:
            return self._items.random() < self.values["batch_fail"]

    def item_failures(self, count: int, evaluator_count: int) -> list[int | None]:
        """For each item, None or the index of the evaluator whose simulated model call failed."""
        with self._lock:
            draws = [
                (self._items.random(), self._items.randrange(max(evaluator_count, 1))) for _ in range(count)
            ]
        return [which if share < self.values["item_fail"] else None for share, which in draws]

    @property
    def noise_sd(self) -> float:
        return self.values["noise"]

    def add_noise(self, score: float) -> float:
        """The score with simulated judge noise: plus a Gaussian draw of standard deviation `noise`,
        clamped to [0, 1] and rounded like the evaluators' scores. Without noise it is returned as is,
        and nothing is drawn."""
        if not self.noise_sd:
            return score
        with self._lock:
            shift = self._noise.gauss(0.0, self.noise_sd)
        return round(min(max(score + shift, 0.0), 1.0), 3)


def parse(config: str) -> FaultPlan:
    values = {key: float(option.default) for key, option in OPTIONS.items()}
    seen: set[str] = set()
    for part in config.split(","):
        if not part.strip():
            continue
        key, sep, raw = (text.strip() for text in part.partition("="))
        if not sep:
            raise FaultConfigError(f'OFFLINE_JUDGE_FAULTS: "{part.strip()}" is not key=value.')
        option = OPTIONS.get(key)
        if option is None:
            known = ", ".join(OPTIONS)
            raise FaultConfigError(f'OFFLINE_JUDGE_FAULTS: unknown key "{key}" (known keys: {known}).')
        if key in seen:
            raise FaultConfigError(f'OFFLINE_JUDGE_FAULTS: "{key}" is given twice.')
        seen.add(key)
        try:
            value = float(option.kind(raw))
        except ValueError:
            kind = "an integer" if option.kind is int else "a number"
            raise FaultConfigError(f'OFFLINE_JUDGE_FAULTS: {key}="{raw}" is not {kind}.') from None
        if (
            value != value
            or value < option.minimum
            or (option.maximum is not None and value > option.maximum)
        ):
            upper = f" and {option.maximum:g}" if option.maximum is not None else ""
            bound = f"between {option.minimum:g}{upper}" if upper else f"at least {option.minimum:g}"
            raise FaultConfigError(f"OFFLINE_JUDGE_FAULTS: {key}={raw} must be {bound} ({option.meaning}).")
        values[key] = value
    return FaultPlan(values=values, seeded="seed" in seen)


_plans: dict[str, FaultPlan | FaultConfigError] = {}
_plans_lock = threading.Lock()


def current_plan() -> FaultPlan:
    """The plan for the current setting; raises FaultConfigError (logged once) when it is invalid."""
    config = str(settings.OFFLINE_JUDGE_FAULTS or "")
    with _plans_lock:
        plan = _plans.get(config)
        if plan is None:
            try:
                plan = parse(config)
            except FaultConfigError as error:
                logger.error("%s", error)
                plan = error
            _plans[config] = plan
    if isinstance(plan, FaultConfigError):
        raise plan
    return plan


def reset() -> None:
    """Forget cached plans, so the next request starts a fresh (seeded) sequence. For tests and benchmarks."""
    with _plans_lock:
        _plans.clear()
