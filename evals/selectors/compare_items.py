"""Two runs' pairs side by side, one page at a time: the scores, the justifications and a word diff of
the responses, for the compare page's item-by-item view.

The pairs and the summary come from the one streamed pass of `evals.selectors.compare`; this module
picks a page out of it (keyset pages by A's row or by the size of the change) and reads the text of
that page only.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evals.models import Example, Item, Run, Score, turns_before_last_answer
from evals.selectors.compare import (
    CHANGES,
    CompareError,
    EvaluatorComparison,
    Largest,
    RunComparison,
    SideRow,
    change_of,
    compare_streamed,
    shared_evaluators,
)

PAGE_SIZE = 50
SORTS = ("position", "change")
# Above this many words on either side the diff is skipped: difflib is quadratic in the worst case.
DIFF_MAX_WORDS = 4_000


@dataclass(frozen=True)
class PairVerdict:
    name: str
    score_a: float | None
    score_b: float | None
    justification_a: str
    justification_b: str
    # With human corrections: the human label on each side ("pass", "fail"), None where not reviewed,
    # and the judge's own score where a reviewer corrected it (None where they did not).
    label_a: str | None = None
    label_b: str | None = None
    judge_a: float | None = None
    judge_b: float | None = None

    @property
    def difference(self) -> float | None:
        if self.score_a is None or self.score_b is None:
            return None
        return self.score_b - self.score_a

    @property
    def change(self) -> str:
        """ "improved", "regressed", "unchanged", or "" when either side has no score."""
        difference = self.difference
        return "" if difference is None else change_of(difference)


Segment = tuple[str, str]  # ("same" | "del" | "ins", text)


@dataclass(frozen=True)
class ItemPair:
    item_a: int
    item_b: int
    position_a: int
    position_b: int
    key: str
    request_a: str
    request_b: str
    response_a: list[Segment]
    response_b: list[Segment]
    # False when the responses were too long to diff (shown plainly).
    diffed: bool
    chosen: PairVerdict
    verdicts: list[PairVerdict]

    @property
    def request_differs(self) -> bool:
        return self.request_a != self.request_b


@dataclass(frozen=True)
class ComparisonPage:
    comparison: RunComparison
    evaluator: EvaluatorComparison
    change: str
    sort: str
    after: str
    # Pairs that match the filter, on every page: the summary's count for that change.
    count: int
    rows: list[ItemPair]
    next_cursor: str


def runs_compare_items(
    *,
    a: Run,
    b: Run,
    evaluator: str,
    change: str = "",
    sort: str = "position",
    after: str = "",
    thresholds: Mapping[str, float] | None = None,
    page_size: int = PAGE_SIZE,
    corrected: bool = False,
) -> ComparisonPage:
    """One page of the pairs scored by `evaluator` on both sides, filtered by their change, with the text.

    Sorted by A's row ("position") or by the size of the change, largest first ("change"). Pages are
    keyset pages (`after` is the last row's cursor): the pass keeps the next page_size + 1 pairs only.
    `corrected`: both sides with human corrections, in the scores, the changes and the summary.
    """
    names = shared_evaluators(a, b)
    if evaluator not in names:
        listed = ", ".join(names) or "none"
        raise CompareError(f'Both runs must have the evaluator "{evaluator}". Shared evaluators: {listed}.')
    if change not in ("", *CHANGES):
        raise CompareError(f'Unknown change "{change}": choose improved, regressed or unchanged.')
    if sort not in SORTS:
        raise CompareError(f'Unknown order "{sort}": choose position or change.')
    cursor = _parse_cursor(after, sort)
    index = names.index(evaluator)
    page = _Smallest(page_size + 1)
    count = 0

    def visit(row_a: SideRow, row_b: SideRow) -> None:
        nonlocal count
        score_a, score_b = row_a.scores[index], row_b.scores[index]
        if score_a is None or score_b is None:
            return
        difference = score_b - score_a
        if change and change_of(difference) != change:
            return
        count += 1
        order: tuple[float, ...] = (
            (row_a.position,) if sort == "position" else (-abs(difference), row_a.position)
        )
        if cursor is None or order > cursor:
            page.offer(order, (row_a, row_b))

    comparison = compare_streamed(a, b, dict(thresholds or {}), corrected=corrected, visit=visit)
    chosen = page.ascending()
    more = len(chosen) > page_size
    chosen = chosen[:page_size]
    summary = comparison.evaluator(evaluator)
    assert summary is not None
    return ComparisonPage(
        comparison=comparison,
        evaluator=summary,
        change=change,
        sort=sort,
        after=after if cursor is not None else "",
        count=count,
        rows=_item_pairs([pair for _, pair in chosen], names, evaluator),
        next_cursor=_cursor(chosen[-1][0], sort) if more and chosen else "",
    )


def _cursor(order: tuple[float, ...], sort: str) -> str:
    if sort == "position":
        return str(int(order[0]))
    # repr gives the shortest text that reads back as the very same float.
    return f"{-order[0]!r}_{int(order[1])}"


def _parse_cursor(after: str, sort: str) -> tuple[float, ...] | None:
    after = after.strip()
    if not after:
        return None
    try:
        if sort == "position":
            return (int(after),)
        size, _, position = after.partition("_")
        return (-float(size), int(position))
    except ValueError:
        raise CompareError("That page link is not valid any more; start again from the first page.") from None


class _Smallest:
    """The n smallest (order, payload) offered so far: the largest of the negated orders."""

    def __init__(self, n: int) -> None:
        self.largest: Largest[tuple[tuple[float, ...], Any]] = Largest(n)

    def offer(self, order: tuple[float, ...], payload: Any) -> None:
        self.largest.offer((tuple(-part for part in order), payload))

    def ascending(self) -> list[tuple[tuple[float, ...], Any]]:
        return sorted(
            ((tuple(-part for part in order), payload) for order, payload in self.largest.heap),
            key=lambda e: e[0],
        )


def _answer(example: Example) -> str:
    """The text under test: the response, or the last assistant turn of a conversation."""
    if example.response:
        return example.response
    turns = list(example.turns or [])
    asked = len(turns_before_last_answer(turns))
    if asked < len(turns) and isinstance(turns[asked], dict):
        return str(turns[asked].get("content") or "")
    return ""


def _item_pairs(pairs: list[tuple[SideRow, SideRow]], names: list[str], chosen: str) -> list[ItemPair]:
    """The text and justifications of one page of pairs, in two small queries."""
    if not pairs:
        return []
    ids = [row.item for pair in pairs for row in pair]
    items = {item.pk: item for item in Item.objects.filter(pk__in=ids).select_related("example")}
    justifications = {
        (item_id, name): text
        for item_id, name, text in Score.objects.filter(
            item_id__in=ids, evaluator_name__in=names
        ).values_list("item_id", "evaluator_name", "justification")
    }
    rows = []
    for row_a, row_b in pairs:
        example_a, example_b = items[row_a.item].example, items[row_b.item].example
        verdicts = [
            PairVerdict(
                name=name,
                score_a=row_a.scores[index],
                score_b=row_b.scores[index],
                justification_a=justifications.get((row_a.item, name), ""),
                justification_b=justifications.get((row_b.item, name), ""),
                label_a=row_a.labels[index] if row_a.labels else None,
                label_b=row_b.labels[index] if row_b.labels else None,
                judge_a=_judged_if_corrected(row_a, index),
                judge_b=_judged_if_corrected(row_b, index),
            )
            for index, name in enumerate(names)
        ]
        response_a, response_b, diffed = word_diff(_answer(example_a), _answer(example_b))
        rows.append(
            ItemPair(
                item_a=row_a.item,
                item_b=row_b.item,
                position_a=row_a.position,
                position_b=row_b.position,
                key=example_a.key,
                request_a=example_a.request,
                request_b=example_b.request,
                response_a=response_a,
                response_b=response_b,
                diffed=diffed,
                chosen=next(verdict for verdict in verdicts if verdict.name == chosen),
                verdicts=verdicts,
            )
        )
    return rows


def _judged_if_corrected(row: SideRow, index: int) -> float | None:
    if not row.judged or row.judged[index] == row.scores[index]:
        return None
    return row.judged[index]


_WORD = re.compile(r"\S+\s*")


def word_diff(a: str, b: str) -> tuple[list[Segment], list[Segment], bool]:
    """A word-level diff: A as ("same" | "del", text) segments, B as ("same" | "ins", text) segments.

    Words are compared without the whitespace after them, so a reflowed line is not a change. The
    segments are plain text: the template escapes them like any other text. Returns diffed=False (and
    both texts whole) when either side is too long to diff.
    """
    lead_a, lead_b = a[: len(a) - len(a.lstrip())], b[: len(b) - len(b.lstrip())]
    parts_a, parts_b = _WORD.findall(a), _WORD.findall(b)
    if len(parts_a) > DIFF_MAX_WORDS or len(parts_b) > DIFF_MAX_WORDS:
        return [("same", a)], [("same", b)], False
    words_a, words_b = [part.rstrip() for part in parts_a], [part.rstrip() for part in parts_b]
    side_a: list[Segment] = [("same", lead_a)] if lead_a else []
    side_b: list[Segment] = [("same", lead_b)] if lead_b else []
    # autojunk off: on long texts it would treat common words ("the") as junk and never match them.
    matcher = difflib.SequenceMatcher(None, words_a, words_b, autojunk=False)
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            _append(side_a, "same", "".join(parts_a[a1:a2]))
            _append(side_b, "same", "".join(parts_b[b1:b2]))
            continue
        if a2 > a1:
            _append_changed(side_a, "del", "".join(parts_a[a1:a2]))
        if b2 > b1:
            _append_changed(side_b, "ins", "".join(parts_b[b1:b2]))
    return side_a, side_b, True


def _append_changed(segments: list[Segment], op: str, text: str) -> None:
    # The whitespace after the last changed word is not part of the change: keep it unmarked.
    core = text.rstrip()
    _append(segments, op, core)
    _append(segments, "same", text[len(core) :])


def _append(segments: list[Segment], op: str, text: str) -> None:
    if not text:
        return
    if segments and segments[-1][0] == op:
        segments[-1] = (op, segments[-1][1] + text)
    else:
        segments.append((op, text))
