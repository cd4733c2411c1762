"""JSON as Docket keeps it: values parsed with limits (depth, duplicate keys, NaN, lone surrogates), a JSON
array read one element at a time, and the checks that make an object a row or a problem.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings

from evals.ingest.files import CHUNK_BYTES, IngestError, long_line_reason, printable

# The column named in a problem that concerns the whole row.
ROW = "(row)"


class JsonProblem(ValueError):
    """JSON that parses but can't be kept: nested too deep, a key twice in one object, a lone surrogate.

    column names the top-level key the problem is under, when there is one.
    """

    def __init__(self, reason: str, column: str = ROW) -> None:
        super().__init__(reason)
        self.column = column


def _depth_reason(limit: int) -> str:
    return f"is nested more than {limit:,} levels deep, over the limit (DOCKET_MAX_JSON_DEPTH)"


# Strings are matched whole (a bracket inside one is text); group 1 opens a level, group 2 closes one.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|([\[{])|([\]}])')


def json_depth_exceeds(text: str, limit: int, start: int = 0) -> bool:
    """Whether the JSON value at `start` nests deeper than `limit`, found without recursion.

    json's C decoder recurses once per level: 100,000 levels raise RecursionError, and deep values that
    do parse break code that walks them later. This bounded scan runs first, and stops where the value
    closes.
    """
    if start == 0 and text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for match in _JSON_TOKENS.finditer(text, start):
        if match.lastindex == 1:
            depth += 1
            if depth > limit:
                return True
        elif match.lastindex == 2:
            depth -= 1
            if depth <= 0:
                return False
        elif depth == 0:
            return False  # the value is a string
    return False


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))  # type: ignore[func-returns-value]
        raise JsonProblem(f"has the key {printable(twice)!r} twice in one object")
    return value


def _no_constant(name: str) -> Any:
    raise JsonProblem(f"holds {name}, which is not JSON (databases can't store it)")


# A JSON object may not hold a key twice: json keeps the last silently, so a row would lose a value.
# NaN and Infinity are Python's extensions of JSON; PostgreSQL's jsonb refuses them at import.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_no_constant)
_PLAIN_DECODER = json.JSONDecoder()
# A \uD800-\uDFFF escape in the text: only then can a decoded value hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _surrogate_problem(value: Any, column: str = ROW) -> JsonProblem | None:
    """A lone surrogate (a "\\ud800" escape without its pair) anywhere in a decoded value or its keys.

    It can't be encoded as UTF-8, so it would fail the import, or a page showing the row, much later.
    """
    stack: list[tuple[Any, str]] = [(value, column)]
    while stack:
        item, under = stack.pop()
        if isinstance(item, str):
            if _LONE_SURROGATE.search(item):
                return JsonProblem(
                    f"holds a lone surrogate ({printable(_LONE_SURROGATE.search(item).group())}), "  # type: ignore[union-attr]
                    "half of a UTF-16 pair, which text can't hold",
                    under,
                )
        elif isinstance(item, dict):
            for key, inner in item.items():
                if _LONE_SURROGATE.search(key):
                    return JsonProblem(
                        f'has a key with a lone surrogate ("{printable(key)}"), which text can\'t hold',
                        under,
                    )
                stack.append((inner, printable(key) if under == ROW and item is value else under))
        elif isinstance(item, list):
            stack.extend((inner, under) for inner in item)
    return None


def loads_checked(text: str, depth_cap: int | None = None) -> Any:
    """json.loads, plus the checks that make a value safe to keep; raises JsonProblem (a ValueError).

    depth_cap: DOCKET_MAX_JSON_DEPTH, passed by callers that read it once per file.
    """
    limit = depth_cap if depth_cap is not None else settings.DOCKET_MAX_JSON_DEPTH
    if json_depth_exceeds(text, limit):
        raise JsonProblem(_depth_reason(limit))
    try:
        value = _DECODER.decode(text)
    except RecursionError as error:  # pragma: no cover - the scan above stops these first
        raise JsonProblem(_depth_reason(limit)) from error
    except JsonProblem:
        raise
    except ValueError as error:
        if isinstance(error, json.JSONDecodeError):
            raise
        raise JsonProblem(_number_reason(error)) from error
    if _SURROGATE_ESCAPE.search(text):
        problem = _surrogate_problem(value)
        if problem is not None:
            raise problem
    return value


def _number_reason(error: ValueError) -> str:
    # Python refuses to turn more than 4,300 digits into an int (a guard against slow conversions).
    if "digits" in str(error):
        return f"holds a number of more than {sys.get_int_max_str_digits():,} digits"
    return f"can't be read ({error})"


def object_problem(value: dict[str, Any], length: int, cell_cap: int, columns: int) -> JsonProblem | None:
    """A JSON row with more keys than the column limit, or a value longer than the cell limit."""
    if len(value) > columns:
        return JsonProblem(f"has {len(value):,} keys, over the {columns:,}-column limit (DOCKET_MAX_COLUMNS)")
    if length > cell_cap:
        for key, item in value.items():
            if isinstance(item, str) and len(item) > cell_cap:
                return JsonProblem(
                    f"is {len(item):,} characters long, over the cell limit (DOCKET_MAX_CELL_CHARS)",
                    printable(key),
                )
    return None


def json_kind(value: Any) -> str:
    """What a JSON value is, for a problem that expected something else: "an array", "null"..."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def row_kind(value: Any) -> str:
    """What a row that is not a JSON object is: "a JSON array", "a string"..."""
    return "a JSON array" if isinstance(value, list) else json_kind(value)


