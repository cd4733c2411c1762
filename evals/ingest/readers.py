"""Rows out of a file, one at a time: CSV/TSV, JSON Lines, a JSON array, or an XLSX sheet.

A reader yields `Record`s (the line the row starts on, and its cells or its object) under a header. It
never holds more than one row and a read buffer in memory.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from django.conf import settings

from evals.ingest.files import CHUNK_BYTES, ENCODING_LABELS, IngestError, human_size

# Cells hold whole model outputs; the csv module's default cap is 131,072 characters. Each CSV read
# sets it to DOCKET_MAX_CELL_CHARS (see _open_csv); this only raises the default for other readers.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))

# JSON readers collect column names from the first objects, up to this many or this much text.
COLUMN_SAMPLE_ROWS = 1000
COLUMN_SAMPLE_CHARS = 8 * 1024 * 1024

_BAD_BYTES_HANDLER = "docket-bad-bytes"


class _BadBytes:
    """Counts undecodable bytes met by any reader (they become lone surrogates, as with surrogateescape).

    Readers compare the count before and after a row: while it has not moved, rows need no scan for them.
    """

    seen = 0


def _mark_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    _BadBytes.seen += 1
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error(_BAD_BYTES_HANDLER, _mark_bad_bytes)
SURROGATES = re.compile("[\udc80-\udcff]")
# The column named in a problem that concerns the whole row.
ROW = "(row)"


def _limit(name: str) -> int:
    """A reading limit from settings (dashboard/settings.py documents each)."""
    return int(getattr(settings, name))


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
        raise JsonProblem(f"has the key {_printable(twice)!r} twice in one object")
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


def _printable(text: str) -> str:
    """Text safe to show and store: a lone surrogate as its \\u escape (UTF-8 can't hold it)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
                    f"holds a lone surrogate ({_printable(_LONE_SURROGATE.search(item).group())}), "  # type: ignore[union-attr]
                    "half of a UTF-16 pair, which text can't hold",
                    under,
                )
        elif isinstance(item, dict):
            for key, inner in item.items():
                if _LONE_SURROGATE.search(key):
                    return JsonProblem(
                        f'has a key with a lone surrogate ("{_printable(key)}"), which text can\'t hold',
                        under,
                    )
                stack.append((inner, _printable(key) if under == ROW and item is value else under))
        elif isinstance(item, list):
            stack.extend((inner, under) for inner in item)
    return None


def loads_checked(text: str, depth_cap: int | None = None) -> Any:
    """json.loads, plus the checks that make a value safe to keep; raises JsonProblem (a ValueError).

    depth_cap: DOCKET_MAX_JSON_DEPTH, passed by callers that read it once per file.
    """
    limit = depth_cap if depth_cap is not None else _limit("DOCKET_MAX_JSON_DEPTH")
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


class _LongLine(Exception):
    def __init__(self, line: int, chars: int) -> None:
        self.line = line
        self.chars = chars


def _long_line_reason(chars: int) -> str:
    return f"is longer than {chars:,} characters, over the line limit (DOCKET_MAX_LINE_CHARS)"


def bad_byte_reason(text: str, encoding: str) -> str:
    match = SURROGATES.search(text)
    byte = ord(match.group()) - 0xDC00 if match else 0
    label = ENCODING_LABELS.get(encoding, encoding)
    return f"holds byte 0x{byte:02X}, which is not valid {label}; save the file as UTF-8"


@dataclass(frozen=True)
class ReadSpec:
    """How to read one file: what inspect_file found, plus the user's choices (delimiter, sheet)."""

    path: str
    file_format: str
    encoding: str = ""
    delimiter: str = ","
    sheet: str = ""


@dataclass(slots=True)
class Record:
    line: int
    values: Any  # list of cells (CSV, XLSX) or a dict (JSON)
    # Set when the row itself can't be read (a JSON Lines line that is not JSON, undecodable bytes).
    error: str = ""
    error_column: str = ROW
    # JSON formats: the row's text as it is in the file, so an invalid row can be given back whole.
    raw: str = ""


