"""Excel workbooks, read with openpyxl in read-only mode and bounded: the ZIP's sizes are checked before
anything is inflated, the shared strings and the sheet's rows are read one element at a time, and
the sheet's claimed dimension is never trusted. `evals.ingest.readers.Table` turns the rows into records.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings

from evals.ingest.files import IngestError, human_size, printable

# A row of a sheet: its number, its cells (None for a report of blank rows only), a problem, and how
# many blank rows came before it since the last one.
SheetRow = tuple[int, list[Any] | None, str, int]


def sheet_rows(sheet: Any, closers: list[Any]) -> Iterator[SheetRow]:
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

    columns = settings.DOCKET_MAX_COLUMNS
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


def check_zip_sizes(path: str) -> None:
    """Refuse a workbook whose parts unpack past the limits, from the ZIP's directory, before inflating.

    openpyxl reads the shared strings whole: a 784 KB file whose one string unpacks to 768 MiB would
    take gigabytes. A directory that lies (a small size for a big part) can't get past this either:
    zipfile stops each part at its declared size and then fails its CRC check.
    """
    part_cap = settings.DOCKET_MAX_XLSX_PART_BYTES
    total_cap = settings.DOCKET_MAX_XLSX_BYTES
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise IngestError(f"The workbook can't be opened ({type(error).__name__}: {error}).") from error
    total = 0
    for member in members:
        if member.file_size > part_cap:
            raise IngestError(
                f"The workbook's part {printable(member.filename)} unpacks to "
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

    cap = settings.DOCKET_MAX_XLSX_STRINGS
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
    3.9 GB before a single row was read. Docket reads rows with sheet_rows and never uses the size.
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


def xlsx_value(cell: Any) -> Any:
    if isinstance(cell, dt.datetime | dt.date | dt.time):
        return cell.isoformat()
    if isinstance(cell, dt.timedelta):
        return str(cell)
    return cell


def xlsx_text(cell: Any) -> str:
    value = xlsx_value(cell)
    return "" if value is None else str(value)
