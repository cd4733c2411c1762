"""Turning records into examples: every check a row must pass, and the report of what failed.

One unit over 450 lines: `RowChecker` holds every rule for a row's fields, and its fast path for
plain text rows must agree with the full checks beside it; splitting it would separate the two.
"""

from __future__ import annotations

import csv
import io
import json
import json.scanner
import operator
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from django.conf import settings

from evals.ingest.json_rows import ROW, JsonProblem, json_kind, loads_checked
from evals.ingest.mapping import (
    CONTEXTS,
    EXPECTED_OUTPUT,
    IGNORE,
    KEY,
    METADATA,
    REQUEST,
    RESPONSE,
    SESSION_ID,
    SYSTEM_PROMPT,
    TURNS,
    USER_ID,
)
from evals.ingest.readers import ReadSpec, Record, Table

# The judge API's limits (docs/scorable-api.md): these two fields take at most 3,500,000 characters.
MAX_LONG_TEXT = 3_500_000
# user_id and session_id: at most 255 characters each (BatchExecutionInputRequest, scorable 1.15).
MAX_ID_LENGTH = 255
TURN_ROLES = ("user", "assistant", "tool")
# The fields of the SDK's MessageTurnRequest (scorable 1.15), the shape every turn is checked to.
TURN_KEYS = ("role", "content", "contexts", "tool_calls", "tool_call_id")

# How many problems a report keeps; the count goes on, and the invalid-rows download has them all.
KEEP_PROBLEMS = 1000


@dataclass(slots=True, frozen=True)
class Problem:
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


@dataclass(slots=True)
class ParsedRow:
    line: int
    request: str
    response: str
    contexts: list[str]
    expected_output: str
    turns: list[dict[str, Any]] | None
    system_prompt: str
    metadata: dict[str, Any]
    # The user's key column ("" when none is mapped): pairs this row with the same row of another upload.
    key: str = ""
    # Sent to the judge with the row, copied onto its execution log ("" when no column is mapped).
    user_id: str = ""
    session_id: str = ""


@dataclass(slots=True)
class InvalidRow:
    line: int
    problems: list[Problem]
    values: Any
    raw: str = ""


