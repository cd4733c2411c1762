"""Parsing and validating uploaded dataset files. No database writes: evals.services.dataset_rows writes.

files.py decides what a file is (format, encoding, delimiter), readers.py streams its rows (xlsx.py
reads workbooks for it), mapping.py maps columns to fields, rows.py checks every row and builds the examples.
"""

from __future__ import annotations

from evals.ingest.files import (
    DELIMITER_LABELS,
    ENCODING_LABELS,
    FORMAT_LABELS,
    FileFacts,
    IngestError,
    human_size,
    inspect_file,
)
from evals.ingest.json_rows import ROW
from evals.ingest.mapping import (
    CHOICES,
    FIELD_LABELS,
    FIELDS,
    IGNORE,
    METADATA,
    apply_overrides,
    detect_mapping,
    mapping_problems,
)
from evals.ingest.readers import ReadSpec, Table
from evals.ingest.rows import (
    MAX_LONG_TEXT,
    InvalidRow,
    ParsedRow,
    Problem,
    Report,
    RowChecker,
    checked_rows,
    invalid_rows_csv,
    preview,
    validate,
)
from evals.ingest.xlsx import xlsx_sheet_names

__all__ = [
    "CHOICES",
    "DELIMITER_LABELS",
    "ENCODING_LABELS",
    "FIELDS",
    "FIELD_LABELS",
    "FORMAT_LABELS",
    "IGNORE",
    "MAX_LONG_TEXT",
    "METADATA",
    "ROW",
    "FileFacts",
    "IngestError",
    "InvalidRow",
    "ParsedRow",
    "Problem",
    "ReadSpec",
    "Report",
    "RowChecker",
    "Table",
    "apply_overrides",
    "checked_rows",
    "detect_mapping",
    "human_size",
    "inspect_file",
    "invalid_rows_csv",
    "mapping_problems",
    "preview",
    "validate",
    "xlsx_sheet_names",
]
