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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from evals.ingest.files import CHUNK_BYTES, ENCODING_LABELS, IngestError

# Cells hold whole model outputs; the csv module's default cap is 131,072 characters.
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
        self.columns: list[str] = []
        self.blank_lines = 0
        self.rows_read = 0
        self._handle: IO[bytes] | None = None
        self._size = 0
        self._records: Iterator[Record] | None = None
        self._closers: list[Any] = []
        # Undecodable bytes met by any reader so far; rows need scanning for them only once this moves.
        self._bad_seen = _BadBytes.seen

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
                raise IngestError(f"The file has more than {limit:,} rows, over the row limit.")
            yield record

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
        # newline="" keeps line ends inside quoted cells as they are; the csv module handles \r\n.
        return io.TextIOWrapper(raw, encoding=self.spec.encoding, errors=_BAD_BYTES_HANDLER, newline="")

    def _open_csv(self) -> None:
        text = self._open_text()
        reader = csv.reader(text, delimiter=self.spec.delimiter or ",")
        line = 0
        header: list[str] | None = None
        rows = iter(reader)
        try:
            for cells in rows:
                start, line = line + 1, reader.line_num
                delimiter = self.spec.delimiter or ","
                if start == 1 and delimiter.join(cells).strip().lower() == f"sep={delimiter}":
                    continue  # Excel's "sep=;" hint line
                if not any(cells):
                    self.blank_lines += 1
                    continue
                header = cells
                break
        except csv.Error as error:
            raise IngestError(f"The header row can't be read as CSV ({error}).") from error
        except UnicodeDecodeError as error:  # pragma: no cover - the handler above replaces bad bytes
            raise IngestError(f"The file is not valid {self.spec.encoding} ({error.reason}).") from error
        if header is None:
            raise IngestError("The file holds no data, only blank lines.")
        self.columns = name_columns(header)
        self._records = self._csv_records(rows, reader, line)

    def _csv_records(self, rows: Iterator[list[str]], reader: Any, line: int) -> Iterator[Record]:
        bad_seen = self._bad_seen
        while True:
            try:
                cells = next(rows)
            except StopIteration:
                return
            except csv.Error as error:
                raise IngestError(f"Line {reader.line_num:,} can't be read as CSV ({error}).") from error
            start, line = line + 1, reader.line_num
            if not any(cells):
                self.blank_lines += 1
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
        for number, line in enumerate(text, start=1):
            if not line or line.isspace():
                if count_blank:
                    self.blank_lines += 1
                continue
            if _BadBytes.seen != bad_seen and SURROGATES.search(line):
                yield Record(number, {}, bad_byte_reason(line, self.spec.encoding), raw=line.rstrip("\r\n"))
                continue
            try:
                value = json.loads(line)
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
            yield Record(number, value, raw=line.rstrip("\r\n"))

    def _open_json(self) -> None:
        self.columns = self._sample_columns(self._json_array_records(self._open_text()))
        self.close()
        self._records = self._json_array_records(self._open_text())

    def _json_array_records(self, text: io.TextIOWrapper) -> Iterator[Record]:
        bad_seen = self._bad_seen
        for line, value, raw in iter_json_array(text):
            if _BadBytes.seen != bad_seen and SURROGATES.search(raw):
                yield Record(line, {}, bad_byte_reason(raw, self.spec.encoding), raw=raw)
            elif not isinstance(value, dict):
                yield Record(line, {}, f"is {_json_kind(value)}, not a JSON object", raw=raw)
            else:
                yield Record(line, value, raw=raw)

    def _sample_columns(self, records: Iterator[Record]) -> list[str]:
        columns: dict[str, None] = {}
        chars = 0
        for count, record in enumerate(records, start=1):
            if isinstance(record.values, dict):
                for key in record.values:
                    columns.setdefault(key, None)
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
        rows = enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1)
        header: list[Any] | None = None
        try:
            for _number, cells in rows:
                if not any(cell is not None and cell != "" for cell in cells):
                    self.blank_lines += 1
                    continue
                header = list(cells)
                break
        except Exception as error:
            raise IngestError(f"The sheet {sheet_name!r} can't be read ({error}).") from error
        if header is None:
            raise IngestError(f"The sheet {sheet_name!r} is empty.")
        while header and (header[-1] is None or header[-1] == ""):
            header.pop()
        self.columns = name_columns([_xlsx_text(cell) for cell in header])
        self._records = self._xlsx_records(rows)

    def _xlsx_records(self, rows: Iterator[tuple[int, tuple[Any, ...]]]) -> Iterator[Record]:
        while True:
            try:
                number, cells = next(rows)
            except StopIteration:
                return
            except Exception as error:
                raise IngestError(
                    f"The sheet can't be read past row {self.rows_read + 1:,} ({error})."
                ) from error
            values = [_xlsx_value(cell) for cell in cells]
            if not any(value is not None and value != "" for value in values):
                self.blank_lines += 1
                continue
            yield Record(number, values)


def open_workbook(path: str) -> Any:
    import openpyxl  # imported here: only XLSX uploads pay for it

    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True)
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
    (doubling, so a 10 MB element costs linear time) until an element parses.
    """
    decoder = json.JSONDecoder()
    buffer = ""
    pos = 0
    line = 1
    eof = False

    def fill() -> None:
        nonlocal buffer, pos, eof
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
        try:
            value, end = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError as error:
            if not eof and (error.pos >= len(buffer) - 16 or error.msg.startswith("Unterminated")):
                fill()
                continue
            raise syntax_error(error.pos, error.msg) from error
        if end >= len(buffer) and not eof:
            fill()  # a number or literal may go on in the next chunk
            continue
        raw = buffer[pos:end]
        yield line, value, raw
        line += raw.count("\n")
        pos = end
        expect_value = False
        first = False
    skip_space()
    if pos < len(buffer):
        raise syntax_error(pos, "there is more text after the closing ]")