def iter_json_array(text: IO[str]) -> Iterator[tuple[int, Any, str]]:
    """Each element of a top-level JSON array, with the line it starts on and its raw text, streaming.

    The standard library has no streaming JSON parser, so this feeds raw_decode a buffer that grows
    (doubling, so a 10 MB element costs linear time) until an element parses. An element that parses
    but can't be kept (see loads_checked) comes as a JsonProblem in place of its value. An element
    longer than DOCKET_MAX_LINE_CHARS or nested deeper than DOCKET_MAX_JSON_DEPTH refuses the file:
    where it ends can't be known without reading it whole.
    """
    decoder = _DECODER
    depth_cap = settings.DOCKET_MAX_JSON_DEPTH
    length_cap = settings.DOCKET_MAX_LINE_CHARS
    buffer = ""
    pos = 0
    line = 1
    eof = False

    def fill() -> None:
        nonlocal buffer, pos, eof
        if len(buffer) - pos > length_cap:
            raise IngestError(
                f"The JSON array's element starting on line {line:,} {long_line_reason(length_cap)}."
            )
        more = text.read(max(CHUNK_BYTES, len(buffer) - pos))
        if not more:
            eof = True
        buffer = buffer[pos:] + more
        pos = 0

    def skip_space() -> None:
        nonlocal pos, line
        while True:
            start = pos
            length = len(buffer)
            while pos < length and buffer[pos] in " \t\r\n\ufeff":
                pos += 1
            line += buffer.count("\n", start, pos)
            if pos < length or eof:
                return
            fill()

    def syntax_error(at: int, message: str) -> IngestError:
        return IngestError(
            f"The JSON is not valid at line {line + buffer.count(chr(10), pos, at):,}: {message}."
        )

    fill()
    skip_space()
    if pos >= len(buffer) or buffer[pos] != "[":
        raise syntax_error(pos, "expected the file to start with [")
    pos += 1
    expect_value = True
    first = True
    while True:
        skip_space()
        if pos >= len(buffer):
            raise syntax_error(pos, "the file ends before the array is closed with ]")
        char = buffer[pos]
        if char == "]" and (first or not expect_value):
            pos += 1
            break
        if not expect_value:
            if char != ",":
                raise syntax_error(pos, "expected , or ] after an element")
            pos += 1
            expect_value = True
            continue
        if char in "[{" and json_depth_exceeds(buffer, depth_cap, pos):
            raise IngestError(
                f"The JSON array's element starting on line {line:,} {_depth_reason(depth_cap)}."
            )
        try:
            try:
                value, end = decoder.raw_decode(buffer, pos)
            except JsonProblem as problem:
                # Parse again without the key check, to learn where the element ends.
                _value, end = _PLAIN_DECODER.raw_decode(buffer, pos)
                value = problem
        except json.JSONDecodeError as error:
            if not eof and (error.pos >= len(buffer) - 16 or error.msg.startswith("Unterminated")):
                fill()
                continue
            raise syntax_error(error.pos, error.msg) from error
        except ValueError as error:  # a number past Python's digit limit: where it ends is unknown
            raise IngestError(
                f"The JSON array's element starting on line {line:,} {_number_reason(error)}."
            ) from error
        if end >= len(buffer) and not eof:
            fill()  # a number or literal may go on in the next chunk
            continue
        raw = buffer[pos:end]
        if _SURROGATE_ESCAPE.search(raw) and not isinstance(value, JsonProblem):
            value = _surrogate_problem(value) or value
        yield line, value, raw
        line += raw.count("\n")
        pos = end
        expect_value = False
        first = False
    skip_space()
    if pos < len(buffer):
        raise syntax_error(pos, "there is more text after the closing ]")