class Table:
    """An open file: its columns, then its records, streaming. Use as a context manager."""

    def __init__(self, spec: ReadSpec, *, max_rows: int | None = None) -> None:
        self.spec = spec
        self.max_rows = max_rows
        # Blank rows count too: 100 million `<row/>` or empty lines cost time even though none is data.
        self.read_limit = max_rows if max_rows is not None else _limit("DOCKET_MAX_ROWS")
        self.columns: list[str] = []
        self.blank_lines = 0
        self.rows_read = 0
        self._handle: IO[bytes] | None = None
        self._size = 0
        self._records: Iterator[Record] | None = None
        self._closers: list[Any] = []
        # Undecodable bytes met by any reader so far; rows need scanning for them only once this moves.
        self._bad_seen = _BadBytes.seen
        # Line reads (see _lines): lines read so far, characters since the last row began, end of file.
        self._lines_read = 0
        self._row_chars = 0
        self._eof = False

    def __enter__(self) -> Table:
        opener = {
            "csv": self._open_csv,
            "jsonl": self._open_jsonl,
            "json": self._open_json,
            "xlsx": self._open_xlsx,
        }
        try:
            opener[self.spec.file_format]()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()

    def __iter__(self) -> Iterator[Record]:
        assert self._records is not None, "use Table as a context manager"
        limit = self.max_rows
        for record in self._records:
            self.rows_read += 1
            if limit is not None and self.rows_read > limit:
                raise IngestError(
                    f"The file has more than {limit:,} rows, over the row limit (DOCKET_MAX_ROWS)."
                )
            yield record

    def _blank(self, count: int = 1) -> None:
        self.blank_lines += count
        if self.blank_lines + self.rows_read > self.read_limit:
            raise IngestError(
                f"The file has more than {self.read_limit:,} rows counting blank ones, "
                "over the row limit (DOCKET_MAX_ROWS)."
            )

    def progress(self) -> float | None:
        if self._handle is None or not self._size:
            return None
        try:
            return min(self._handle.tell() / self._size, 1.0)
        except (OSError, ValueError):
            return None

    # --- text files ---------------------------------------------------------------------------------

    def _open_text(self) -> io.TextIOWrapper:
        raw = open(self.spec.path, "rb")  # noqa: SIM115 (closed by close())
        self._closers.append(raw.close)
        self._handle = raw
        self._size = Path(self.spec.path).stat().st_size
        self._lines_read = self._row_chars = 0
        self._eof = False
        # newline="" keeps line ends inside quoted cells as they are; the csv module handles \r\n.
        return io.TextIOWrapper(raw, encoding=self.spec.encoding, errors=_BAD_BYTES_HANDLER, newline="")

    def _lines(self, text: io.TextIOWrapper) -> Iterator[str]:
        """The file's lines, each read with a bound: a 200 MB line is refused after DOCKET_MAX_LINE_CHARS
        characters instead of being held whole. The characters of one row (a CSV row may span lines)
        are bounded the same way: the reader sets _row_chars to 0 as each row begins."""
        limit = _limit("DOCKET_MAX_LINE_CHARS")
        readline = text.readline
        while True:
            line = readline(limit + 1)
            if not line:
                self._eof = True
                return
            self._lines_read += 1
            self._row_chars += len(line)
            if len(line) > limit or self._row_chars > limit:
                raise _LongLine(self._lines_read, limit)
            yield line

    def _skip_rest_of_line(self, text: io.TextIOWrapper) -> None:
        """Read past the end of an over-long line in bounded chunks (JSON Lines: the next line is a row)."""
        while True:
            chunk = text.readline(CHUNK_BYTES)
            if not chunk or chunk.endswith(("\n", "\r")):
                return

    def _open_csv(self) -> None:
        text = self._open_text()
        csv.field_size_limit(_limit("DOCKET_MAX_CELL_CHARS"))
        reader = csv.reader(self._lines(text), delimiter=self.spec.delimiter or ",")
        line = 0
        header: list[str] | None = None
        rows = iter(reader)
        try:
            for cells in rows:
                start, line = line + 1, reader.line_num
                delimiter = self.spec.delimiter or ","
                if start == 1 and delimiter.join(cells).strip().lower() == f"sep={delimiter}":
                    self._row_chars = 0
                    continue  # Excel's "sep=;" hint line
                if not any(cells):
                    self._row_chars = 0
                    self._blank()
                    continue
                if self._eof:
                    raise IngestError(f"Line {start:,}: a quote opened here never closes.")
                header = cells
                break
        except csv.Error as error:
            raise IngestError(self._csv_error(error, line + 1, header=True)) from error
        except _LongLine as error:
            raise IngestError(f"Line {error.line:,} {_long_line_reason(error.chars)}.") from error
        except UnicodeDecodeError as error:  # pragma: no cover - the handler above replaces bad bytes
            raise IngestError(f"The file is not valid {self.spec.encoding} ({error.reason}).") from error
        if header is None:
            raise IngestError("The file holds no data, only blank lines.")
        columns = _limit("DOCKET_MAX_COLUMNS")
        if len(header) > columns:
            raise IngestError(
                f"The header has {len(header):,} columns, over the {columns:,}-column limit "
                "(DOCKET_MAX_COLUMNS)."
            )
        if _BadBytes.seen != self._bad_seen:
            for index, cell in enumerate(header, start=1):
                if SURROGATES.search(cell):
                    raise IngestError(
                        f"Column {index} of the header {bad_byte_reason(cell, self.spec.encoding)}."
                    )
        self.columns = name_columns(header)
        self._row_chars = 0
        self._records = self._csv_records(rows, reader, line)

    def _csv_error(self, error: csv.Error, start: int, *, header: bool = False) -> str:
        if "field larger than field limit" in str(error):
            cap = _limit("DOCKET_MAX_CELL_CHARS")
            return (
                f"Line {start:,}: a cell is longer than {cap:,} characters, over the cell limit "
                "(DOCKET_MAX_CELL_CHARS); if a quote opened in this row never closes, the rest of the "
                "file reads as one cell."
            )
        what = "The header row" if header else f"Line {start:,}"
        return f"{what} can't be read as CSV ({error})."

    def _csv_records(self, rows: Iterator[list[str]], reader: Any, line: int) -> Iterator[Record]:
        bad_seen = self._bad_seen
        while True:
            try:
                cells = next(rows)
            except StopIteration:
                return
            except csv.Error as error:
                raise IngestError(self._csv_error(error, line + 1)) from error
            except _LongLine as error:
                # Within the row starting after `line`: name that start, where the quote opened if any.
                raise IngestError(
                    f"Line {error.line:,} {_long_line_reason(error.chars)}"
                    + (f" (in the row starting on line {line + 1:,})." if error.line > line + 1 else ".")
                ) from error
            start, line = line + 1, reader.line_num
            self._row_chars = 0
            if not any(cells):
                self._blank()
                continue
            if self._eof:
                # The csv module reached the end of the file inside a quoted cell: without this, every
                # line after the quote silently becomes part of one cell.
                yield Record(start, cells, "a quote opened here never closes")
                continue
            if _BadBytes.seen != bad_seen:
                for index, cell in enumerate(cells):
                    if SURROGATES.search(cell):
                        column = self.columns[index] if index < len(self.columns) else f"column {index + 1}"
                        yield Record(start, cells, bad_byte_reason(cell, self.spec.encoding), column)
                        break
                else:
                    yield Record(start, cells)
                continue
            yield Record(start, cells)

    def _open_jsonl(self) -> None:
        self.columns = self._sample_columns(self._jsonl_records(self._open_text(), count_blank=False))
        self.close()
        self._records = self._jsonl_records(self._open_text(), count_blank=True)

    def _jsonl_records(self, text: io.TextIOWrapper, *, count_blank: bool) -> Iterator[Record]:
        bad_seen = self._bad_seen
        first = True
        lines = self._lines(text)
        cell_cap = _limit("DOCKET_MAX_CELL_CHARS")
        columns = _limit("DOCKET_MAX_COLUMNS")
        depth_cap = _limit("DOCKET_MAX_JSON_DEPTH")
        number = 0
        while True:
            try:
                line = next(lines)
            except StopIteration:
                return
            except _LongLine as error:
                number = error.line
                self._skip_rest_of_line(text)
                self._row_chars = 0
                lines = self._lines(text)
                yield Record(number, {}, _long_line_reason(error.chars))
                continue
            number = self._lines_read
            self._row_chars = 0
            if not line or line.isspace():
                if count_blank:
                    self._blank()
                continue
            if _BadBytes.seen != bad_seen and SURROGATES.search(line):
                yield Record(number, {}, bad_byte_reason(line, self.spec.encoding), raw=line.rstrip("\r\n"))
                continue
            try:
                value = loads_checked(line, depth_cap)
            except JsonProblem as error:
                yield Record(number, {}, str(error), error.column, raw=line.rstrip("\r\n"))
                continue
            except ValueError as error:
                if first and line.strip() in {"{", "["}:
                    raise IngestError(
                        "This JSON file holds one object spread over many lines; Docket reads JSON Lines "
                        "(one object per line) or a JSON array of objects."
                    ) from error
                reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
                yield Record(number, {}, f"is not valid JSON ({reason})", raw=line.rstrip("\r\n"))
                continue
            finally:
                first = False
            if not isinstance(value, dict):
                yield Record(
                    number, {}, f"is {_json_kind(value)}, not a JSON object", raw=line.rstrip("\r\n")
                )
                continue
            if len(value) > columns or len(line) > cell_cap:
                problem = _object_problem(value, len(line), cell_cap, columns)
                if problem is not None:
                    yield Record(number, {}, str(problem), problem.column, raw=line.rstrip("\r\n"))
                    continue
            yield Record(number, value, raw=line.rstrip("\r\n"))

    def _open_json(self) -> None:
        self.columns = self._sample_columns(self._json_array_records(self._open_text()))
        self.close()
        self._records = self._json_array_records(self._open_text())

    def _json_array_records(self, text: io.TextIOWrapper) -> Iterator[Record]:
        bad_seen = self._bad_seen
        cell_cap = _limit("DOCKET_MAX_CELL_CHARS")
        columns = _limit("DOCKET_MAX_COLUMNS")
        for line, value, raw in iter_json_array(text):
            if _BadBytes.seen != bad_seen and SURROGATES.search(raw):
                yield Record(line, {}, bad_byte_reason(raw, self.spec.encoding), raw=raw)
            elif isinstance(value, JsonProblem):
                yield Record(line, {}, str(value), value.column, raw=raw)
            elif not isinstance(value, dict):
                yield Record(line, {}, f"is {_json_kind(value)}, not a JSON object", raw=raw)
            elif (problem := _object_problem(value, len(raw), cell_cap, columns)) is not None:
                yield Record(line, {}, str(problem), problem.column, raw=raw)
            else:
                yield Record(line, value, raw=raw)

    def _sample_columns(self, records: Iterator[Record]) -> list[str]:
        columns: dict[str, None] = {}
        chars = 0
        cap = _limit("DOCKET_MAX_COLUMNS")
        for count, record in enumerate(records, start=1):
            if isinstance(record.values, dict):
                for key in record.values:
                    columns.setdefault(key, None)
                if len(columns) > cap:
                    raise IngestError(
                        f"The first {count:,} objects have more than {cap:,} different keys, over the "
                        "column limit (DOCKET_MAX_COLUMNS)."
                    )
                chars += sum(len(key) + len(str(value)) for key, value in record.values.items())
            if count >= COLUMN_SAMPLE_ROWS or chars >= COLUMN_SAMPLE_CHARS:
                break
        return list(columns)

    # --- XLSX -----------------------------------------------------------------------------------------

    def _open_xlsx(self) -> None:
        workbook = open_workbook(self.spec.path)
        self._closers.append(workbook.close)
        sheet_name = self.spec.sheet or workbook.sheetnames[0]
        if sheet_name not in workbook.sheetnames:
            raise IngestError(f"The workbook has no sheet named {sheet_name!r}.")
        sheet = workbook[sheet_name]
        if not hasattr(sheet, "iter_rows"):
            raise IngestError(f"The sheet {sheet_name!r} is a chart, not a table.")
        rows = _sheet_rows(sheet, self._closers)
        header: list[Any] | None = None
        try:
            for number, cells, wide, blank in rows:
                if blank:
                    self._blank(blank)
                if wide:
                    raise IngestError(f"Row {number:,} of the sheet {sheet_name!r} {wide}.")
                if cells is None or not any(cell is not None and cell != "" for cell in cells):
                    if cells is not None:
                        self._blank()
                    continue
                header = list(cells)
                break
        except IngestError:
            raise
        except Exception as error:
            raise IngestError(f"The sheet {sheet_name!r} can't be read ({error}).") from error
        if header is None:
            raise IngestError(f"The sheet {sheet_name!r} is empty.")
        while header and (header[-1] is None or header[-1] == ""):
            header.pop()
        self.columns = name_columns([_xlsx_text(cell) for cell in header])
        self._records = self._xlsx_records(rows)

    def _xlsx_records(self, rows: Iterator[SheetRow]) -> Iterator[Record]:
        number = 0
        while True:
            try:
                number, cells, problem, blank = next(rows)
            except StopIteration:
                return
            except IngestError:
                raise
            except Exception as error:
                raise IngestError(f"The sheet can't be read past row {number + 1:,} ({error}).") from error
            if blank:
                self._blank(blank)
            if cells is None:
                continue
            if problem:
                yield Record(number, cells, problem)
                continue
            values = [_xlsx_value(cell) for cell in cells]
            if not any(value is not None and value != "" for value in values):
                self._blank()
                continue
            yield Record(number, values)


