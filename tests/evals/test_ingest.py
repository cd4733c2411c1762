"""Parsing and validating dataset files: formats, encodings, dialects, mapping guesses, row checks."""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from evals import ingest
from evals.ingest import IngestError, ReadSpec
from evals.ingest.json_rows import iter_json_array


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(
    path: Path, mapping: dict[str, str] | None = None, **spec: Any
) -> tuple[ingest.FileFacts, ingest.Report, list[Any]]:
    """Inspect, map (guessed unless given) and validate a file; also return every parsed row."""
    facts = ingest.inspect_file(path, name=path.name)
    read_spec = ReadSpec(str(path), facts.file_format, facts.encoding, facts.delimiter or ",", **spec)
    columns, _, _ = ingest.preview(read_spec)
    mapping = mapping or ingest.detect_mapping(columns)
    report = ingest.validate(read_spec, mapping)
    with ingest.checked_rows(read_spec, mapping) as (_table, _checker, outcomes):
        rows = list(outcomes)
    return facts, report, rows


def problems(report: ingest.Report) -> list[tuple[int, str, str]]:
    return [(p.line, p.column, p.reason) for p in report.problems]


# --- Formats ----------------------------------------------------------------------------------------


def test_csv_with_comma_is_read_with_header_and_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path, "qa.csv", "question,answer,topic\nWhat is 2+2?,4,math\nCapital of France?,Paris,geo\n"
    )
    facts, report, rows = read(path)
    assert (facts.file_format, facts.encoding, facts.delimiter) == ("csv", "utf-8", ",")
    assert (report.rows, report.valid, report.invalid) == (2, 2, 0)
    assert [(r.line, r.request, r.response, r.metadata) for r in rows] == [
        (2, "What is 2+2?", "4", {"topic": "math"}),
        (3, "Capital of France?", "Paris", {"topic": "geo"}),
    ]


@pytest.mark.parametrize(
    ("delimiter", "name"), [(";", "semi.csv"), ("\t", "tabs.tsv"), ("|", "pipes.txt"), (",", "c.csv")]
)
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str, name: str) -> None:
    text = delimiter.join(["prompt", "response", "note"]) + "\n"
    text += delimiter.join(['"Hello, world; | ok"', "fine", "n1"]) + "\n"
    text += delimiter.join(["second", "also fine", "n2"]) + "\n"
    facts, report, rows = read(write(tmp_path, name, text))
    assert facts.delimiter == delimiter
    assert report.valid == 2
    assert rows[0].request == "Hello, world; | ok"


def test_excel_sep_hint_line_sets_the_delimiter_and_is_skipped(tmp_path: Path) -> None:
    facts, report, rows = read(write(tmp_path, "x.csv", "sep=;\nquestion;answer\nq;a\n"))
    assert facts.delimiter == ";"
    assert report.valid == 1 and rows[0].line == 3


def test_jsonl_reads_one_object_per_line_and_counts_blank_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"query": "q1", "completion": "a1", "n": 1}),
        "",
        "   ",
        json.dumps({"query": "q2", "completion": "a2"}),
    ]
    facts, report, rows = read(write(tmp_path, "d.jsonl", "\n".join(lines) + "\n"))
    assert facts.file_format == "jsonl"
    assert (report.rows, report.valid, report.blank) == (2, 2, 2)
    assert [(r.line, r.request, r.metadata) for r in rows] == [(1, "q1", {"n": 1}), (4, "q2", {})]


def test_jsonl_bad_lines_are_row_errors_not_file_errors(tmp_path: Path) -> None:
    text = '{"response": "ok"}\n{"response": \n[1, 2]\n{"response": "fine"}\n'
    _, report, _ = read(write(tmp_path, "d.jsonl", text))
    assert (report.valid, report.invalid) == (2, 2)
    assert problems(report)[0][:2] == (2, "(row)") and "not valid JSON" in problems(report)[0][2]
    assert problems(report)[1] == (3, "(row)", "is a JSON array, not a JSON object")


def test_jsonl_keys_seen_only_in_later_rows_are_kept_as_metadata(tmp_path: Path) -> None:
    first = [json.dumps({"response": f"r{i}"}) for i in range(1500)]
    text = "\n".join([*first, json.dumps({"response": "late", "late_key": 7})])
    _, report, rows = read(write(tmp_path, "d.jsonl", text))
    assert rows[-1].metadata == {"late_key": 7}
    assert report.extra_columns == ["late_key"]


def test_json_array_of_objects_is_streamed_with_line_numbers(tmp_path: Path) -> None:
    data = [{"input": "q1", "output": "a1"}, {"input": "q2", "output": "a2\nmore", "contexts": ["c1", "c2"]}]
    facts, report, rows = read(write(tmp_path, "d.json", json.dumps(data, indent=2)))
    assert facts.file_format == "json"
    assert report.valid == 2
    assert [r.line for r in rows] == [2, 6]
    assert rows[1].contexts == ["c1", "c2"]


def test_json_array_parser_handles_elements_across_read_chunks() -> None:
    big = "x" * (3 * 1024 * 1024)
    text = json.dumps([{"a": 1}, {"b": big, "n": 12345}, 7, {"c": '\\"quoted"'}], indent=1)
    values = [(line, value) for line, value, _raw in iter_json_array(io.StringIO(text))]
    assert [v for _, v in values] == [{"a": 1}, {"b": big, "n": 12345}, 7, {"c": '\\"quoted"'}]
    assert [line for line, _ in values] == [2, 5, 9, 10]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"a": 1},\n {"a": 2} {"a": 3}]', "line 2: expected , or ] after an element"),
        ('[{"a": 1},\n{"a": }]', "line 2: Expecting value"),
        ('[{"a": 1}', "ends before the array is closed"),
        ('[{"a": 1}] trailing', "more text after the closing ]"),
    ],
)
def test_json_array_syntax_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(IngestError, match=message):
        list(iter_json_array(io.StringIO(text)))


def test_pretty_printed_single_object_gets_a_clear_sentence(tmp_path: Path) -> None:
    path = write(tmp_path, "one.json", '{\n  "data": [1, 2]\n}\n')
    with pytest.raises(IngestError, match="one object spread over many lines"):
        read(path)