class RowChecker:
    """Checks records against one mapping and builds ParsedRows. Compiled once per file for speed."""

    def __init__(self, columns: list[str], mapping: dict[str, str], *, strict_width: bool = True) -> None:
        self.columns = columns
        # Delimited text must have as many cells as the header; a spreadsheet row just ends early.
        self.strict_width = strict_width
        self.width = len(columns)
        field_of = {column: mapping.get(column, METADATA) for column in columns}

        def single(field: str) -> str | None:
            return next((column for column in columns if field_of[column] == field), None)

        self.request, self.response = single(REQUEST), single(RESPONSE)
        self.expected, self.turns = single(EXPECTED_OUTPUT), single(TURNS)
        self.system = single(SYSTEM_PROMPT)
        self.key = single(KEY)
        self.user_id, self.session_id = single(USER_ID), single(SESSION_ID)
        self.contexts = [column for column in columns if field_of[column] == CONTEXTS]
        self.metadata = [column for column in columns if field_of[column] == METADATA]
        self.known = set(columns)
        self.ignored = {column for column in columns if field_of[column] == IGNORE}
        # Columns met in JSON objects that are not in the header: kept as metadata, listed here.
        self.extra_columns: dict[str, None] = {}
        self.max_columns = int(settings.DOCKET_MAX_COLUMNS)
        index = {column: position for position, column in enumerate(columns)}
        self._i_request = index.get(self.request) if self.request else None
        self._i_response = index.get(self.response) if self.response else None
        self._i_expected = index.get(self.expected) if self.expected else None
        self._i_turns = index.get(self.turns) if self.turns else None
        self._i_system = index.get(self.system) if self.system else None
        self._i_key = index.get(self.key) if self.key else None
        self._i_user_id = index.get(self.user_id) if self.user_id else None
        self._i_session_id = index.get(self.session_id) if self.session_id else None
        self._i_contexts = [(column, index[column]) for column in self.contexts]
        self._i_metadata = [(column, index[column]) for column in self.metadata]

    def check(self, record: Record) -> ParsedRow | InvalidRow:
        if record.error:
            problem = Problem(record.line, record.error_column, record.error)
            return InvalidRow(record.line, [problem], record.values, record.raw)
        if isinstance(record.values, dict):
            outcome = self._check_object(record.line, record.values)
            if isinstance(outcome, InvalidRow):
                outcome.raw = record.raw
            return outcome
        return self._check_cells(record.line, record.values)

    def _fast_text_row(self, line: int, cells: list[str]) -> ParsedRow | None:
        """The common case of a delimited-text row with nothing wrong, built with as little work as
        possible (it runs once per row of files of a million rows). Anything unusual returns None
        and goes the careful way, which names each problem."""
        if any(map(operator.contains, cells, _NULS)):
            return None
        if self._i_turns is not None and cells[self._i_turns]:
            return None
        response = cells[self._i_response] if self._i_response is not None else ""
        if not response or response.isspace():
            return None
        expected = cells[self._i_expected] if self._i_expected is not None else ""
        system = cells[self._i_system] if self._i_system is not None else ""
        if len(expected) > MAX_LONG_TEXT or len(system) > MAX_LONG_TEXT:
            return None
        contexts: list[str] = []
        for _column, position in self._i_contexts:
            cell = cells[position]
            if not cell:
                continue
            if cell[0] == "[" and cell[-1] == "]":
                # Nesting, escapes (a lone surrogate?) and objects go the careful way, which checks them.
                if "\\u" in cell or "{" in cell or cell.count("[") > 1:
                    return None
                try:
                    items, end = _scan_json(cell, 0)
                except (ValueError, StopIteration):
                    return None
                if end != len(cell) or items.__class__ is not list:
                    return None
                for item in items:
                    if item.__class__ is not str or not item or item.isspace() or "\x00" in item:
                        return None
                contexts.extend(items)
            elif cell[0] in _SLOW_FIRST_CHARS or cell.isspace():
                return None
            else:
                contexts.append(cell)
        request = cells[self._i_request] if self._i_request is not None else ""
        metadata = {column: cells[position] for column, position in self._i_metadata}
        key = cells[self._i_key] if self._i_key is not None else ""
        user_id = cells[self._i_user_id] if self._i_user_id is not None else ""
        session_id = cells[self._i_session_id] if self._i_session_id is not None else ""
        if len(user_id) > MAX_ID_LENGTH or len(session_id) > MAX_ID_LENGTH:
            return None
        return ParsedRow(
            line, request, response, contexts, expected, None, system, metadata, key, user_id, session_id
        )

    def _check_cells(self, line: int, cells: list[Any]) -> ParsedRow | InvalidRow:
        if self.strict_width and len(cells) == self.width:
            fast = self._fast_text_row(line, cells)
            if fast is not None:
                return fast
        if len(cells) != self.width:
            if self.strict_width:
                reason = f"has {len(cells)} cells; the header has {self.width} columns"
                return InvalidRow(line, [Problem(line, ROW, reason)], cells)
            # A spreadsheet row has no width of its own: short rows are padded, and only a value in
            # a column without a header is a problem.
            extra = next((i for i in range(self.width, len(cells)) if cells[i] not in (None, "")), None)
            if extra is not None:
                reason = f"has a value in column {extra + 1}, which has no header"
                return InvalidRow(line, [Problem(line, ROW, reason)], cells)
            cells = list(cells[: self.width]) + [None] * (self.width - len(cells))
        problems: list[Problem] = []
        columns = self.columns

        def mapped(check: Callable[[Any, str, int, list[Problem]], str], position: int | None) -> str:
            # A field no column maps to is empty.
            return check(cells[position], columns[position], line, problems) if position is not None else ""

        request = mapped(self._text, self._i_request)
        response = mapped(self._text, self._i_response)
        expected = mapped(self._text, self._i_expected)
        system = mapped(self._text, self._i_system)
        key = mapped(self._key, self._i_key)
        user_id = mapped(self._id, self._i_user_id)
        session_id = mapped(self._id, self._i_session_id)
        contexts: list[str] = []
        for column, position in self._i_contexts:
            contexts.extend(self._contexts(cells[position], column, line, problems))
        turns = (
            self._turns(cells[self._i_turns], self.turns or "", line, problems)
            if self._i_turns is not None
            else None
        )
        metadata: dict[str, Any] = {}
        for column, position in self._i_metadata:
            value = cells[position]
            if value.__class__ is str and "\x00" in value:
                problems.append(Problem(line, column, _NUL_REASON))
            metadata[column] = value
        return self._finish(
            line,
            request,
            response,
            contexts,
            expected,
            turns,
            system,
            metadata,
            problems,
            cells,
            key,
            user_id,
            session_id,
        )

    def _check_object(self, line: int, values: dict[str, Any]) -> ParsedRow | InvalidRow:
        problems: list[Problem] = []
        request = self._text(values.get(self.request), self.request, line, problems) if self.request else ""
        response = (
            self._text(values.get(self.response), self.response, line, problems) if self.response else ""
        )
        expected = (
            self._text(values.get(self.expected), self.expected, line, problems) if self.expected else ""
        )
        system = self._text(values.get(self.system), self.system, line, problems) if self.system else ""
        # A JSON key may be a number (17): it is the same key as the text "17" in a CSV of the same rows.
        row_key = self._key(values.get(self.key), self.key, line, problems) if self.key else ""
        user_id = self._id(values.get(self.user_id), self.user_id, line, problems) if self.user_id else ""
        session_id = (
            self._id(values.get(self.session_id), self.session_id, line, problems) if self.session_id else ""
        )
        contexts: list[str] = []
        for column in self.contexts:
            contexts.extend(self._contexts(values.get(column), column, line, problems))
        turns = self._turns(values.get(self.turns), self.turns, line, problems) if self.turns else None
        metadata: dict[str, Any] = {}
        for key, value in values.items():
            if key in self.known:
                if key in self.metadata:
                    metadata[key] = value
            elif key not in self.ignored:
                if (
                    key not in self.extra_columns
                    and len(self.known) + len(self.extra_columns) >= self.max_columns
                ):
                    # Each row may bring new keys; all of them become the dataset's columns.
                    problems.append(
                        Problem(
                            line,
                            key,
                            f"is a new key past the {self.max_columns:,}-column limit of the file "
                            "(DOCKET_MAX_COLUMNS)",
                        )
                    )
                    continue
                self.extra_columns.setdefault(key, None)
                metadata[key] = value
        return self._finish(
            line,
            request,
            response,
            contexts,
            expected,
            turns,
            system,
            metadata,
            problems,
            values,
            row_key,
            user_id,
            session_id,
        )

    def _finish(
        self,
        line: int,
        request: str,
        response: str,
        contexts: list[str],
        expected: str,
        turns: list[dict[str, Any]] | None,
        system: str,
        metadata: dict[str, Any],
        problems: list[Problem],
        values: Any,
        key: str = "",
        user_id: str = "",
        session_id: str = "",
    ) -> ParsedRow | InvalidRow:
        if (not response or response.isspace()) and not turns and not problems:
            if self.response:
                reason = "is empty; each row needs a response" + (" or turns" if self.turns else "")
                problems.append(Problem(line, self.response, reason))
            else:
                problems.append(
                    Problem(line, self.turns or ROW, "is empty; each row needs turns (or a response)")
                )
        if len(expected) > MAX_LONG_TEXT:
            problems.append(Problem(line, self.expected or ROW, _too_long(len(expected))))
        if len(system) > MAX_LONG_TEXT:
            problems.append(Problem(line, self.system or ROW, _too_long(len(system))))
        if problems:
            return InvalidRow(line, problems, values)
        return ParsedRow(
            line, request, response, contexts, expected, turns, system, metadata, key, user_id, session_id
        )

    @staticmethod
    def _text(value: Any, column: str, line: int, problems: list[Problem]) -> str:
        if value.__class__ is str:
            if "\x00" in value:
                problems.append(Problem(line, column, _NUL_REASON))
            return value
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, dict | list):
            problems.append(
                Problem(
                    line, column, f"is a JSON {'object' if isinstance(value, dict) else 'array'}, not text"
                )
            )
            return ""
        return str(value)

    @classmethod
    def _key(cls, value: Any, column: str, line: int, problems: list[Problem]) -> str:
        # A spreadsheet or JSON may hold the key 17 as 17.0; it is the same key as "17" in a CSV.
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return cls._text(value, column, line, problems)

    @classmethod
    def _id(cls, value: Any, column: str, line: int, problems: list[Problem]) -> str:
        """A user or session id: text (a number is read as the key is) of at most 255 characters."""
        text = cls._key(value, column, line, problems)
        if len(text) > MAX_ID_LENGTH:
            problems.append(
                Problem(
                    line,
                    column,
                    f"is {len(text):,} characters long; the judge API takes ids of at most {MAX_ID_LENGTH}",
                )
            )
            return ""
        return text

    @staticmethod
    def _contexts(value: Any, column: str, line: int, problems: list[Problem]) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            stripped = value.strip()
            if not stripped:
                return []
            if not (stripped.startswith("[") and stripped.endswith("]")):
                if "\x00" in value:
                    problems.append(Problem(line, column, _NUL_REASON))
                    return []
                return [value]
            try:
                items = loads_checked(stripped)
            except JsonProblem as error:
                problems.append(Problem(line, column, str(error)))
                return []
            except ValueError as error:
                problems.append(
                    Problem(
                        line, column, f"looks like a JSON array but does not parse ({_json_error(error)})"
                    )
                )
                return []
        elif isinstance(value, list):
            items = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            return [str(value)]
        else:
            problems.append(Problem(line, column, "must be text or a JSON array of strings"))
            return []
        if not isinstance(items, list):
            problems.append(Problem(line, column, "must be a JSON array of strings"))
            return []
        contexts: list[str] = []
        for number, item in enumerate(items, start=1):
            if not isinstance(item, str):
                problems.append(Problem(line, column, f"item {number} is {json_kind(item)}, not text"))
            elif not item.strip():
                problems.append(
                    Problem(
                        line, column, f"item {number} is empty; the judge API takes only non-empty contexts"
                    )
                )
            elif "\x00" in item:
                problems.append(Problem(line, column, f"item {number} {_NUL_REASON}"))
            else:
                contexts.append(item)
        return contexts

    @classmethod
    def _turns(
        cls, value: Any, column: str, line: int, problems: list[Problem]
    ) -> list[dict[str, Any]] | None:
        """Turns checked to the SDK's MessageTurnRequest: a row the judge would reject with a 400 fails
        here, on its own, instead of failing the whole remote batch it would have been sent in."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str):
            try:
                value = loads_checked(value)
            except JsonProblem as error:
                problems.append(Problem(line, column, str(error)))
                return None
            except ValueError as error:
                problems.append(Problem(line, column, f"is not valid JSON ({_json_error(error)})"))
                return None
        if not isinstance(value, list):
            problems.append(Problem(line, column, "must be a JSON array of {role, content} objects"))
            return None
        before = len(problems)
        turns = []
        for number, turn in enumerate(value, start=1):
            if not isinstance(turn, dict):
                problems.append(
                    Problem(
                        line, column, f"turn {number} is {json_kind(turn)}, not a {{role, content}} object"
                    )
                )
                continue
            role = turn.get("role")
            if not isinstance(role, str) or role not in TURN_ROLES:
                hint = (
                    "; put a system message in the system_prompt column instead" if role == "system" else ""
                )
                problems.append(
                    Problem(
                        line,
                        column,
                        f"turn {number} has role {role!r}; roles are user, assistant, tool{hint}",
                    )
                )
                continue
            content = turn.get("content")
            if content is None:
                if role != "assistant":
                    problems.append(Problem(line, column, f"turn {number} ({role}) has no content"))
            elif not isinstance(content, str):
                problems.append(
                    Problem(line, column, f"turn {number} content is {json_kind(content)}, not text")
                )
            elif "\x00" in content:
                problems.append(Problem(line, column, f"turn {number} content {_NUL_REASON}"))
            cls._turn_extras(turn, number, column, line, problems)
            # Keys MessageTurnRequest does not know are dropped, as the SDK drops them: the judge never
            # sees them either way (a `name` of an OpenAI message, say).
            turns.append({key: turn[key] for key in TURN_KEYS if key in turn})
        if len(problems) > before:
            return None
        return turns or None

    @staticmethod
    def _turn_extras(
        turn: dict[str, Any], number: int, column: str, line: int, problems: list[Problem]
    ) -> None:
        """contexts, tool_calls and tool_call_id of one turn; each may be absent or null."""
        contexts = turn.get("contexts")
        if contexts is not None:
            if not isinstance(contexts, list):
                problems.append(
                    Problem(
                        line, column, f"turn {number} contexts is {json_kind(contexts)}, not an array of text"
                    )
                )
            else:
                for item_number, item in enumerate(contexts, start=1):
                    if not isinstance(item, str):
                        reason = f"is {json_kind(item)}, not text"
                    elif not item:
                        reason = "is empty; the judge API takes only non-empty contexts"
                    elif "\x00" in item:
                        reason = _NUL_REASON
                    else:
                        continue
                    problems.append(
                        Problem(line, column, f"turn {number} contexts item {item_number} {reason}")
                    )
        tool_calls = turn.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                problems.append(
                    Problem(
                        line,
                        column,
                        f"turn {number} tool_calls is {json_kind(tool_calls)}, not an array of objects",
                    )
                )
            else:
                for item_number, call in enumerate(tool_calls, start=1):
                    if not isinstance(call, dict):
                        problems.append(
                            Problem(
                                line,
                                column,
                                f"turn {number} tool_calls item {item_number} is {json_kind(call)}, not an object",
                            )
                        )
        tool_call_id = turn.get("tool_call_id")
        if tool_call_id is not None and not isinstance(tool_call_id, str):
            problems.append(
                Problem(line, column, f"turn {number} tool_call_id is {json_kind(tool_call_id)}, not text")
            )


_NULS = repeat("\x00")
# json.loads minus its per-call set-up (two whitespace regexes): a third of the check's time on
# files with a contexts column. Used only on cells that start with [ and end with ].
_scan_json: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
# A cell starting with one of these may be a JSON array with spaces around it, or blank.
_SLOW_FIRST_CHARS = frozenset(" \t\r\n[")
_NUL_REASON = "holds a NUL character (\\0), which databases can't store"


def _too_long(length: int) -> str:
    return f"is {length:,} characters long; the judge API takes at most {MAX_LONG_TEXT:,}"


def _json_error(error: ValueError) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at character {error.pos + 1}"
    return str(error)


@dataclass
class Report:
    """What validating a whole file found."""

    columns: list[str]
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    blank: int = 0
    problem_count: int = 0
    problems: list[Problem] = field(default_factory=list)
    extra_columns: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "valid": self.valid,
            "invalid": self.invalid,
            "blank": self.blank,
            "problem_count": self.problem_count,
            "problems": [[p.line, p.column, p.reason] for p in self.problems],
            "extra_columns": self.extra_columns,
        }


@contextmanager
def checked_rows(
    spec: ReadSpec, mapping: dict[str, str], *, max_rows: int | None = None
) -> Iterator[tuple[Table, RowChecker, Iterator[ParsedRow | InvalidRow]]]:
    """Open a file and check each of its rows against a mapping, streaming."""
    with Table(spec, max_rows=max_rows) as table:
        checker = RowChecker(table.columns, mapping, strict_width=spec.file_format == "csv")
        yield table, checker, (checker.check(record) for record in table)


def validate(
    spec: ReadSpec,
    mapping: dict[str, str],
    *,
    max_rows: int | None = None,
    on_problem: Callable[[Problem], None] | None = None,
    on_progress: Callable[[int, float | None], None] | None = None,
    keep: int = KEEP_PROBLEMS,
    progress_every: int = 5000,
) -> Report:
    """Check every row of a file; nothing is written anywhere. Raises IngestError for an unreadable file."""
    with checked_rows(spec, mapping, max_rows=max_rows) as (table, checker, outcomes):
        report = Report(columns=table.columns)
        for outcome in outcomes:
            report.rows += 1
            if isinstance(outcome, ParsedRow):
                report.valid += 1
            else:
                report.invalid += 1
                report.problem_count += len(outcome.problems)
                for problem in outcome.problems:
                    if len(report.problems) < keep:
                        report.problems.append(problem)
                    if on_problem is not None:
                        on_problem(problem)
            if on_progress is not None and report.rows % progress_every == 0:
                on_progress(report.rows, table.progress())
        report.blank = table.blank_lines
        report.extra_columns = list(checker.extra_columns)
    return report


def preview(spec: ReadSpec, *, rows: int = 10) -> tuple[list[str], list[list[Any]], bool]:
    """The columns, the first rows as lists of cells in column order, and whether any row follows."""
    with Table(spec) as table:
        first: list[list[Any]] = []
        more = False
        for record in table:
            if len(first) >= rows:
                more = True
                break
            if isinstance(record.values, dict):
                first.append([record.values.get(column) for column in table.columns])
            else:
                first.append(list(record.values))
        return table.columns, first, more


def invalid_rows_csv(
    spec: ReadSpec, mapping: dict[str, str], *, max_rows: int | None = None
) -> Iterable[bytes]:
    """The invalid rows as CSV (UTF-8 with BOM, for Excel): their cells as uploaded plus an `error` column.

    Rows of a JSON file also carry their original text in a `json` column, since a row that is not valid
    JSON has no cells. Cells are not prefixed against formula injection: they are the uploader's own,
    given back to be fixed and imported again, and a prefix would become part of the text.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    from_json = spec.file_format in ("json", "jsonl")
    with checked_rows(spec, mapping, max_rows=max_rows) as (table, _checker, outcomes):
        columns = list(table.columns)
        writer.writerow([*columns, "error", *(["json"] if from_json else [])])
        yield ("\ufeff" + _take(buffer)).encode("utf-8", "surrogateescape")
        for outcome in outcomes:
            if isinstance(outcome, ParsedRow):
                continue
            error = "; ".join(str(problem) for problem in outcome.problems)
            values = outcome.values
            if isinstance(values, dict):
                cells = [_cell(values.get(column)) for column in columns] + [error, outcome.raw]
            else:
                cells = [_cell(value) for value in values[: len(columns)]]
                cells += (
                    [""] * (len(columns) - len(cells)) + [error] + [_cell(v) for v in values[len(columns) :]]
                )
            writer.writerow(cells)
            yield _take(buffer).encode("utf-8", "surrogateescape")


def _take(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
