"""Hostile dataset files, built in a folder: the crafted corpus of issue 11, one function each.

Shared by the attack suite (tests/hostile/test_files.py) and its benchmark (bench/hostile.py). Each
builder writes its file and returns its path; big ones are written streaming, so building costs little
memory, and the compressed ones are small on disk.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import openpyxl

MiB = 1024 * 1024

SHEET_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)
STRINGS_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
)


def _workbook_parts() -> dict[str, bytes]:
    """The parts of a real one-sheet workbook (from openpyxl), plus a shared-strings part of two strings."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["prompt", "response"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    with zipfile.ZipFile(buffer) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    # openpyxl writes strings inline; Excel writes them to a shared-strings part, which the bomb needs.
    override = (
        '<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
        'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" /></Types>'
    )
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(b"</Types>", override.encode())
    parts["xl/sharedStrings.xml"] = (
        STRINGS_HEAD + "<si><t>prompt</t></si><si><t>response</t></si></sst>"
    ).encode()
    return parts


def _xlsx(path: Path, replace: dict[str, Callable[[zipfile.ZipFile, str], None]]) -> Path:
    """A workbook with some parts written by the given writers (each streams into the archive)."""
    parts = _workbook_parts()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            if name in replace:
                replace[name](archive, name)
            else:
                archive.writestr(name, data)
    return path


def _repeat(archive: zipfile.ZipFile, name: str, head: str, unit: bytes, count: int, tail: str) -> None:
    # force_zip64: parts past 2 GiB need it, and the size must be known before writing otherwise.
    with archive.open(name, "w", force_zip64=True) as part:
        part.write(head.encode())
        block = unit * max(1, MiB // len(unit))
        per_block = MiB // len(unit) or 1
        full, rest = divmod(count, per_block)
        for _ in range(full):
            part.write(block)
        part.write(unit * rest)
        part.write(tail.encode())


def xlsx_shared_string_bomb(folder: Path, inflated: int = 768 * MiB) -> Path:
    """A shared string that unpacks to `inflated` bytes (768 MiB) from well under a megabyte."""

    def strings(archive: zipfile.ZipFile, name: str) -> None:
        head = STRINGS_HEAD + "<si><t>prompt</t></si><si><t>response</t></si><si><t>"
        _repeat(archive, name, head, b"A", inflated, "</t></si></sst>")

    def sheet(archive: zipfile.ZipFile, name: str) -> None:
        archive.writestr(
            name,
            SHEET_HEAD + "<sheetData>"
            '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
            '<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>2</v></c></row>'
            "</sheetData></worksheet>",
        )

    return _xlsx(folder / "bomb.xlsx", {"xl/sharedStrings.xml": strings, "xl/worksheets/sheet1.xml": sheet})


def xlsx_lying_sizes(folder: Path, inflated: int = 64 * MiB) -> Path:
    """The shared string bomb, but the ZIP's central directory claims its part unpacks to 1 KB."""
    path = xlsx_shared_string_bomb(folder, inflated)
    data = bytearray(path.read_bytes())
    name = b"xl/sharedStrings.xml"
    # A central directory entry: "PK\1\2", then the uncompressed size at +24 and the name at +46.
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24 : entry + 28] = (1024).to_bytes(4, "little")
    lying = folder / "lying.xlsx"
    lying.write_bytes(bytes(data))
    path.unlink()
    return lying


def xlsx_many_shared_strings(folder: Path, count: int = 12_000_000) -> Path:
    """12 million one-letter shared strings: 200 MB unpacked (under the part limit), 500 KB packed."""

    def strings(archive: zipfile.ZipFile, name: str) -> None:
        head = STRINGS_HEAD + "<si><t>prompt</t></si><si><t>response</t></si>"
        _repeat(archive, name, head, b"<si><t>a</t></si>", count, "</sst>")

    return _xlsx(folder / "many-strings.xlsx", {"xl/sharedStrings.xml": strings})


def xlsx_dimension_lie(folder: Path, rows: int = 20_000) -> Path:
    """Rows of two cells under a <dimension> claiming A1:XFD1048576 (16,384 columns, a million rows)."""

    def sheet(archive: zipfile.ZipFile, name: str) -> None:
        with archive.open(name, "w") as part:
            part.write(
                (
                    SHEET_HEAD + '<dimension ref="A1:XFD1048576"/><sheetData>'
                    '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
                ).encode()
            )
            for number in range(2, rows + 2):
                part.write(
                    f'<row r="{number}"><c r="A{number}" t="inlineStr"><is><t>q</t></is></c>'
                    f'<c r="B{number}" t="inlineStr"><is><t>a</t></is></c></row>'.encode()
                )
            part.write(b"</sheetData></worksheet>")

    return _xlsx(folder / "dimension.xlsx", {"xl/worksheets/sheet1.xml": sheet})


def xlsx_blank_rows(folder: Path, blank: int = 100_000_000) -> Path:
    """A header, one data row, then 100 million blank <row/> elements (600 MB unpacked, under 1 MB packed)."""

    def sheet(archive: zipfile.ZipFile, name: str) -> None:
        head = (
            SHEET_HEAD + "<sheetData>"
            '<row><c t="s"><v>0</v></c><c t="s"><v>1</v></c></row>'
            '<row><c t="inlineStr"><is><t>q</t></is></c><c t="inlineStr"><is><t>a</t></is></c></row>'
        )
        _repeat(archive, name, head, b"<row/>", blank, "</sheetData></worksheet>")

    return _xlsx(folder / "blank-rows.xlsx", {"xl/worksheets/sheet1.xml": sheet})


