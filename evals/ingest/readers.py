"""Rows out of a file, one at a time: CSV/TSV, JSON Lines, a JSON array, or an XLSX sheet.

A reader yields `Record`s (the line the row starts on, and its cells or its object) under a header. It
never holds more than one row and a read buffer in memory.

One unit, a little over 450 lines: `Table` opens each format through the same bounded line reader and
the same row and byte counters, so its openers are kept together. JSON parsing is in json_rows.py,
workbooks in xlsx.py.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from django.conf import settings

from evals.ingest.files import CHUNK_BYTES, ENCODING_LABELS, IngestError, long_line_reason
from evals.ingest.json_rows import (
    ROW,
    JsonProblem,
    iter_json_array,
    loads_checked,
    object_problem,
    row_kind,
)
from evals.ingest.xlsx import SheetRow, open_workbook, sheet_rows, xlsx_text, xlsx_value

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


class _LongLine(Exception):
    def __init__(self, line: int, chars: int) -> None:
        self.line = line
        self.chars = chars


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
        self.read_limit = max_rows if max_rows is not None else settings.DOCKET_MAX_ROWS
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
        limit = settings.DOCKET_MAX_LINE_CHARS
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
        csv.field_size_limit(settings.DOCKET_MAX_CELL_CHARS)
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
            raise IngestError(f"Line {error.line:,} {long_line_reason(error.chars)}.") from error
        except UnicodeDecodeError as error:  # pragma: no cover - the handler above replaces bad bytes
            raise IngestError(f"The file is not valid {self.spec.encoding} ({error.reason}).") from error
        if header is None:
            raise IngestError("The file holds no data, only blank lines.")
        columns = settings.DOCKET_MAX_COLUMNS
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
            cap = settings.DOCKET_MAX_CELL_CHARS
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
                    f"Line {error.line:,} {long_line_reason(error.chars)}"
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
        cell_cap = settings.DOCKET_MAX_CELL_CHARS
        columns = settings.DOCKET_MAX_COLUMNS
        depth_cap = settings.DOCKET_MAX_JSON_DEPTH
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
                yield Record(number, {}, long_line_reason(error.chars))
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
                yield Record(number, {}, f"is {row_kind(value)}, not a JSON object", raw=line.rstrip("\r\n"))
                continue
            if len(value) > columns or len(line) > cell_cap:
                problem = object_problem(value, len(line), cell_cap, columns)
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
        cell_cap = settings.DOCKET_MAX_CELL_CHARS
        columns = settings.DOCKET_MAX_COLUMNS
        for line, value, raw in iter_json_array(text):
            if _BadBytes.seen != bad_seen and SURROGATES.search(raw):
                yield Record(line, {}, bad_byte_reason(raw, self.spec.encoding), raw=raw)
            elif isinstance(value, JsonProblem):
                yield Record(line, {}, str(value), value.column, raw=raw)
            elif not isinstance(value, dict):
                yield Record(line, {}, f"is {row_kind(value)}, not a JSON object", raw=raw)
            elif (problem := object_problem(value, len(raw), cell_cap, columns)) is not None:
                yield Record(line, {}, str(problem), problem.column, raw=raw)
            else:
                yield Record(line, value, raw=raw)

    def _sample_columns(self, records: Iterator[Record]) -> list[str]:
        columns: dict[str, None] = {}
        chars = 0
        cap = settings.DOCKET_MAX_COLUMNS
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
        rows = sheet_rows(sheet, self._closers)
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
        self.columns = name_columns([xlsx_text(cell) for cell in header])
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
            values = [xlsx_value(cell) for cell in cells]
            if not any(value is not None and value != "" for value in values):
                self._blank()
                continue
            yield Record(number, values)


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