# A row of a sheet: its number, its cells (None for a report of blank rows only), a problem, and how
# many blank rows came before it since the last one.
SheetRow = tuple[int, list[Any] | None, str, int]


def _sheet_rows(sheet: Any, closers: list[Any]) -> Iterator[SheetRow]:
    """The rows of a read-only openpyxl sheet, as the file has them.

    openpyxl's iter_rows pads every row to the sheet's claimed <dimension> (A1:XFD1048576 makes each
    row 16,384 cells and adds a million empty rows), and its parser keeps every parsed <row> element
    under <sheetData>. This reads the rows with openpyxl's own cell parser, ignores the dimension,
    pads nothing, and drops each row once read. Blank rows, as elements without cells or as row
    numbers skipped (`<row r="1048576">`), are counted, not made: millions of them cost little, and
    the count is reported every 4,096 so that the row limit stops them.
    """
    from openpyxl.worksheet._reader import DATA_TAG, ROW_TAG, WorkSheetParser
    from openpyxl.xml.functions import iterparse

    columns = _limit("DOCKET_MAX_COLUMNS")
    source = sheet._get_source()
    closers.append(source.close)
    workbook = sheet.parent
    parser = WorkSheetParser(
        source,
        sheet._shared_strings,
        data_only=workbook.data_only,
        epoch=workbook.epoch,
        date_formats=workbook._date_formats,
        timedelta_formats=workbook._timedelta_formats,
    )
    sheet_data = None
    blank = 0  # blank rows since the last row yielded
    for event, element in iterparse(source, events=("start", "end")):
        if element.tag != ROW_TAG:
            if element.tag == DATA_TAG and event == "start":
                sheet_data = element
            continue
        if event == "start":
            continue
        if sheet_data is not None and len(sheet_data) > 1024:
            sheet_data.clear()
        before = parser.row_counter
        if len(element) == 0 and not element.attrib:
            parser.row_counter += 1
            number, cells = parser.row_counter, []
        else:
            number, cells = parser.parse_row(element)
            element.clear()
        # Row numbers the file skips are blank rows (a number going back skips none).
        blank += max(number - before - 1, 0)
        if not cells:
            blank += 1
            if blank >= 4096:
                yield number, None, "", blank
                blank = 0
            continue
        width = max(cell["column"] for cell in cells)
        if width > columns:
            reason = (
                f"has a value in column {width:,}, over the {columns:,}-column limit (DOCKET_MAX_COLUMNS)"
            )
            yield number, [], reason, blank
        else:
            values: list[Any] = [None] * width
            for cell in cells:
                values[cell["column"] - 1] = cell["value"]
            yield number, values, "", blank
        blank = 0
    if blank:
        yield parser.row_counter, None, "", blank