def xlsx_far_column(folder: Path) -> Path:
    """A data row with a value in column XFD (16,384): read without making 16,384 cells."""

    def sheet(archive: zipfile.ZipFile, name: str) -> None:
        archive.writestr(
            name,
            SHEET_HEAD + "<sheetData>"
            '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
            '<row r="2"><c r="A2" t="inlineStr"><is><t>q</t></is></c>'
            '<c r="B2" t="inlineStr"><is><t>a</t></is></c></row>'
            '<row r="3"><c r="A3" t="inlineStr"><is><t>q</t></is></c>'
            '<c r="XFD3" t="inlineStr"><is><t>far</t></is></c></row>'
            "</sheetData></worksheet>",
        )

    return _xlsx(folder / "far-column.xlsx", {"xl/worksheets/sheet1.xml": sheet})


def csv_wide(folder: Path, columns: int = 100_000) -> Path:
    """A header and a row of 100,000 columns (0.9 MB)."""
    path = folder / "wide.csv"
    header = ",".join(["prompt", "response", *(f"c{i}" for i in range(columns - 2))])
    row = ",".join(["q", "a", *("" for _ in range(columns - 2))])
    path.write_text(f"{header}\n{row}\n")
    return path


def deep(levels: int = 100_000) -> str:
    return "[" * levels + "]" * levels


def jsonl_deep(folder: Path, levels: int = 100_000) -> Path:
    """Line 2 of three has a value nested 100,000 deep."""
    path = folder / "deep.jsonl"
    good = json.dumps({"prompt": "q", "response": "a"})
    path.write_text(f'{good}\n{{"prompt": "q", "response": "a", "meta": {deep(levels)}}}\n{good}\n')
    return path


def json_deep(folder: Path, levels: int = 100_000) -> Path:
    """A JSON array whose second element (on line 3) is nested 100,000 deep."""
    path = folder / "deep.json"
    good = json.dumps({"prompt": "q", "response": "a"})
    path.write_text(f"[\n{good},\n{deep(levels)},\n{good}\n]\n")
    return path


def csv_deep_turns(folder: Path, levels: int = 100_000) -> Path:
    """A turns cell (JSON inside CSV) nested 100,000 deep, on line 3."""
    path = folder / "deep-turns.csv"
    good = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    path.write_text(
        "prompt,turns\n" + f'q,"{good.replace(chr(34), 2 * chr(34))}"\n' + f'q,"{deep(levels)}"\n'
    )
    return path


def jsonl_surrogate_value(folder: Path) -> Path:
    """A lone "\\ud800" escape in the response of line 2."""
    path = folder / "surrogate-value.jsonl"
    path.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "bad \\ud800 here"}\n')
    return path


def jsonl_surrogate_key(folder: Path) -> Path:
    """A lone "\\ud800" escape in a key of line 2."""
    path = folder / "surrogate-key.jsonl"
    path.write_text('{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "a", "k\\ud800": 1}\n')
    return path


def json_surrogate_key(folder: Path) -> Path:
    """A JSON array whose second element (line 3) has a lone surrogate in a nested key."""
    path = folder / "surrogate-key.json"
    path.write_text(
        '[\n{"prompt": "q", "response": "a"},\n{"prompt": "q", "response": "a", "m": {"\\udc00": 1}}\n]\n'
    )
    return path


def jsonl_duplicate_key(folder: Path) -> Path:
    """Line 2 holds the key "response" twice (json would keep the second silently)."""
    path = folder / "duplicate-key.jsonl"
    path.write_text(
        '{"prompt": "q", "response": "a"}\n{"prompt": "q", "response": "kept?", "response": "b"}\n'
    )
    return path


def csv_unclosed_quote(folder: Path, rows: int = 1000) -> Path:
    """A quote opened on line 3 and never closed, before many more rows."""
    path = folder / "unclosed-quote.csv"
    lines = ["prompt,response", "q1,a1", 'q2,"a2 starts a quote', *(f"q{i},a{i}" for i in range(3, rows))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _long_line(path: Path, head: str, size: int, unit: bytes) -> Path:
    with path.open("wb") as handle:
        handle.write(head.encode())
        block = unit * (MiB // len(unit))
        for _ in range(size // len(block)):
            handle.write(block)
    return path


def csv_long_line(folder: Path, size: int = 200 * MiB) -> Path:
    """A header, then one 200 MB line without a newline."""
    return _long_line(folder / "long-line.csv", "prompt,response\nq,", size, b"x")


def jsonl_long_line(folder: Path, size: int = 200 * MiB) -> Path:
    """A good line, then a 200 MB line without a newline (an unterminated string)."""
    return _long_line(
        folder / "long-line.jsonl", '{"prompt": "q", "response": "a"}\n{"response": "', size, b"x"
    )


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "xlsx_shared_string_bomb": xlsx_shared_string_bomb,
    "xlsx_lying_sizes": xlsx_lying_sizes,
    "xlsx_dimension_lie": xlsx_dimension_lie,
    "xlsx_many_shared_strings": xlsx_many_shared_strings,
    "xlsx_blank_rows": xlsx_blank_rows,
    "xlsx_far_column": xlsx_far_column,
    "csv_wide": csv_wide,
    "jsonl_deep": jsonl_deep,
    "json_deep": json_deep,
    "csv_deep_turns": csv_deep_turns,
    "jsonl_surrogate_value": jsonl_surrogate_value,
    "jsonl_surrogate_key": jsonl_surrogate_key,
    "json_surrogate_key": json_surrogate_key,
    "jsonl_duplicate_key": jsonl_duplicate_key,
    "csv_unclosed_quote": csv_unclosed_quote,
    "csv_long_line": csv_long_line,
    "jsonl_long_line": jsonl_long_line,
}
