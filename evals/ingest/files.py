"""What a received file is: its size, SHA-256, format, text encoding and CSV delimiter.

Everything here streams: a file is read in 1 MB chunks, never whole.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 20
HEAD_BYTES = 64 * 1024

FORMAT_LABELS = {
    "csv": "CSV",
    "jsonl": "JSON Lines",
    "json": "JSON array",
    "xlsx": "Excel workbook",
}

ENCODING_LABELS = {
    "utf-8": "UTF-8",
    "utf-8-sig": "UTF-8 with BOM",
    "utf-16": "UTF-16 (BOM)",
    "utf-16-le": "UTF-16 LE",
    "utf-16-be": "UTF-16 BE",
    "utf-32": "UTF-32 (BOM)",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1 (ISO-8859-1)",
}

DELIMITER_LABELS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}

# Bytes that Windows-1252 leaves undefined; a file that has them is read as Latin-1 instead.
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"PAR1", "a Parquet file"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "a program"),
    (b"MZ", "a Windows program"),
    (b"BZh", "a bzip2 archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
)

ACCEPTED = "Docket reads CSV, TSV, JSON Lines, a JSON array of objects and Excel .xlsx files."


class IngestError(Exception):
    """The file as a whole can't be read. The message is one sentence for the person who sent it."""


@dataclass(frozen=True)
class FileFacts:
    size: int
    sha256: str
    file_format: str
    encoding: str = ""
    delimiter: str = ""
    # Things worth telling the user about how the file was read (a fallback encoding, say).
    notes: tuple[str, ...] = ()