def xlsx(tmp_path: Path, sheets: dict[str, list[list[Any]]], name: str = "book.xlsx") -> Path:
    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    path = tmp_path / name
    workbook.save(path)
    return path


def test_xlsx_first_sheet_is_read_with_row_numbers_and_typed_cells(tmp_path: Path) -> None:
    path = xlsx(
        tmp_path,
        {
            "Answers": [["question", "answer", "score", None], ["q1", "a1", 0.5], [], ["q2", 42, 3, None]],
            "Other": [["zzz"]],
        },
    )
    facts, report, rows = read(path)
    assert facts.file_format == "xlsx"
    assert (report.rows, report.valid, report.blank) == (2, 2, 1)
    assert [(r.line, r.request, r.response, r.metadata) for r in rows] == [
        (2, "q1", "a1", {"score": 0.5}),
        (4, "q2", "42", {"score": 3}),
    ]


def test_xlsx_chosen_sheet_is_read(tmp_path: Path) -> None:
    path = xlsx(tmp_path, {"Notes": [["just notes"]], "Data": [["prompt", "completion"], ["p", "c"]]})
    assert ingest.xlsx_sheet_names(str(path)) == ["Notes", "Data"]
    _, report, rows = read(path, sheet="Data")
    assert report.valid == 1 and rows[0].response == "c"


def test_xlsx_value_outside_the_header_is_a_row_error(tmp_path: Path) -> None:
    path = xlsx(tmp_path, {"S": [["prompt", "answer"], ["p", "a", "stray"]]})
    _, report, _ = read(path)
    assert problems(report) == [(2, "(row)", "has a value in column 3, which has no header")]


# --- Encodings --------------------------------------------------------------------------------------


def test_utf8_with_bom_is_detected_and_the_bom_is_not_in_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", codecs.BOM_UTF8 + "question,answer\nqué,sí\n".encode())
    facts, _, rows = read(path)
    assert facts.encoding == "utf-8-sig"
    assert rows[0].request == "qué"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom_excel_unicode_text_is_read(tmp_path: Path, codec: str) -> None:
    bom = codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE
    path = write(tmp_path, "unicode.txt", bom + "question\tanswer\r\nnaïve ☃\tyes\r\n".encode(codec))
    facts, report, rows = read(path)
    assert (facts.encoding, facts.delimiter) == ("utf-16", "\t")
    assert report.valid == 1 and rows[0].request == "naïve ☃"


def test_utf16_without_bom_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "question,answer\nhello,world\n".encode("utf-16-le"))
    facts, _, rows = read(path)
    assert facts.encoding == "utf-16-le" and rows[0].response == "world"


def test_windows_1252_file_is_detected_and_shown_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, "legacy.csv", "question,answer\ncafé “quoted”,€5\n".encode("cp1252"))
    facts, _, rows = read(path)
    assert facts.encoding == "cp1252"
    assert "read as Windows-1252" in facts.notes[0]
    assert (rows[0].request, rows[0].response) == ("café “quoted”", "€5")


def test_latin1_file_with_bytes_undefined_in_cp1252_is_read_as_latin1(tmp_path: Path) -> None:
    path = write(tmp_path, "latin.csv", b"question,answer\nna\xefve \x81,ok\n")
    facts, _, rows = read(path)
    assert facts.encoding == "latin-1"
    assert rows[0].request == "naïve \x81"


def test_late_non_utf8_byte_in_ascii_file_falls_back_without_crashing(tmp_path: Path) -> None:
    body = "".join(f"q{i},a{i}\n" for i in range(200_000)).encode()
    path = write(tmp_path, "late.csv", b"question,answer\n" + body + b"caf\xe9,late\n")
    facts, report, rows = read(path)
    assert facts.encoding == "cp1252"
    assert "line 200,002" in facts.notes[0]
    assert report.valid == 200_001 and rows[-1].request == "café"


def test_invalid_bytes_in_a_utf8_file_are_reported_per_row(tmp_path: Path) -> None:
    path = write(
        tmp_path, "mixed.csv", "question,answer\nnaïve,ok\n".encode() + b"bad \xff byte,ok\nfine,ok\n"
    )
    facts, report, _ = read(path)
    assert facts.encoding == "utf-8"
    assert "not valid UTF-8" in facts.notes[0]
    assert (report.valid, report.invalid) == (2, 1)
    assert problems(report) == [
        (3, "question", "holds byte 0xFF, which is not valid UTF-8; save the file as UTF-8")
    ]


def test_forcing_the_wrong_encoding_reports_rows_instead_of_crashing(tmp_path: Path) -> None:
    path = write(tmp_path, "legacy.csv", "question,answer\nplain,ok\ncafé,ok\n".encode("cp1252"))
    spec = ReadSpec(str(path), "csv", "utf-8", ",")
    report = ingest.validate(spec, {"question": "request", "answer": "response"})
    assert (report.valid, report.invalid) == (1, 1)
    assert problems(report)[0][:2] == (3, "question")


# --- Dialects ---------------------------------------------------------------------------------------


def test_quoted_multiline_cells_embedded_quotes_and_crlf(tmp_path: Path) -> None:
    text = 'question,answer\r\n"line one\r\nline two","He said ""hi"", then left"\r\n"a,b",plain\r\n'
    _, report, rows = read(write(tmp_path, "d.csv", text))
    assert report.valid == 2
    assert rows[0].request == "line one\r\nline two"
    assert rows[0].response == 'He said "hi", then left'
    assert (rows[1].line, rows[1].request) == (4, "a,b")


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    _, report, rows = read(write(tmp_path, "d.csv", "\nquestion,answer\n\nq,a\n,\n\r\nq2,a2\n"))
    assert (report.rows, report.valid, report.blank) == (2, 2, 4)
    assert [r.line for r in rows] == [4, 7]


def test_cells_of_more_than_10_mb_are_read(tmp_path: Path) -> None:
    huge = ("word " * 2_200_000).strip()  # 11 MB
    _, report, rows = read(write(tmp_path, "big.csv", f'question,answer\nq,"{huge}"\nq2,short\n'))
    assert report.valid == 2
    assert len(rows[0].response) == len(huge)