def _object_problem(value: dict[str, Any], length: int, cell_cap: int, columns: int) -> JsonProblem | None:
    """A JSON row with more keys than the column limit, or a value longer than the cell limit."""
    if len(value) > columns:
        return JsonProblem(f"has {len(value):,} keys, over the {columns:,}-column limit (DOCKET_MAX_COLUMNS)")
    if length > cell_cap:
        for key, item in value.items():
            if isinstance(item, str) and len(item) > cell_cap:
                return JsonProblem(
                    f"is {len(item):,} characters long, over the cell limit (DOCKET_MAX_CELL_CHARS)",
                    _printable(key),
                )
    return None


def check_zip_sizes(path: str) -> None:
    """Refuse a workbook whose parts unpack past the limits, from the ZIP's directory, before inflating.

    openpyxl reads the shared strings whole: a 784 KB file whose one string unpacks to 768 MiB would
    take gigabytes. A directory that lies (a small size for a big part) can't get past this either:
    zipfile stops each part at its declared size and then fails its CRC check.
    """
    part_cap = _limit("DOCKET_MAX_XLSX_PART_BYTES")
    total_cap = _limit("DOCKET_MAX_XLSX_BYTES")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise IngestError(f"The workbook can't be opened ({type(error).__name__}: {error}).") from error
    total = 0
    for member in members:
        if member.file_size > part_cap:
            raise IngestError(
                f"The workbook's part {_printable(member.filename)} unpacks to "
                f"{human_size(member.file_size)}, over the {human_size(part_cap)} limit for one part "
                "(DOCKET_MAX_XLSX_PART_BYTES)."
            )
        total += member.file_size
        if total > total_cap:
            raise IngestError(
                f"The workbook unpacks to more than {human_size(total_cap)}, over the workbook limit "
                "(DOCKET_MAX_XLSX_BYTES)."
            )


