"""The judges and datasets API: upload a file as a dataset, list, read and delete datasets, list judges."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Example, Judge
from evals.services.runs import run_create
from tests.conftest import SUPPORT_JUDGE

pytestmark = pytest.mark.django_db

FIXTURES = Path(__file__).parent.parent / "fixtures" / "datasets"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00" + bytes(200)


@pytest.fixture(autouse=True)
def uploads(settings: SettingsWrapper, tmp_path: Path) -> Path:
    """Uploads land in a directory of the test's own, so what is left behind can be seen."""
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path / "uploads"
    return Path(settings.FILE_UPLOAD_TEMP_DIR)


def upload(client: Client, file_name: str, content: bytes, **fields: Any) -> Any:
    data: dict[str, Any] = {"file": SimpleUploadedFile(file_name, content), **fields}
    return client.post("/api/v1/datasets/", data)


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def fields_named(body: dict[str, Any]) -> set[str]:
    return {error["field"] for error in body["errors"]}


def left_in(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file()] if directory.exists() else []


# --- Upload -------------------------------------------------------------------------------------------


def test_a_csv_upload_becomes_a_ready_dataset_named_after_the_file(api: Client, uploads: Path) -> None:
    response = upload(api, "qa.csv", (FIXTURES / "qa.csv").read_bytes())
    assert response.status_code == 201, response.content
    body = response.json()
    dataset = Dataset.objects.get(pk=body["id"])
    assert body["name"] == "qa" and body["file_name"] == "qa.csv" and body["file_format"] == "csv"
    assert body["status"] == "ready" and body["row_count"] == 3 == dataset.examples.count()
    assert body["columns"] == ["question", "answer", "context_1", "context_2", "topic"]
    assert body["mapping"]["question"] == "request" and body["mapping"]["answer"] == "response"
    assert body["metadata_columns"] == ["topic"]
    assert body["url"] == f"http://testserver/datasets/{dataset.pk}/"
    assert body["created_at"].endswith(("Z", "+00:00"))
    first = Example.objects.get(dataset=dataset, position=0)
    assert first.request == "What is the capital of France?" and first.response.startswith(
        "Paris.\r\nIt has been"
    )
    assert left_in(uploads) == []


def test_a_jsonl_upload_takes_the_given_name(api: Client, tmp_path: Path) -> None:
    path = tmp_path / "support.jsonl"
    rows = [{"prompt": f"Question {n}?", "output": f"Answer {n}.", "team": "billing"} for n in range(4)]
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    response = upload(api, path.name, path.read_bytes(), name="  Support   answers ")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "Support answers" and body["file_format"] == "jsonl" and body["row_count"] == 4
    assert Example.objects.get(dataset_id=body["id"], position=3).metadata == {"team": "billing"}


def test_invalid_rows_are_a_422_listing_line_and_column_and_nothing_is_written(
    api: Client, uploads: Path
) -> None:
    content = b"question,answer\nFirst?,Yes.\nSecond?,\nThird?,Fine.\nFourth?,\n"
    body = assert_problem(upload(api, "answers.csv", content), 422)
    assert "2 of 4 rows are invalid" in body["detail"] and "skip_invalid" in body["detail"]
    assert [(error["line"], error["column"]) for error in body["errors"]] == [(3, "answer"), (5, "answer")]
    assert all(error["message"] for error in body["errors"])
    assert not Dataset.objects.exists()
    assert left_in(uploads) == []


def test_the_422_lists_the_first_100_problems_and_says_how_many_in_all(api: Client) -> None:
    content = "question,answer\n" + "".join(f"Q{n}?,\n" for n in range(150)) + "Last?,Yes.\n"
    body = assert_problem(upload(api, "many.csv", content.encode()), 422)
    assert len(body["errors"]) == 100 and body["errors"][0]["line"] == 2
    assert "150" in body["detail"]