def test_header_names_are_made_unique_and_blank_ones_named(tmp_path: Path) -> None:
    facts = ingest.inspect_file(write(tmp_path, "d.csv", "answer,,answer\nx,y,z\n"))
    columns, _, _ = ingest.preview(ReadSpec(str(tmp_path / "d.csv"), "csv", facts.encoding, ","))
    assert columns == ["answer", "column 2", "answer (2)"]


# --- Files that can't be read -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.csv", b"", "The file is empty."),
        ("blank.csv", b"\n\n  \r\n", "only blank lines"),
        (
            "image.csv",
            b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10,
            "This file is a PNG image, not a dataset.",
        ),
        ("data.bin", bytes(range(256)) * 40, "looks binary"),
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "old Excel .xls file"),
        ("notes.json", b"hello there", "named like JSON"),
    ],
)
def test_unreadable_files_get_one_clear_sentence(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    with pytest.raises(IngestError, match=message.replace(".", r"\.")):
        ingest.inspect_file(write(tmp_path, name, data), name=name)


def test_zip_that_is_not_a_workbook_is_refused(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(IngestError, match="ZIP archive, not a dataset"):
        ingest.inspect_file(path)


def test_file_over_the_size_cap_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "question,answer\n" + "q,a\n" * 1000)
    with pytest.raises(IngestError, match="over the 1 KB upload limit"):
        ingest.inspect_file(path, max_bytes=1024)


def test_row_cap_stops_validation_with_a_clear_message(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "question,answer\n" + "q,a\n" * 11)
    with pytest.raises(IngestError, match="more than 10 rows"):
        ingest.validate(ReadSpec(str(path), "csv", "utf-8", ","), {"answer": "response"}, max_rows=10)


# --- Mapping ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["prompt", "completion"], {"prompt": "request", "completion": "response"}),
        (["Question", "Answer"], {"Question": "request", "Answer": "response"}),
        (
            ["input", "output", "label"],
            {"input": "request", "output": "response", "label": "expected_output"},
        ),
        (
            ["query", "response", "Ground Truth"],
            {"query": "request", "response": "response", "Ground Truth": "expected_output"},
        ),
        (
            ["question", "answer", "reference", "target"],
            {
                "question": "request",
                "answer": "response",
                "reference": "expected_output",
                "target": "metadata",
            },
        ),
        (["messages", "system"], {"messages": "turns", "system": "system_prompt"}),
        (["conversation"], {"conversation": "turns"}),
        (["response", "documents"], {"response": "response", "documents": "contexts"}),
        (["answer", "passages"], {"answer": "response", "passages": "contexts"}),
        (
            ["answer", "context_1", "context 2", "Context3"],
            {"answer": "response", "context_1": "contexts", "context 2": "contexts", "Context3": "contexts"},
        ),
        (
            ["answer", "expected", "id", "model"],
            {"answer": "response", "expected": "expected_output", "id": "key", "model": "metadata"},
        ),
        (["Case ID", "answer", "uid"], {"Case ID": "key", "answer": "response", "uid": "metadata"}),
        (
            ["prompt", "Example-Id", "completion"],
            {"prompt": "request", "Example-Id": "key", "completion": "response"},
        ),
        (["test_id", "row_id", "answer"], {"test_id": "metadata", "row_id": "key", "answer": "response"}),
    ],
)
def test_mapping_is_detected_from_common_column_names(columns: list[str], expected: dict[str, str]) -> None:
    assert ingest.detect_mapping(columns) == expected


def test_key_is_offered_as_a_single_column_field_with_its_label() -> None:
    assert ("key", "key (pairs rows across uploads)") in ingest.FIELD_LABELS.items()
    assert ingest.mapping_problems(
        ["id", "code", "answer"], {"id": "key", "code": "key", "answer": "response"}
    ) == ["Only one column can be key (pairs rows across uploads); 'id', 'code' are all mapped to it."]


def test_mapping_problems_name_what_to_fix() -> None:
    assert ingest.mapping_problems(["a", "b"], {"a": "request", "b": "metadata"}) == [
        "Map a column to response (or to turns): every example needs one of them."
    ]
    problems = ingest.mapping_problems(["a", "b"], {"a": "response", "b": "response"})
    assert problems == ["Only one column can be response; 'a', 'b' are all mapped to it."]
    assert ingest.mapping_problems(["a", "b"], {"a": "response", "b": "contexts"}) == []


def test_mapping_overrides_move_a_field_to_another_column() -> None:
    detected = ingest.detect_mapping(["question", "answer", "gold", "ctx_a", "context"])
    mapping = ingest.apply_overrides(
        ["question", "answer", "gold", "ctx_a", "context"],
        detected,
        [("response", "gold"), ("contexts", "ctx_a"), ("ignore", "question")],
    )
    assert mapping == {
        "question": "ignore",
        "answer": "metadata",
        "gold": "response",
        "ctx_a": "contexts",
        "context": "metadata",
    }
    with pytest.raises(ValueError, match="no column named 'nope'"):
        ingest.apply_overrides(["a"], {"a": "metadata"}, [("response", "nope")])
    with pytest.raises(ValueError, match="Unknown field 'answer'"):
        ingest.apply_overrides(["a"], {"a": "metadata"}, [("answer", "a")])


# --- Row checks -------------------------------------------------------------------------------------

MAPPING = {
    "request": "request",
    "response": "response",
    "contexts": "contexts",
    "expected": "expected_output",
    "turns": "turns",
    "system": "system_prompt",
}


def check_rows(
    tmp_path: Path, rows: list[list[str]], mapping: dict[str, str] = MAPPING
) -> tuple[ingest.Report, list[Any]]:
    buffer = io.StringIO()
    import csv

    writer = csv.writer(buffer)
    writer.writerow(list(mapping))
    writer.writerows(rows)
    path = write(tmp_path, "rows.csv", buffer.getvalue())
    _, report, parsed = read(path, mapping)
    return report, parsed