def _read_shared_strings(source: IO[bytes]) -> list[str]:
    """openpyxl's read_string_table, bounded: at most DOCKET_MAX_XLSX_STRINGS strings, and each <si>
    element dropped once read (openpyxl's keeps them all under <sst>: 12 million one-letter strings,
    a 500 KB file, took 300 s and 1.1 GB). The text is openpyxl's: the plain <t>, then each run's <t>.
    """
    from openpyxl.xml.constants import SHEET_MAIN_NS
    from openpyxl.xml.functions import iterparse

    cap = _limit("DOCKET_MAX_XLSX_STRINGS")
    string_tag, text_tag, run_tag = (f"{{{SHEET_MAIN_NS}}}{name}" for name in ("si", "t", "r"))
    strings: list[str] = []
    root = None
    for event, element in iterparse(source, events=("start", "end")):
        if event == "start":
            if root is None:
                root = element
            continue
        if element.tag != string_tag:
            continue
        parts: list[str] = []
        for child in element:
            if child.tag == text_tag:
                parts.append(child.text or "")
            elif child.tag == run_tag:
                run_text = child.find(text_tag)
                if run_text is not None:
                    parts.append(run_text.text or "")
        strings.append("".join(parts).replace("x005F_", ""))
        if len(strings) > cap:
            raise IngestError(
                f"The workbook has more than {cap:,} shared strings, over the limit (DOCKET_MAX_XLSX_STRINGS)."
            )
        if root is not None and len(root) > 1024:
            root.clear()
    return strings