def test_skip_invalid_imports_only_the_valid_rows(api: Client) -> None:
    content = b"question,answer\nFirst?,Yes.\nSecond?,\nThird?,Fine.\n"
    response = upload(api, "answers.csv", content, skip_invalid="true")
    assert response.status_code == 201, response.content
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.row_count == 2
    assert list(dataset.examples.order_by("position").values_list("request", flat=True)) == [
        "First?",
        "Third?",
    ]


def test_no_valid_row_at_all_is_a_422_listing_the_rows(api: Client) -> None:
    body = assert_problem(
        upload(api, "empty-answers.csv", b"question,answer\nOne?,\nTwo?,\n", skip_invalid="on"), 422
    )
    assert "No row is valid" in body["detail"]
    assert [error["line"] for error in body["errors"]] == [2, 3]


def test_map_chooses_the_columns_the_names_do_not_give(api: Client) -> None:
    content = (FIXTURES / "unmapped_semicolon.csv").read_bytes()
    unmapped = assert_problem(upload(api, "unmapped_semicolon.csv", content), 422)
    assert fields_named(unmapped) == {"map"} and "response" in unmapped["detail"]

    response = upload(api, "unmapped_semicolon.csv", content, map=["request=q_text", "response=reply"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["mapping"] == {"q_text": "request", "reply": "response", "notes": "metadata"}
    example = Example.objects.get(dataset_id=body["id"], position=1)
    assert (example.request, example.response, example.metadata) == ("What is 2 + 2?", "4", {"notes": "math"})


@pytest.mark.parametrize(
    ("item", "says"),
    [
        ("response=no_such_column", "no column named 'no_such_column'"),
        ("verdict=answer", "Unknown field 'verdict'"),
        ("response", "FIELD=COLUMN"),
        ("=answer", "FIELD=COLUMN"),
    ],
)
def test_a_bad_map_is_a_422_naming_map(api: Client, item: str, says: str) -> None:
    body = assert_problem(upload(api, "qa.csv", (FIXTURES / "qa.csv").read_bytes(), map=[item]), 422)
    assert fields_named(body) == {"map"}
    assert says in body["detail"]
    assert not Dataset.objects.exists()


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("empty.csv", b"", "empty"),
        ("picture.csv", PNG, "PNG"),
        ("header-only.csv", b"question,answer\n", "no data rows"),
    ],
)
def test_a_file_that_cannot_be_a_dataset_is_a_422_naming_file(
    api: Client, uploads: Path, name: str, content: bytes, says: str
) -> None:
    body = assert_problem(upload(api, name, content), 422)
    assert fields_named(body) == {"file"}
    assert says in body["detail"]
    assert not Dataset.objects.exists()
    assert left_in(uploads) == []


def test_no_file_is_a_422_naming_file(api: Client) -> None:
    body = assert_problem(api.post("/api/v1/datasets/", {"name": "nothing"}), 422)
    assert "file" in fields_named(body)


def test_a_name_with_a_nul_character_is_a_422_naming_name(api: Client) -> None:
    # PostgreSQL text cannot hold NUL: stored, it would be a 500 there.
    body = assert_problem(upload(api, "qa.csv", (FIXTURES / "qa.csv").read_bytes(), name="a\x00b"), 422)
    assert fields_named(body) == {"name"}
    assert not Dataset.objects.exists()


def test_a_name_over_200_characters_is_a_422_naming_name(api: Client) -> None:
    body = assert_problem(upload(api, "qa.csv", (FIXTURES / "qa.csv").read_bytes(), name="n" * 201), 422)
    assert fields_named(body) == {"name"}
    assert not Dataset.objects.exists()


def test_a_file_over_the_cap_is_a_413(api: Client, settings: SettingsWrapper, uploads: Path) -> None:
    settings.DOCKET_MAX_UPLOAD_BYTES = 1000
    content = b"question,answer\n" + b"Why?,Because.\n" * 10_000  # 140 kB: over the cap with room for framing
    body = assert_problem(upload(api, "big.csv", content), 413)
    assert "upload limit" in body["detail"] and fields_named(body) == {"file"}
    assert left_in(uploads) == [] and not Dataset.objects.exists()