def test_a_row_needs_a_response_or_turns(tmp_path: Path) -> None:
    turns = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    report, rows = check_rows(
        tmp_path, [["q", "", "", "", "", ""], ["q", "", "", "", turns, ""], ["q", "   ", "", "", "", ""]]
    )
    assert problems(report) == [
        (2, "response", "is empty; each row needs a response or turns"),
        (4, "response", "is empty; each row needs a response or turns"),
    ]
    assert rows[1].turns == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def test_contexts_from_json_array_plain_string_and_merged_columns(tmp_path: Path) -> None:
    mapping = {"response": "response", "context_1": "contexts", "context_2": "contexts"}
    report, rows = check_rows(
        tmp_path,
        [
            ["r", '["a", "b"]', "c"],
            ["r", "just one [1] text", ""],
            ["r", "", ""],
            ["r", '  [ "x" ]  ', '["y"]'],
        ],
        mapping,
    )
    assert report.invalid == 0
    assert [r.contexts for r in rows] == [["a", "b", "c"], ["just one [1] text"], [], ["x", "y"]]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ('["a", ]', "looks like a JSON array but does not parse (Expecting value at character 7)"),
        ('["a", 3]', "item 2 is a number, not text"),
        ('["a", ""]', "item 2 is empty; the judge API takes only non-empty contexts"),
        ('[{"text": "a"}]', "item 1 is an object, not text"),
    ],
)
def test_bad_contexts_are_reported_with_the_reason(tmp_path: Path, cell: str, reason: str) -> None:
    report, _ = check_rows(tmp_path, [["q", "r", cell, "", "", ""]])
    assert problems(report) == [(2, "contexts", reason)]


@pytest.mark.parametrize(
    ("cell", "reason"),
    [
        ("[{", "is not valid JSON (Expecting property name enclosed in double quotes at character 3)"),
        ('{"role": "user"}', "must be a JSON array of {role, content} objects"),
        (
            '[{"role": "system", "content": "x"}]',
            "turn 1 has role 'system'; roles are user, assistant, tool; put a system message in the system_prompt column instead",
        ),
        (
            '[{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]',
            "turn 2 has role 'robot'; roles are user, assistant, tool",
        ),
        ('[{"role": "user"}]', "turn 1 (user) has no content"),
        ('[{"role": "user", "content": 5}]', "turn 1 content is a number, not text"),
        ('["hi"]', "turn 1 is a string, not a {role, content} object"),
    ],
)
def test_bad_turns_are_reported_with_the_reason(tmp_path: Path, cell: str, reason: str) -> None:
    report, _ = check_rows(tmp_path, [["q", "r", "", "", cell, ""]])
    assert problems(report) == [(2, "turns", reason)]


@pytest.mark.parametrize(
    ("turn", "reason"),
    [
        (
            {"role": "assistant", "content": "x", "contexts": "a string"},
            "turn 2 contexts is a string, not an array of text",
        ),
        (
            {"role": "assistant", "content": "x", "contexts": ["a", 3]},
            "turn 2 contexts item 2 is a number, not text",
        ),
        (
            {"role": "assistant", "content": "x", "contexts": [""]},
            "turn 2 contexts item 1 is empty; the judge API takes only non-empty contexts",
        ),
        (
            {"role": "assistant", "tool_calls": "bad"},
            "turn 2 tool_calls is a string, not an array of objects",
        ),
        ({"role": "assistant", "tool_calls": ["bad"]}, "turn 2 tool_calls item 1 is a string, not an object"),
        (
            {"role": "tool", "content": "sunny", "tool_call_id": 7},
            "turn 2 tool_call_id is a number, not text",
        ),
    ],
)
def test_a_turn_the_sdk_would_reject_is_a_problem_of_its_row_naming_line_column_and_turn(
    tmp_path: Path, turn: dict[str, Any], reason: str
) -> None:
    # The judge rejects such a turn with a 400 that fails its whole remote batch: catch it at import.
    good = json.dumps([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    bad = json.dumps([{"role": "user", "content": "weather?"}, turn])
    report, rows = check_rows(tmp_path, [["q", "r", "", "", good, ""], ["q", "r", "", "", bad, ""]])
    assert problems(report) == [(3, "turns", reason)]
    assert report.valid == 1 and rows[0].turns is not None


def test_a_messages_column_of_a_jsonl_file_maps_to_turns_and_is_checked_per_turn(tmp_path: Path) -> None:
    lines = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "contexts": "a string"}]},
    ]
    path = write(tmp_path, "chats.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    _, report, rows = read(path)
    assert problems(report) == [(2, "messages", "turn 2 contexts is a string, not an array of text")]
    assert rows[0].turns == lines[0]["messages"]


def test_tool_call_turns_pass_and_keys_the_sdk_does_not_know_are_dropped(tmp_path: Path) -> None:
    turns = [
        {"role": "user", "content": "weather?", "name": "ada"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ],
            "contexts": ["It is sunny in Paris."],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "1"},
        {
            "role": "assistant",
            "content": "Sunny.",
            "contexts": None,
            "tool_calls": None,
            "tool_call_id": None,
        },
    ]
    report, rows = check_rows(tmp_path, [["", "", "", "", json.dumps(turns), ""]])
    assert report.invalid == 0
    assert rows[0].turns[0] == {"role": "user", "content": "weather?"}
    assert rows[0].turns[1:] == turns[1:]


def test_assistant_turn_without_content_is_allowed_for_tool_calls(tmp_path: Path) -> None:
    turns = json.dumps(
        [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
            {"role": "tool", "content": "sunny", "tool_call_id": "1"},
        ]
    )
    report, rows = check_rows(tmp_path, [["", "", "", "", turns, ""]])
    assert report.invalid == 0 and len(rows[0].turns) == 3


def test_api_length_limits_are_checked(tmp_path: Path) -> None:
    long_text = "x" * (ingest.MAX_LONG_TEXT + 1)
    report, _ = check_rows(
        tmp_path,
        [["q", "r", "", long_text, "", long_text], ["q", "r", "", "x" * ingest.MAX_LONG_TEXT, "", ""]],
    )
    assert problems(report) == [
        (2, "expected", "is 3,500,001 characters long; the judge API takes at most 3,500,000"),
        (2, "system", "is 3,500,001 characters long; the judge API takes at most 3,500,000"),
    ]
    assert report.valid == 1


def test_row_width_must_equal_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "question,answer\nq,a,extra\nonly\nq,a\n")
    _, report, _ = read(path)
    assert problems(report) == [
        (2, "(row)", "has 3 cells; the header has 2 columns"),
        (3, "(row)", "has 1 cells; the header has 2 columns"),
    ]
    assert report.valid == 1