def printable(text: str) -> str:
    """Text safe to show and store: a lone surrogate as its \\u escape (UTF-8 can't hold it)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def long_line_reason(chars: int) -> str:
    return f"is longer than {chars:,} characters, over the line limit (DOCKET_MAX_LINE_CHARS)"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}".replace(".0 ", " ")
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


def inspect_file(path: Path, *, name: str = "", max_bytes: int | None = None) -> FileFacts:
    """Read the whole file once (hash, encoding check) and decide how to parse it.

    Raises IngestError for a file that can't be a dataset: empty, over the size cap, binary, an unknown
    or unsupported format.
    """
    size = path.stat().st_size
    if size == 0:
        raise IngestError("The file is empty.")
    if max_bytes is not None and size > max_bytes:
        raise IngestError(f"The file is {human_size(size)}, over the {human_size(max_bytes)} upload limit.")
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    suffix = Path(name or path.name).suffix.lower()

    if head.startswith(b"PK\x03\x04"):
        return FileFacts(size=size, sha256=_sha256(path), file_format=_zip_format(path))
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise IngestError(
            "This is an old Excel .xls file (or another Office 97-2003 file); save it as .xlsx or CSV."
        )

    encoding = _bom_encoding(head) or _utf16_without_bom(head)
    if not encoding:
        for signature, what in _SIGNATURES:
            if head.startswith(signature):
                raise IngestError(f"This file is {what}, not a dataset. {ACCEPTED}")

    notes: list[str] = []
    if encoding:
        digest = _sha256(path)
    else:
        scan = _scan_utf8(path)
        digest = scan.sha256
        if scan.first_bad_line is None:
            encoding = "utf-8"
        elif scan.saw_utf8_text:
            # Mostly UTF-8 with a few broken bytes: read as UTF-8 so the good text stays right, and let
            # validation name the rows that hold the broken bytes.
            encoding = "utf-8"
            notes.append(
                f"Some bytes are not valid UTF-8 (first on line {scan.first_bad_line:,}); "
                "the rows that hold them are reported as invalid."
            )
        else:
            encoding = "latin-1" if scan.has_cp1252_undefined else "cp1252"
            notes.append(
                f"Not UTF-8 (line {scan.first_bad_line:,} has a byte UTF-8 can't hold), "
                f"so read as {ENCODING_LABELS[encoding]}."
            )

    text = _decode_head(head, encoding)
    # A stray NUL is a row problem (reported by validation); many of them mean a binary file.
    if _control_ratio(text) > 0.01:
        raise IngestError(f"This file looks binary, not text. {ACCEPTED}")
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise IngestError("The file holds no data, only blank lines.")

    if stripped.startswith("["):
        file_format, delimiter = "json", ""
    elif stripped.startswith("{"):
        file_format, delimiter = "jsonl", ""
    else:
        if suffix in {".json", ".jsonl", ".ndjson"}:
            raise IngestError(
                "This file is named like JSON but does not start with [ or {; "
                "Docket reads a JSON array of objects or JSON Lines (one object per line)."
            )
        file_format = "csv"
        delimiter = sniff_delimiter(stripped, prefer="\t" if suffix in {".tsv", ".tab"} else "")
    return FileFacts(
        size=size,
        sha256=digest,
        file_format=file_format,
        encoding=encoding,
        delimiter=delimiter,
        notes=tuple(notes),
    )


def _zip_format(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        raise IngestError(
            f"The file starts like a ZIP archive or .xlsx workbook but is damaged ({error})."
        ) from error
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "content.xml" in names and "mimetype" in names:
        raise IngestError("OpenDocument spreadsheets (.ods) can't be read; save it as .xlsx or CSV.")
    if "word/document.xml" in names:
        raise IngestError(f"This is a Word document, not a dataset. {ACCEPTED}")
    raise IngestError(f"This is a ZIP archive, not a dataset. {ACCEPTED}")


def _bom_encoding(head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return ""


def _utf16_without_bom(head: bytes) -> str:
    """UTF-16 text without a BOM shows as NULs in every other byte (for Latin-script text)."""
    sample = head[:4096]
    if len(sample) < 8:
        return ""
    even, odd = sample[0::2], sample[1::2]
    even_nuls, odd_nuls = even.count(0) / len(even), odd.count(0) / len(odd)
    if odd_nuls > 0.4 and even_nuls < 0.05:
        return "utf-16-le"
    if even_nuls > 0.4 and odd_nuls < 0.05:
        return "utf-16-be"
    return ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Utf8Scan:
    sha256: str
    first_bad_line: int | None
    saw_utf8_text: bool
    has_cp1252_undefined: bool


def _scan_utf8(path: Path) -> _Utf8Scan:
    """Hash the file and check that all of it is UTF-8, in one pass.

    Deciding from the whole file rather than a sample means a stray Windows-1252 byte at line 90,000 is
    found before any row is shown, instead of failing a parse half-way.
    """
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    first_bad_line: int | None = None
    saw_utf8_text = False
    has_undefined = False
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            if first_bad_line is None:
                try:
                    decoder.decode(chunk)
                    saw_utf8_text = saw_utf8_text or not chunk.isascii()
                except UnicodeDecodeError as error:
                    first_bad_line = newlines + chunk.count(b"\n", 0, error.start) + 1
                    saw_utf8_text = saw_utf8_text or not chunk[: error.start].isascii()
            if first_bad_line is not None and not has_undefined:
                has_undefined = any(byte in chunk for byte in _CP1252_UNDEFINED)
            newlines += chunk.count(b"\n")
        if first_bad_line is None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                first_bad_line = newlines + 1
    return _Utf8Scan(digest.hexdigest(), first_bad_line, saw_utf8_text, has_undefined)


def _decode_head(head: bytes, encoding: str) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return decoder.decode(head, final=False)


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    controls = sum(1 for char in text[:8192] if char < " " and char not in "\t\r\n\f\v")
    return controls / min(len(text), 8192)


def sniff_delimiter(sample: str, *, prefer: str = "") -> str:
    """Pick the delimiter among , ; tab | that splits the first records into the same number of columns.

    csv.Sniffer guesses from character frequencies and is easily fooled by prose in cells; parsing the
    sample with each candidate and comparing row widths copes with quoted, multi-line cells.
    """
    first_line = sample.split("\n", 1)[0].strip()
    if first_line.lower().startswith("sep=") and len(first_line) == 5:
        return first_line[4]
    best, best_score = prefer or ",", (0.0, 0, 0.0)
    for delimiter in (",", ";", "\t", "|"):
        widths: list[int] = []
        try:
            for row in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter):
                if any(row):
                    widths.append(len(row))
                if len(widths) >= 50:
                    break
        except csv.Error:
            continue
        if len(widths) > 2:
            widths.pop()  # the sample may cut the last record short
        if not widths or widths[0] < 2:
            continue
        agreeing = sum(1 for width in widths if width == widths[0]) / len(widths)
        score = (agreeing, widths[0], 1.0 if delimiter == prefer else 0.0)
        if score > best_score:
            best, best_score = delimiter, score
    return best