def _bound_openpyxl() -> None:
    """Make openpyxl's read-only loading bounded in time and memory; done once per process.

    ReadOnlyWorksheet.__init__ looks for <dimension> with a parser that, when a sheet has none, reads
    the whole sheet and keeps every row element until </sheetData>: 40 million `<row/>` took 150 s and
    3.9 GB before a single row was read. Docket reads rows with _sheet_rows and never uses the size.
    And the shared strings are read by _read_shared_strings. Docket is openpyxl's only user in the
    process, so both are replaced where openpyxl's reader looks them up.
    """
    from openpyxl.reader import excel
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    if getattr(excel.ReadOnlyWorksheet, "docket_unsized", False):
        return

    class UnsizedReadOnlyWorksheet(ReadOnlyWorksheet):
        docket_unsized = True

        def _get_size(self) -> None:
            return None

    excel.ReadOnlyWorksheet = UnsizedReadOnlyWorksheet
    excel.read_string_table = _read_shared_strings


def open_workbook(path: str) -> Any:
    import openpyxl  # imported here: only XLSX uploads pay for it

    check_zip_sizes(path)
    _bound_openpyxl()
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
    except IngestError:
        raise
    except Exception as error:
        raise IngestError(f"The workbook can't be opened ({type(error).__name__}: {error}).") from error