class Unreadable:
    """A request body that fails the request (a 500) if anything reads it."""

    def read(self, *args: Any) -> bytes:
        raise AssertionError("the body was read")

    readline = read


def test_a_body_declared_over_the_cap_is_refused_without_reading_it(api: Client) -> None:
    response = api.generic(
        "POST",
        "/api/v1/datasets/",
        b"",
        content_type="multipart/form-data; boundary=BoUnDaRy",
        CONTENT_LENGTH=str(600 * 1024 * 1024),
        **{"wsgi.input": Unreadable()},
    )
    assert "upload limit" in assert_problem(response, 413)["detail"]


def test_a_file_over_the_cap_in_a_small_enough_body_is_stopped_while_it_streams(
    api: Client, settings: SettingsWrapper, uploads: Path
) -> None:
    settings.DOCKET_MAX_UPLOAD_BYTES = 1000
    content = b"question,answer\n" + b"Why?,Because.\n" * 300  # 4 kB: the body's length alone passes
    body = assert_problem(upload(api, "big.csv", content), 413)
    assert "upload limit" in body["detail"]
    assert left_in(uploads) == [] and not Dataset.objects.exists()


def test_a_file_larger_than_djangos_form_memory_limit_is_imported(
    api: Client, settings: SettingsWrapper
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100_000
    content = b"question,answer\n" + b"".join(b"Question %d?,%s\n" % (n, b"a" * 2000) for n in range(200))
    assert len(content) > 4 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = upload(api, "wide.csv", content)
    assert response.status_code == 201, response.content
    assert response.json()["row_count"] == 200


def test_form_fields_over_djangos_memory_limit_are_a_413_problem(
    api: Client, settings: SettingsWrapper
) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = upload(api, "qa.csv", (FIXTURES / "qa.csv").read_bytes(), map=["response=answer"] * 100)
    assert_problem(response, 413)


def test_a_body_that_is_not_multipart_is_a_4xx_problem(api: Client) -> None:
    json_body = api.post("/api/v1/datasets/", {"file": "x"}, content_type="application/json")
    assert "file" in fields_named(assert_problem(json_body, 422))
    broken = api.generic(
        "POST", "/api/v1/datasets/", b"--nope\r\n", content_type="multipart/form-data; boundary="
    )
    assert_problem(broken, 400)


def test_a_read_token_cannot_upload_or_delete(reader: Client, make_dataset: Callable[..., Dataset]) -> None:
    response = upload(reader, "qa.csv", (FIXTURES / "qa.csv").read_bytes())
    assert "write scope" in assert_problem(response, 403)["detail"]
    dataset = make_dataset(rows=2)
    assert_problem(reader.delete(f"/api/v1/datasets/{dataset.pk}/"), 403)
    assert (
        Dataset.objects.filter(pk=dataset.pk).exists() and not Dataset.objects.exclude(pk=dataset.pk).exists()
    )


def test_no_token_is_a_401_without_a_dataset(db: None) -> None:
    assert_problem(
        Client().post("/api/v1/datasets/", {"file": SimpleUploadedFile("a.csv", b"q,a\n1,2\n")}), 401
    )
    assert not Dataset.objects.exists()


# --- Read and delete ----------------------------------------------------------------------------------


def test_the_list_pages_newest_first_through_every_dataset(
    reader: Client, make_dataset: Callable[..., Dataset]
) -> None:
    made = [make_dataset(rows=1, name=f"set {n}") for n in range(3)]
    Dataset.objects.filter(pk=made[1].pk).update(status=Dataset.Status.IMPORTING)
    seen: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(10):
        response = reader.get("/api/v1/datasets/", {"limit": 1, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200
        page = response.json()
        assert len(page["items"]) == 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [item["id"] for item in seen] == [dataset.pk for dataset in reversed(made)]
    assert [item["status"] for item in seen] == ["ready", "importing", "ready"]
    assert seen[0]["url"] == f"http://testserver/datasets/{made[2].pk}/"


def test_a_bad_limit_or_cursor_is_a_422(reader: Client) -> None:
    assert fields_named(assert_problem(reader.get("/api/v1/datasets/", {"limit": 0}), 422)) == {"limit"}
    assert fields_named(assert_problem(reader.get("/api/v1/datasets/", {"cursor": "x"}), 422)) == {"cursor"}


def test_one_dataset_and_an_unknown_one(reader: Client, make_dataset: Callable[..., Dataset]) -> None:
    dataset = make_dataset(rows=5, name="five rows")
    body = reader.get(f"/api/v1/datasets/{dataset.pk}/").json()
    assert (body["id"], body["name"], body["row_count"]) == (dataset.pk, "five rows", 5)
    for unknown in (dataset.pk + 1, 10**30):
        assert "no dataset" in assert_problem(reader.get(f"/api/v1/datasets/{unknown}/"), 404)["detail"]


def test_delete_removes_the_dataset_and_its_rows(api: Client, make_dataset: Callable[..., Dataset]) -> None:
    dataset = make_dataset(rows=3)
    response = api.delete(f"/api/v1/datasets/{dataset.pk}/")
    assert response.status_code == 204 and response.content == b""
    assert not Dataset.objects.exists() and not Example.objects.exists()
    assert_problem(api.delete(f"/api/v1/datasets/{dataset.pk}/"), 404)
    assert_problem(api.get(f"/api/v1/datasets/{dataset.pk}/"), 404)


def test_delete_of_a_dataset_a_run_uses_is_a_409(
    api: Client, make_dataset: Callable[..., Dataset], judges: dict[str, Judge]
) -> None:
    dataset = make_dataset(rows=2)
    run_create(dataset=dataset, judge=judges[SUPPORT_JUDGE])
    body = assert_problem(api.delete(f"/api/v1/datasets/{dataset.pk}/"), 409)
    assert "1 run uses this dataset" in body["detail"]
    assert Dataset.objects.filter(pk=dataset.pk).exists() and dataset.examples.count() == 2


# --- Judges -------------------------------------------------------------------------------------------


def test_judges_lists_the_listed_judges_of_the_current_api(reader: Client, judges: dict[str, Judge]) -> None:
    hidden = next(iter(judges.values()))
    Judge.objects.filter(pk=hidden.pk).update(is_listed=False)
    Judge.objects.create(
        api_url="http://elsewhere.example", remote_id="x1", source="offline", name="Elsewhere"
    )
    response = reader.get("/api/v1/judges/")
    assert response.status_code == 200
    page = response.json()
    listed = {item["name"]: item for item in page["items"]}
    assert set(listed) == set(judges) - {hidden.name} and page["next_cursor"] is None
    for name, item in listed.items():
        judge = judges[name]
        assert item["id"] == judge.pk and item["remote_id"] == judge.remote_id
        assert item["evaluators"] == judge.evaluator_names and item["evaluators"]
        assert item["inputs"] == judge.inputs and item["intent"] == judge.intent


def test_judges_page_by_cursor(reader: Client, judges: dict[str, Judge]) -> None:
    first = reader.get("/api/v1/judges/", {"limit": 1}).json()
    assert len(first["items"]) == 1 and first["next_cursor"]
    rest = reader.get("/api/v1/judges/", {"limit": 200, "cursor": first["next_cursor"]}).json()
    ids = [item["id"] for item in first["items"] + rest["items"]]
    assert ids == sorted((judge.pk for judge in judges.values()), reverse=True)


@pytest.mark.parametrize(
    ("client_name", "stored"),
    [
        ("../../outside.csv", "outside.csv"),
        ("é" * 300 + ".csv", "é" * 75 + ".csv"),  # 150 bytes of name on disk, whatever the file system
    ],
)
def test_the_clients_file_name_is_kept_only_as_a_safe_name(
    api: Client, uploads: Path, tmp_path: Path, client_name: str, stored: str
) -> None:
    response = upload(api, client_name, b"question,answer\nWhy?,Because.\n")
    assert response.status_code == 201, response.content
    assert response.json()["file_name"] == stored and response.json()["name"] == stored.removesuffix(".csv")
    assert left_in(uploads) == [] and not (tmp_path / "outside.csv").exists()