def test_nul_characters_are_refused(tmp_path: Path) -> None:
    report, _ = check_rows(tmp_path, [["q\x00", "r", "", "", "", ""], *[["q", "r", "", "", "", ""]] * 100])
    assert problems(report) == [(2, "request", "holds a NUL character (\\0), which databases can't store")]


def test_json_values_that_are_not_text_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.jsonl",
        json.dumps({"question": {"a": 1}, "answer": "ok"})
        + "\n"
        + json.dumps({"question": 3, "answer": True})
        + "\n",
    )
    _, report, rows = read(path)
    assert problems(report) == [(1, "question", "is a JSON object, not text")]
    assert (rows[1].request, rows[1].response) == ("3", "true")


def test_a_key_column_is_read_as_text_and_kept_out_of_metadata(tmp_path: Path) -> None:
    csv_path = write(tmp_path, "d.csv", "case_id,question,answer,topic\nA-17,q1,a1,x\n  ,q2,a2,y\n")
    _, report, rows = read(csv_path)
    assert report.valid == 2
    assert [(row.key, row.metadata) for row in rows] == [("A-17", {"topic": "x"}), ("  ", {"topic": "y"})]
    # A JSON key may be a number (17, or 17.0 from a spreadsheet's export): the same key as "17" in a CSV.
    lines = [
        {"id": 17, "answer": "a"},
        {"id": 17.0, "answer": "b"},
        {"id": None, "answer": "c"},
        {"answer": "d"},
    ]
    jsonl_path = write(tmp_path, "d.jsonl", "\n".join(json.dumps(line) for line in lines))
    _, report, rows = read(jsonl_path)
    assert report.valid == 4
    assert [row.key for row in rows] == ["17", "17", "", ""]
    assert all("id" not in row.metadata for row in rows)


def test_a_key_that_is_an_object_is_a_row_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", json.dumps({"id": {"a": 1}, "answer": "ok"}))
    _, report, _ = read(path)
    assert problems(report) == [(1, "id", "is a JSON object, not text")]


def test_problems_beyond_the_kept_ones_are_still_counted_and_passed_on(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "question,answer\n" + "q,\n" * 30)
    seen: list[ingest.Problem] = []
    report = ingest.validate(
        ReadSpec(str(path), "csv", "utf-8", ","),
        ingest.detect_mapping(["question", "answer"]),
        keep=5,
        on_problem=seen.append,
    )
    assert (report.invalid, report.problem_count, len(report.problems), len(seen)) == (30, 30, 5, 30)
    assert str(seen[-1]) == "line 31, column answer: is empty; each row needs a response"


def test_invalid_rows_download_has_the_cells_and_an_error_column(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", 'question,answer\nok,fine\n"multi\nline",\nq,a,extra\n')
    spec = ReadSpec(str(path), "csv", "utf-8", ",")
    data = b"".join(ingest.invalid_rows_csv(spec, ingest.detect_mapping(["question", "answer"])))
    assert data.startswith(codecs.BOM_UTF8)
    import csv

    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert rows == [
        ["question", "answer", "error"],
        ["multi\nline", "", "line 3, column answer: is empty; each row needs a response"],
        ["q", "a", "line 5, column (row): has 3 cells; the header has 2 columns", "extra"],
    ]


def test_invalid_rows_download_of_jsonl_keeps_the_original_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"answer": "ok"}\n{"answer": broken\n')
    spec = ReadSpec(str(path), "jsonl", "utf-8", "")
    import csv

    data = b"".join(ingest.invalid_rows_csv(spec, {"answer": "response"})).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(data, newline="")))
    assert rows[0] == ["answer", "error", "json"]
    assert rows[1][2] == '{"answer": broken'
    assert rows[1][1].startswith("line 2, column (row): is not valid JSON")


# --- Hostile input (issue 11): limits that hold while streaming, decode problems as row problems ------


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_a_jsonl_value_nested_100000_deep_is_a_problem_of_its_row_not_a_recursion_error(
    tmp_path: Path,
) -> None:
    good = '{"prompt": "q", "response": "a"}'
    path = write(tmp_path, "d.jsonl", f'{good}\n{{"response": "a", "m": {deep(100_000)}}}\n{good}\n')
    _, report, _ = read(path)
    assert problems(report) == [
        (2, "(row)", "is nested more than 64 levels deep, over the limit (DOCKET_MAX_JSON_DEPTH)")
    ]
    assert report.valid == 2


def test_nesting_up_to_the_depth_limit_is_read(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_JSON_DEPTH = 4
    path = write(
        tmp_path, "d.jsonl", '{"response": "a", "m": [[["x"]]]}\n{"response": "a", "m": [[[["x"]]]]}\n'
    )
    _, report, rows = read(path)
    assert rows[0].metadata == {"m": [[["x"]]]}
    assert problems(report) == [
        (2, "(row)", "is nested more than 4 levels deep, over the limit (DOCKET_MAX_JSON_DEPTH)")
    ]


def test_a_json_array_element_nested_100000_deep_refuses_the_file_naming_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", f'[\n{{"response": "a"}},\n{deep(100_000)}\n]\n')
    with pytest.raises(IngestError, match=r"element starting on line 3 is nested more than 64 levels deep"):
        read(path)


@pytest.mark.parametrize("column", ["contexts", "turns"])
def test_a_json_cell_nested_100000_deep_is_a_problem_of_its_row(tmp_path: Path, column: str) -> None:
    cells = {
        "contexts": ["q", "r", deep(100_000), "", "", ""],
        "turns": ["q", "r", "", "", deep(100_000), ""],
    }
    report, _ = check_rows(tmp_path, [cells[column]])
    assert problems(report) == [
        (2, column, "is nested more than 64 levels deep, over the limit (DOCKET_MAX_JSON_DEPTH)")
    ]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "value.jsonl",
            '{"response": "a"}\n{"response": "bad \\ud800 here"}\n',
            (2, "response", "holds a lone surrogate (\\ud800), half of a UTF-16 pair, which text can't hold"),
        ),
        (
            "nested.jsonl",
            '{"response": "a"}\n{"response": "a", "m": {"x": ["\\udfff"]}}\n',
            (2, "m", "holds a lone surrogate (\\udfff), half of a UTF-16 pair, which text can't hold"),
        ),
        (
            "key.jsonl",
            '{"response": "a"}\n{"response": "a", "k\\ud800": 1}\n',
            (2, "(row)", 'has a key with a lone surrogate ("k\\ud800"), which text can\'t hold'),
        ),
        (
            "key.json",
            '[{"response": "a"},\n {"response": "a", "m": {"\\udc00": 1}}]',
            (2, "m", 'has a key with a lone surrogate ("\\udc00"), which text can\'t hold'),
        ),
    ],
)
def test_a_lone_surrogate_escape_is_a_problem_naming_line_and_key(
    tmp_path: Path, name: str, text: str, expected: tuple[int, str, str]
) -> None:
    _, report, rows = read(write(tmp_path, name, text))
    assert problems(report) == [expected]
    # The message itself is storable text (it is saved in the upload's report and shown on pages).
    expected[2].encode("utf-8")
    assert report.valid == 1 and rows[0].response == "a"