def xlsx_sheet_names(path: str) -> list[str]:
    workbook = open_workbook(path)
    try:
        return list(workbook.sheetnames)
    finally:
        workbook.close()


def _xlsx_value(cell: Any) -> Any:
    if isinstance(cell, dt.datetime | dt.date | dt.time):
        return cell.isoformat()
    if isinstance(cell, dt.timedelta):
        return str(cell)
    return cell


def _xlsx_text(cell: Any) -> str:
    value = _xlsx_value(cell)
    return "" if value is None else str(value)


def name_columns(header: list[str]) -> list[str]:
    """Header cells as unique, non-empty column names ("column 3" for a blank one, "name (2)" for a repeat)."""
    names: list[str] = []
    seen: set[str] = set()
    for index, cell in enumerate(header, start=1):
        name = str(cell).strip().lstrip("\ufeff").strip() or f"column {index}"
        unique, copy = name, 2
        while unique in seen:
            unique, copy = f"{name} ({copy})", copy + 1
        seen.add(unique)
        names.append(unique)
    return names


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def iter_json_array(text: IO[str]) -> Iterator[tuple[int, Any, str]]:
    """Each element of a top-level JSON array, with the line it starts on and its raw text, streaming.

    The standard library has no streaming JSON parser, so this feeds raw_decode a buffer that grows
    (doubling, so a 10 MB element costs linear time) until an element parses. An element that parses
    but can't be kept (see loads_checked) comes as a JsonProblem in place of its value. An element
    longer than DOCKET_MAX_LINE_CHARS or nested deeper than DOCKET_MAX_JSON_DEPTH refuses the file:
    where it ends can't be known without reading it whole.
    """
    decoder = _DECODER
    depth_cap = _limit("DOCKET_MAX_JSON_DEPTH")
    length_cap = _limit("DOCKET_MAX_LINE_CHARS")
    buffer = ""
    pos = 0
    line = 1
    eof = False

    def fill() -> None:
        nonlocal buffer, pos, eof
        if len(buffer) - pos > length_cap:
            raise IngestError(
                f"The JSON array's element starting on line {line:,} {_long_line_reason(length_cap)}."
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