def test_a_surrogate_pair_escape_is_one_character_and_reads_fine(tmp_path: Path) -> None:
    _, report, rows = read(write(tmp_path, "d.jsonl", '{"response": "smile \\ud83d\\ude00"}\n'))
    assert report.invalid == 0 and rows[0].response == "smile \U0001f600"


def test_a_lone_surrogate_in_a_turns_cell_is_a_problem_of_its_row(tmp_path: Path) -> None:
    turns = '[{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "yo"}]'
    report, _ = check_rows(tmp_path, [["q", "r", "", "", turns, ""]])
    assert problems(report) == [
        (2, "turns", "holds a lone surrogate (\\ud800), half of a UTF-16 pair, which text can't hold")
    ]


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("top.jsonl", '{"response": "a"}\n{"response": "a", "response": "b"}\n', 2),
        ("nested.jsonl", '{"response": "a"}\n{"response": "a", "m": {"response": 1, "response": 2}}\n', 2),
        ("array.json", '[{"response": "a"},\n\n {"response": "a", "response": "b"}]', 3),
    ],
)
def test_a_key_twice_in_one_json_object_is_a_problem_of_its_row(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    _, report, _ = read(write(tmp_path, name, text))
    assert problems(report) == [(line, "(row)", "has the key 'response' twice in one object")]
    assert report.valid == 1


def test_a_key_twice_in_a_turns_cell_is_a_problem_of_its_row(tmp_path: Path) -> None:
    turns = '[{"role": "user", "content": "hi", "content": "ho"}]'
    report, _ = check_rows(tmp_path, [["q", "r", "", "", turns, ""]])
    assert problems(report) == [(2, "turns", "has the key 'content' twice in one object")]


def test_a_csv_quote_never_closed_is_named_on_the_line_it_opens_instead_of_eating_the_file(
    tmp_path: Path,
) -> None:
    text = 'question,answer\nq1,a1\nq2,"a2 opens a quote\nq3,a3\nq4,a4\n'
    _, report, rows = read(write(tmp_path, "q.csv", text))
    assert problems(report) == [(3, "(row)", "a quote opened here never closes")]
    assert [row.line for row in rows if isinstance(row, ingest.ParsedRow)] == [2]


def test_a_csv_quote_that_closes_on_a_later_line_is_one_multi_line_cell(tmp_path: Path) -> None:
    _, report, rows = read(write(tmp_path, "q.csv", 'question,answer\nq1,"a\nb"\nq2,a2'))
    assert report.invalid == 0 and rows[0].response == "a\nb" and rows[1].line == 4


def test_a_csv_header_quote_never_closed_refuses_the_file(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"^Line 1: a quote opened here never closes\.$"):
        read(write(tmp_path, "q.csv", 'question,"answer\nq1,a1\n'))


def test_a_csv_header_wider_than_the_column_limit_is_refused(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_COLUMNS = 5
    header = ",".join(f"c{i}" for i in range(6))
    with pytest.raises(IngestError, match=r"6 columns, over the 5-column limit \(DOCKET_MAX_COLUMNS\)"):
        read(write(tmp_path, "w.csv", f"{header}\n{',' * 5}\n"))


def test_json_keys_past_the_column_limit_are_problems_of_the_rows_that_bring_them(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Columns are sampled from the first objects; keys met after those become extra columns.
    monkeypatch.setattr("evals.ingest.readers.COLUMN_SAMPLE_ROWS", 1)
    settings.DOCKET_MAX_COLUMNS = 3
    lines = ['{"response": "a", "k1": 1}', '{"response": "a", "k2": 1}', '{"response": "a", "k3": 1}']
    path = write(tmp_path, "k.jsonl", "\n".join(lines) + "\n")
    facts = ingest.inspect_file(path)
    spec = ReadSpec(str(path), facts.file_format, facts.encoding)
    report = ingest.validate(spec, {"response": "response", "k1": "metadata"})
    assert problems(report) == [
        (3, "k3", "is a new key past the 3-column limit of the file (DOCKET_MAX_COLUMNS)")
    ]
    assert report.extra_columns == ["k2"]


def test_a_json_object_with_more_keys_than_the_column_limit_is_a_problem(
    tmp_path: Path, settings: Any
) -> None:
    settings.DOCKET_MAX_COLUMNS = 3
    path = write(tmp_path, "k.jsonl", '{"response": "a"}\n{"response": "a", "a": 1, "b": 2, "c": 3}\n')
    _, report, _ = read(path)
    assert problems(report) == [(2, "(row)", "has 4 keys, over the 3-column limit (DOCKET_MAX_COLUMNS)")]


def test_a_csv_line_past_the_line_limit_is_refused_before_it_is_read_whole(
    tmp_path: Path, settings: Any
) -> None:
    settings.DOCKET_MAX_LINE_CHARS = 1000
    path = write(tmp_path, "l.csv", "question,answer\nq,a\nq," + "x" * 5000)
    with pytest.raises(
        IngestError,
        match=r"^Line 3 is longer than 1,000 characters, over the line limit \(DOCKET_MAX_LINE_CHARS\)\.$",
    ):
        read(path)


def test_a_csv_row_spanning_lines_past_the_line_limit_is_refused_naming_where_it_starts(
    tmp_path: Path, settings: Any
) -> None:
    settings.DOCKET_MAX_LINE_CHARS = 1000
    path = write(tmp_path, "l.csv", 'question,answer\nq,"' + "x\n" * 600 + '"\n')
    with pytest.raises(IngestError, match=r"over the line limit .* \(in the row starting on line 2\)\.$"):
        read(path)


def test_a_jsonl_line_past_the_line_limit_is_a_problem_and_the_next_line_is_read(
    tmp_path: Path, settings: Any
) -> None:
    settings.DOCKET_MAX_LINE_CHARS = 1000
    long = '{"response": "' + "x" * 5000 + '"}'
    path = write(tmp_path, "l.jsonl", f'{{"response": "a"}}\n{long}\n{{"response": "b"}}\n')
    _, report, rows = read(path)
    assert problems(report) == [
        (2, "(row)", "is longer than 1,000 characters, over the line limit (DOCKET_MAX_LINE_CHARS)")
    ]
    assert [(row.line, row.response) for row in rows if isinstance(row, ingest.ParsedRow)] == [
        (1, "a"),
        (3, "b"),
    ]


def test_a_json_array_element_past_the_line_limit_refuses_the_file(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_LINE_CHARS = 1000
    path = write(tmp_path, "l.json", '[{"response": "a"},\n{"response": "' + "x" * 3_000_000)
    with pytest.raises(IngestError, match=r"element starting on line 2 is longer than 1,000 characters"):
        read(path)


def test_a_csv_cell_past_the_cell_limit_is_refused(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_CELL_CHARS = 100
    path = write(tmp_path, "c.csv", "question,answer\nq,a\nq," + "x" * 101 + "\n")
    with pytest.raises(
        IngestError, match=r"^Line 3: a cell is longer than 100 characters.*DOCKET_MAX_CELL_CHARS"
    ):
        read(path)


def test_a_jsonl_value_past_the_cell_limit_is_a_problem_naming_its_key(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_CELL_CHARS = 100
    path = write(tmp_path, "c.jsonl", '{"response": "a"}\n{"response": "' + "x" * 101 + '"}\n')
    _, report, _ = read(path)
    assert problems(report) == [
        (2, "response", "is 101 characters long, over the cell limit (DOCKET_MAX_CELL_CHARS)")
    ]


def test_blank_lines_count_toward_the_row_limit_even_in_a_preview(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_ROWS = 10
    path = write(tmp_path, "b.csv", "question,answer\n" + "\n" * 20 + "q,a\n")
    spec = ReadSpec(str(path), "csv", "utf-8", ",")
    with pytest.raises(IngestError, match=r"more than 10 rows counting blank ones.*\(DOCKET_MAX_ROWS\)"):
        ingest.preview(spec)


def sheet_xlsx(tmp_path: Path, sheet_xml: str, name: str = "s.xlsx") -> Path:
    """A workbook (from openpyxl) whose sheet XML is replaced by the given rows, with a dimension."""
    source = xlsx(tmp_path, {"S": [["x"]]}, name="source.xlsx")
    path = tmp_path / name
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = (
                    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                    f"{sheet_xml}</worksheet>"
                ).encode()
            copy.writestr(info.filename, data)
    return path


def inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


def test_xlsx_rows_are_not_padded_to_a_dimension_claiming_a1_to_xfd1048576(tmp_path: Path) -> None:
    path = sheet_xlsx(
        tmp_path,
        '<dimension ref="A1:XFD1048576"/><sheetData>'
        f'<row r="1">{inline("A1", "prompt")}{inline("B1", "response")}</row>'
        f'<row r="2">{inline("A2", "q")}{inline("B2", "a")}</row>'
        "</sheetData>",
    )
    with ingest.Table(ReadSpec(str(path), "xlsx")) as table:
        records = list(table)
    assert table.columns == ["prompt", "response"]
    assert [(record.line, record.values) for record in records] == [(2, ["q", "a"])]
    assert table.blank_lines == 0


def test_xlsx_rows_skipped_by_number_count_as_blank_without_being_made(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_ROWS = 1000
    ok = sheet_xlsx(
        tmp_path,
        f'<sheetData><row r="1">{inline("A1", "response")}</row><row r="500">{inline("A500", "a")}</row>'
        "</sheetData>",
        name="ok.xlsx",
    )
    _, report, rows = read(ok)
    assert (report.valid, report.blank, rows[0].line) == (1, 498, 500)
    far = sheet_xlsx(
        tmp_path,
        f'<sheetData><row r="1">{inline("A1", "response")}</row>'
        f'<row r="1048576">{inline("A1048576", "a")}</row></sheetData>',
        name="far.xlsx",
    )
    with pytest.raises(IngestError, match=r"more than 1,000 rows counting blank ones"):
        read(far)


def test_xlsx_blank_row_elements_count_toward_the_row_limit(tmp_path: Path, settings: Any) -> None:
    settings.DOCKET_MAX_ROWS = 10_000
    path = sheet_xlsx(
        tmp_path,
        f"<sheetData><row>{inline('A1', 'response')}</row><row>{inline('A2', 'a')}</row>"
        + "<row/>" * 20_000
        + "</sheetData>",
    )
    with pytest.raises(IngestError, match=r"more than 10,000 rows counting blank ones"):
        read(path)


def test_xlsx_trailing_blank_row_elements_are_counted(tmp_path: Path) -> None:
    path = sheet_xlsx(
        tmp_path,
        f"<sheetData><row>{inline('A1', 'response')}</row><row>{inline('A2', 'a')}</row>"
        + "<row/>" * 5000
        + f"<row>{inline('A5003', 'b')}</row>"
        + "<row/>" * 7
        + "</sheetData>",
    )
    _, report, rows = read(path)
    assert (report.valid, report.blank, [row.line for row in rows]) == (2, 5007, [2, 5003])


def test_an_xlsx_value_past_the_column_limit_is_a_problem_and_in_the_header_refuses(
    tmp_path: Path,
) -> None:
    path = sheet_xlsx(
        tmp_path,
        f'<sheetData><row r="1">{inline("A1", "response")}</row>'
        f'<row r="2">{inline("A2", "a")}{inline("XFD2", "far")}</row></sheetData>',
        name="row.xlsx",
    )
    _, report, _ = read(path)
    assert problems(report) == [
        (2, "(row)", "has a value in column 16,384, over the 2,000-column limit (DOCKET_MAX_COLUMNS)")
    ]
    header = sheet_xlsx(
        tmp_path, f'<sheetData><row r="1">{inline("A1", "response")}{inline("XFD1", "far")}</row></sheetData>'
    )
    with pytest.raises(IngestError, match=r"^Row 1 of the sheet 'S' has a value in column 16,384"):
        read(header)


def test_an_xlsx_part_unpacking_past_the_limit_is_refused_before_it_is_inflated(
    tmp_path: Path, settings: Any
) -> None:
    path = xlsx(tmp_path, {"S": [["prompt", "response"], *[["q", "a" * 20_000]] * 3]})
    settings.DOCKET_MAX_XLSX_PART_BYTES = 40_000
    with pytest.raises(
        IngestError,
        match=r"^The workbook's part xl/worksheets/sheet1.xml unpacks to .*, over the 39.1 KB limit for one "
        r"part \(DOCKET_MAX_XLSX_PART_BYTES\)\.$",
    ):
        read(path)
    settings.DOCKET_MAX_XLSX_PART_BYTES = 1 << 20
    settings.DOCKET_MAX_XLSX_BYTES = 60_000
    with pytest.raises(IngestError, match=r"over the workbook limit \(DOCKET_MAX_XLSX_BYTES\)"):
        ingest.xlsx_sheet_names(str(path))


def test_a_header_cell_with_undecodable_bytes_refuses_the_file_naming_it(tmp_path: Path) -> None:
    # A column name holding a lone surrogate could not be stored as the dataset's columns.
    path = write(tmp_path, "h.csv", "qué,answer".encode() + b"\xff\nq,a\n")
    with pytest.raises(
        IngestError, match=r"^Column 2 of the header holds byte 0xFF, which is not valid UTF-8"
    ):
        read(path)


def test_a_number_past_pythons_digit_limit_is_a_problem_of_its_row_or_refuses_a_json_array(
    tmp_path: Path,
) -> None:
    digits = "1" * 5000
    _, report, _ = read(
        write(tmp_path, "n.jsonl", f'{{"response": "a"}}\n{{"response": "a", "n": {digits}}}\n')
    )
    assert problems(report) == [(2, "(row)", "holds a number of more than 4,300 digits")]
    with pytest.raises(
        IngestError, match=r"element starting on line 2 holds a number of more than 4,300 digits"
    ):
        read(write(tmp_path, "n.json", f'[{{"response": "a"}},\n{{"response": "a", "n": {digits}}}]'))


@pytest.mark.parametrize("name", ["n.jsonl", "n.json"])
def test_nan_and_infinity_are_problems_of_their_rows(tmp_path: Path, name: str) -> None:
    rows = ['{"response": "a"}', '{"response": "a", "score": NaN}', '{"response": "a", "score": -Infinity}']
    text = "\n".join(rows) + "\n" if name.endswith("l") else "[" + ",\n".join(rows) + "]"
    _, report, _ = read(write(tmp_path, name, text))
    assert problems(report) == [
        (2, "(row)", "holds NaN, which is not JSON (databases can't store it)"),
        (3, "(row)", "holds -Infinity, which is not JSON (databases can't store it)"),
    ]


def test_xlsx_blank_rows_that_repeat_a_row_number_still_count_toward_the_row_limit(
    tmp_path: Path, settings: Any
) -> None:
    settings.DOCKET_MAX_ROWS = 10_000
    path = sheet_xlsx(
        tmp_path,
        f'<sheetData><row r="1">{inline("A1", "response")}</row><row r="2">{inline("A2", "a")}</row>'
        + '<row r="2"/>' * 20_000
        + "</sheetData>",
    )
    with pytest.raises(IngestError, match=r"more than 10,000 rows counting blank ones"):
        read(path)


def shared_strings_xlsx(tmp_path: Path, strings: list[str], sheet_xml: str) -> Path:
    """A workbook whose sheet refers to a shared-strings part (Excel's way; openpyxl writes inline)."""
    path = sheet_xlsx(tmp_path, sheet_xml, name="plain.xlsx")
    shared = tmp_path / "shared.xlsx"
    import zipfile

    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
    with zipfile.ZipFile(path) as original, zipfile.ZipFile(shared, "w", zipfile.ZIP_DEFLATED) as copy:
        for info in original.infolist():
            data = original.read(info.filename)
            if info.filename == "[Content_Types].xml":
                override = f'<Override PartName="/xl/sharedStrings.xml" ContentType="{content_type}"/>'
                data = data.replace(b"</Types>", override.encode() + b"</Types>")
            copy.writestr(info.filename, data)
        copy.writestr("xl/sharedStrings.xml", f'<sst xmlns="{ns}">{"".join(strings)}</sst>')
    return shared


def shared(ref: str, index: int) -> str:
    return f'<c r="{ref}" t="s"><v>{index}</v></c>'


def test_xlsx_shared_strings_are_read_as_excel_writes_them_and_their_count_is_capped(
    tmp_path: Path, settings: Any
) -> None:
    strings = [
        "<si><t>prompt</t></si>",
        "<si><t>response</t></si>",
        # Rich text: the runs' text joined; a phonetic reading (rPh) is not part of the text.
        '<si><r><rPr><b/></rPr><t>bold </t></r><r><t xml:space="preserve">and plain</t></r>'
        '<rPh sb="0" eb="1"><t>ignored</t></rPh></si>',
        "<si><t>an_x005F_x000D_escape</t></si>",
    ]
    sheet = (
        f'<sheetData><row r="1">{shared("A1", 0)}{shared("B1", 1)}</row>'
        f'<row r="2">{shared("A2", 2)}{shared("B2", 3)}</row></sheetData>'
    )
    path = shared_strings_xlsx(tmp_path, strings, sheet)
    _, report, rows = read(path)
    assert report.valid == 1
    assert (rows[0].request, rows[0].response) == ("bold and plain", "an_x000D_escape")
    settings.DOCKET_MAX_XLSX_STRINGS = 3
    with pytest.raises(
        IngestError,
        match=r"^The workbook has more than 3 shared strings, over the limit \(DOCKET_MAX_XLSX_STRINGS\)\.$",
    ):
        read(path)
