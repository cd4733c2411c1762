"""The runs API: start a run, list and read runs, poll, cancel, retry, delete, page through items, export."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any, get_args

import httpx
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from dashboard.api.runs import RunStatus
from evals import client
from evals.models import Dataset, Example, Judge, Run
from evals.pump import pump
from evals.selectors.stats import run_statistics
from evals.services.runs import run_create
from tests.conftest import RAG_JUDGE, SUPPORT_JUDGE
from tests.factories import build_run, make_judge

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


def post(api: Client, path: str, body: dict[str, Any] | None = None) -> Any:
    return api.post(path, body or {}, content_type="application/json")


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert field in {error["field"] for error in body["errors"]}, body
    return body


def pump_until_finished(run_id: int, *, rounds: int = 20) -> Run:
    for _ in range(rounds):
        pump(budget_seconds=30, requeue=False)
        run = Run.objects.get(pk=run_id)
        if run.is_finished:
            return run
    raise AssertionError(f"run {run_id} did not finish")


# --- Starting a run -------------------------------------------------------------------------------------


def test_a_run_started_through_the_api_keeps_its_thresholds_as_overrides(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(12)
    response = post(
        api,
        RUNS,
        {
            "dataset_id": dataset.pk,
            "judge": SUPPORT_JUDGE.upper(),
            "name": "nightly",
            "tags": ["ci", "ci", " main "],
            "batch_size": 5,
            "thresholds": {"Politeness": 0.9, "Concision": 0},
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get()
    assert body["id"] == run.pk and body["status"] == "queued" and body["finished"] is False
    assert body["judge"] == {"id": judges[SUPPORT_JUDGE].pk, "name": SUPPORT_JUDGE}
    assert body["tags"] == ["ci", "main"] == run.tags
    assert body["batch_size"] == 5 and run.batches.count() == 3
    assert body["counts"] == {"total": 12, "completed": 0, "failed": 0, "cancelled": 0, "pending": 12}
    assert body["url"] == f"http://testserver/runs/{run.pk}/"
    assert run.threshold_overrides == {"Politeness": 0.9, "Concision": 0.0}
    assert run.created_by is not None and run.created_by.get_username() == "ada"

    # Worked to the end by the offline judge: the judge's learned thresholds do not replace the overrides.
    run = pump_until_finished(run.pk)
    detail = api.get(f"{RUNS}{run.pk}/").json()
    assert detail["status"] == "completed" and detail["finished"] is True
    by_name = {entry["name"]: entry for entry in detail["evaluators"]}
    assert set(by_name) == set(run.evaluators) == set(detail["evaluator_names"])
    assert (by_name["Politeness"]["threshold"], by_name["Politeness"]["threshold_source"]) == (
        0.9,
        "override",
    )
    assert (by_name["Concision"]["threshold"], by_name["Concision"]["threshold_source"]) == (0.0, "override")
    assert by_name["Concision"]["pass_rate"] == 1.0
    assert by_name["PII safety"]["threshold_source"] != "override"
    for stats in run_statistics(run=run).evaluators:
        entry = by_name[stats.name]
        assert (entry["n"], entry["mean"], entry["pass_rate"]) == (stats.n, stats.mean, stats.pass_rate)


def test_the_judge_may_be_named_by_its_remote_id_or_its_number(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    dataset = make_dataset(2)
    judge = judges[SUPPORT_JUDGE]
    for wanted in (judge.remote_id, str(judge.pk)):
        response = post(api, RUNS, {"dataset_id": dataset.pk, "judge": wanted})
        assert response.status_code == 201, response.content
        assert response.json()["judge"]["id"] == judge.pk


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"dataset_id": 999_999}, "dataset_id", "There is no dataset 999999"),
        ({"dataset_id": 99999999999999999999}, "dataset_id", "less than or equal"),
        ({"judge": "No such judge"}, "judge", 'No judge is called "No such judge"'),
        ({"judge": ""}, "judge", "at least 1"),
        ({"judge": "bad\x00name"}, "judge", "NUL"),
        ({"thresholds": {"Politenes": 0.5}}, "thresholds.Politenes", 'no evaluator "Politenes"'),
        ({"thresholds": {"Politeness": "high"}}, "thresholds.Politeness", "valid number"),
        ({"thresholds": {"Politeness": True}}, "thresholds.Politeness", "valid number"),
        ({"tags": ["docket:internal"]}, "tags", "reserved"),
        ({"tags": ["x" * 201]}, "tags", "longer than 200"),
        ({"batch_size": 500}, "batch_size", "less than or equal to 100"),
        ({"name": "n" * 201}, "name", "at most 200"),
    ],
)
def test_a_bad_request_to_start_a_run_is_a_422_naming_the_field_and_starts_nothing(
    api: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
    change: dict[str, Any],
    field: str,
    words: str,
) -> None:
    body = {"dataset_id": make_dataset(3).pk, "judge": SUPPORT_JUDGE, **change}
    problem = assert_problem(post(api, RUNS, body), 422, field)
    said = [problem["detail"], *(error["message"] for error in problem["errors"] or [])]
    assert any(words in text for text in said), said
    assert not Run.objects.exists()


def test_a_threshold_that_is_not_a_finite_number_is_refused(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    # Python's JSON reader takes NaN and Infinity, which no JSON writer should send.
    for value in ("NaN", "Infinity"):
        raw = f'{{"dataset_id": {make_dataset(2).pk}, "judge": "{SUPPORT_JUDGE}", "thresholds": {{"Politeness": {value}}}}}'
        problem = assert_problem(
            api.post(RUNS, raw, content_type="application/json"), 422, "thresholds.Politeness"
        )
        assert "finite" in problem["detail"]
    assert not Run.objects.exists()


def test_a_dataset_that_is_not_ready_or_a_judge_the_dataset_cannot_feed_is_a_422(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    importing = make_dataset(2, name="half done")
    Dataset.objects.filter(pk=importing.pk).update(status=Dataset.Status.IMPORTING)
    problem = assert_problem(
        post(api, RUNS, {"dataset_id": importing.pk, "judge": SUPPORT_JUDGE}), 422, "dataset_id"
    )
    assert "not ready" in problem["detail"]
    # The RAG judge needs contexts, which no row has: run_create's own check, as on the page.
    problem = assert_problem(post(api, RUNS, {"dataset_id": make_dataset(2).pk, "judge": RAG_JUDGE}), 422)
    assert '"contexts"' in problem["detail"]
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("reply", "status"),
    [
        (httpx.Response(503, text="<h1>Service Unavailable</h1>"), 503),
        (httpx.Response(401, json={"title": "Not authenticated.", "detail": "Bad key.", "code": "x"}), 502),
    ],
)
def test_a_judge_api_that_cannot_be_reached_while_looking_up_the_judge_is_a_5xx_problem(
    api: Client,
    offline_judge: Callable[[str], None],
    make_dataset: Callable[..., Dataset],
    monkeypatch: pytest.MonkeyPatch,
    reply: httpx.Response,
    status: int,
) -> None:
    # No judge is known locally, so the API is asked for the list: and it does not answer.
    monkeypatch.setattr(client, "default_transport", httpx.MockTransport(lambda request: reply))
    problem = assert_problem(
        post(api, RUNS, {"dataset_id": make_dataset(2).pk, "judge": SUPPORT_JUDGE}), status
    )
    assert "judge API could not be reached" in problem["detail"]
    assert not Run.objects.exists()


def test_run_status_values_are_the_models() -> None:
    assert set(get_args(RunStatus)) == set(Run.Status.values)


# --- Lists --------------------------------------------------------------------------------------------


def test_the_list_filters_like_the_runs_page_and_pages_newest_first(api: Client) -> None:
    judge = make_judge("Other judge", evaluators=["Politeness"])
    first = build_run({"Politeness": [0.5, 0.7]}, name="first")
    second = build_run({"Politeness": [0.5, None]}, name="second", dataset=first.dataset, judge=first.judge)
    third = build_run({"Politeness": [0.9, 0.1]}, name="third", judge=judge)
    Run.objects.filter(pk=first.pk).update(tags=["Nightly", "main"])
    Run.objects.filter(pk=third.pk).update(tags=["nightly-extra"])

    def ids(query: str) -> list[int]:
        response = api.get(f"{RUNS}?{query}")
        assert response.status_code == 200, response.content
        return [run["id"] for run in response.json()["items"]]

    assert ids("") == [third.pk, second.pk, first.pk]
    assert ids("status=partial") == [second.pk]
    assert ids(f"judge={judge.pk}") == [third.pk]
    assert ids(f"dataset_id={first.dataset_id}") == [second.pk, first.pk]
    # A tag matches whole, in any case: "nightly" is not "nightly-extra".
    assert ids("tag=nightly") == [first.pk]
    assert ids("tag=nightly&status=completed&judge=" + str(first.judge_id)) == [first.pk]
    assert ids("judge=99999") == []

    listed = api.get(f"{RUNS}?limit=2").json()
    assert [run["id"] for run in listed["items"]] == [third.pk, second.pk]
    assert listed["items"][0]["evaluators"] == [] and listed["items"][0]["evaluator_names"] == ["Politeness"]
    rest = api.get(f"{RUNS}?limit=2&cursor={listed['next_cursor']}").json()
    assert [run["id"] for run in rest["items"]] == [first.pk] and rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("limit=many", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("status=sleeping", "status"),
        ("judge=99999999999999999999", "judge"),
        ("dataset_id=-1", "dataset_id"),
    ],
)
def test_bad_list_parameters_are_a_422_naming_them(api: Client, query: str, field: str) -> None:
    build_run({"Politeness": [0.5]})
    assert_problem(api.get(f"{RUNS}?{query}"), 422, field)


# --- One run ------------------------------------------------------------------------------------------


def test_a_runs_statistics_are_the_numbers_of_its_scores(api: Client) -> None:
    politeness = [0.2, 0.4, 0.6, 0.8, 1.0]
    concision = [0.0, 1.0, None, 1.0, None]
    run = build_run({"Politeness": politeness, "Concision": concision}, thresholds={"Politeness": 0.7})
    body = api.get(f"{RUNS}{run.pk}/").json()
    assert body["status"] == "completed" and body["finished"] is True
    assert body["counts"] == {"total": 5, "completed": 5, "failed": 0, "cancelled": 0, "pending": 0}
    assert body["evaluator_names"] == ["Politeness", "Concision"]
    polite, concise = body["evaluators"]

    # Worked out here: mean 0.6, sample sd sqrt(0.1), t(0.975, 4) = 2.7764 from the printed table.
    assert polite["name"] == "Politeness" and polite["n"] == 5
    assert polite["mean"] == pytest.approx(0.6)
    half = 2.776445 * math.sqrt(0.1) / math.sqrt(5)
    assert polite["ci_low"] == pytest.approx(0.6 - half, abs=1e-5)
    assert polite["ci_high"] == pytest.approx(0.6 + half, abs=1e-5)
    assert (polite["threshold"], polite["threshold_source"]) == (0.7, "judge")
    assert polite["pass_rate"] == pytest.approx(2 / 5)  # 0.8 and 1.0

    # The log named no threshold for Concision: 0.5 by default; two of three scores pass.
    assert concise["n"] == 3 and concise["mean"] == pytest.approx(2 / 3)
    assert (concise["threshold"], concise["threshold_source"]) == (0.5, "default")
    assert concise["pass_rate"] == pytest.approx(2 / 3)


def test_the_status_is_read_from_the_run_alone(api: Client) -> None:
    run = build_run({"Politeness": [0.5, None, 0.9]})
    with CaptureQueriesContext(connection) as queries:
        response = api.get(f"{RUNS}{run.pk}/status/")
    assert response.status_code == 200
    assert response.json() == {
        "id": run.pk,
        "status": "partial",
        "finished": True,
        "counts": {"total": 3, "completed": 2, "failed": 1, "cancelled": 0, "pending": 0},
        "backoff_reason": "",
        "budget_paused": False,
        "cost_total": 0.0,
    }
    assert not [query["sql"] for query in queries.captured_queries if "evals_score" in query["sql"]]
    # A run waiting at its spending cap says so, with what it has cost.
    Run.objects.filter(pk=run.pk).update(
        status="running", backoff_kind="budget", backoff_reason="Paused: budget reached", cost_total=0.25
    )
    paused = api.get(f"{RUNS}{run.pk}/status/").json()
    assert (paused["budget_paused"], paused["cost_total"]) == (True, 0.25)


def test_cancelling_stops_a_run_once_and_then_is_a_409(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    run = run_create(dataset=make_dataset(5), judge=judges[SUPPORT_JUDGE])
    response = post(api, f"{RUNS}{run.pk}/cancel/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled" and body["finished"] is True
    assert body["counts"]["cancelled"] == 5
    problem = assert_problem(post(api, f"{RUNS}{run.pk}/cancel/"), 409)
    assert "already finished" in problem["detail"]


def test_a_retry_is_planned_started_once_and_found_again(api: Client) -> None:
    run = build_run({"Politeness": [0.5, None, 0.9, None]})
    plan = api.get(f"{RUNS}{run.pk}/retry/").json()
    assert plan == {"to_send": 2, "failed": 2, "cancelled": 0, "excluded": 0}

    first = post(api, f"{RUNS}{run.pk}/retry/")
    assert first.status_code == 201, first.content
    started = first.json()
    assert started["created"] is True and started["to_send"] == 2
    assert started["run"]["retry_of"] == run.pk and started["run"]["counts"]["total"] == 2

    again = post(api, f"{RUNS}{run.pk}/retry/")
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["run"]["id"] == started["run"]["id"] and again.json()["to_send"] == 2
    assert Run.objects.filter(retry_of=run).count() == 1


def test_a_run_with_nothing_to_retry_is_a_409(api: Client) -> None:
    run = build_run({"Politeness": [0.5, 0.9]})
    problem = assert_problem(post(api, f"{RUNS}{run.pk}/retry/"), 409)
    assert "nothing to retry" in problem["detail"]


def test_deleting_a_run_takes_its_retries_and_says_what_went(api: Client) -> None:
    run = build_run({"Politeness": [0.5, None]})
    retry = build_run(
        {"Politeness": [0.7]}, dataset=run.dataset, judge=run.judge, retry_of=run, positions=[1]
    )
    kept = build_run({"Politeness": [0.1]})
    response = api.delete(f"{RUNS}{run.pk}/")
    assert response.status_code == 200, response.content
    assert response.json() == {"runs": [run.pk, retry.pk], "items": 3, "scores": 2, "share_links": 0}
    assert list(Run.objects.values_list("pk", flat=True)) == [kept.pk]
    assert_problem(api.get(f"{RUNS}{run.pk}/"), 404)


# --- Items --------------------------------------------------------------------------------------------


def items_run() -> Run:
    run = build_run(
        {"Politeness": [0.9, 0.2, None, 0.6, 0.4], "Concision": [0.5, 0.5, None, 0.1, 1.0]},
        metadata=lambda position: {"lang": "de" if position % 2 else "en"},
    )
    Example.objects.filter(dataset=run.dataset, position=0).update(input_key="k:case-0")
    return run


def test_items_carry_their_row_key_and_scores_in_the_runs_order(api: Client) -> None:
    run = items_run()
    body = api.get(f"{RUNS}{run.pk}/items/?sort=position&limit=2").json()
    first, second = body["items"]
    assert first["position"] == 1 and second["position"] == 2
    assert first["key"] == "case-0" and second["key"] == ""  # a row paired by its inputs has no key
    assert first["request"] == "How do I reset my password? (row 0)"
    assert first["metadata"] == {"lang": "en"} and first["status"] == "completed" and first["error"] == ""
    assert first["scores"] == [
        {"evaluator": "Politeness", "score": 0.9, "justification": "Politeness: 0.9"},
        {"evaluator": "Concision", "score": 0.5, "justification": "Concision: 0.5"},
    ]


def test_items_page_through_a_filtered_and_sorted_view(api: Client) -> None:
    run = items_run()

    def walk(query: str) -> list[int]:
        positions: list[int] = []
        cursor = ""
        for _ in range(10):
            response = api.get(f"{RUNS}{run.pk}/items/?{query}&limit=2{cursor}")
            assert response.status_code == 200, response.content
            body = response.json()
            assert len(body["items"]) <= 2
            positions += [item["position"] for item in body["items"]]
            if body["next_cursor"] is None:
                return positions
            cursor = f"&cursor={body['next_cursor']}"
        raise AssertionError("the pages did not end")

    assert walk("sort=position") == [1, 2, 3, 4, 5]
    # Best Politeness first; the failed row (no score) comes last.
    assert walk("sort=-score:Politeness") == [1, 4, 5, 2, 3]
    assert walk("sort=score:Concision&meta.lang=de") == [4, 2]
    assert walk("status=failed") == [3]
    assert walk("sort=position&min.Politeness=0.5") == [1, 4]
    # The page's default view of a finished run: the first evaluator's score, worst first.
    assert walk("") == [2, 5, 4, 1, 3]
    # An unknown sort is ignored, as on the page.
    assert walk("sort=score:Nope") == walk("")


@pytest.mark.parametrize("query", ["limit=0", "limit=1000", "limit=x", "cursor=garbage", "cursor=e30"])
def test_bad_item_parameters_are_a_422(api: Client, query: str) -> None:
    run = items_run()
    field = query.split("=")[0]
    assert_problem(api.get(f"{RUNS}{run.pk}/items/?{query}"), 422, field)


def test_a_cursor_of_another_sort_is_a_422_not_a_silent_first_page(api: Client) -> None:
    run = items_run()
    cursor = api.get(f"{RUNS}{run.pk}/items/?sort=position&limit=2").json()["next_cursor"]
    assert api.get(f"{RUNS}{run.pk}/items/?sort=position&limit=2&cursor={cursor}").status_code == 200
    assert_problem(api.get(f"{RUNS}{run.pk}/items/?sort=score:Politeness&cursor={cursor}"), 422, "cursor")


# --- Exports ------------------------------------------------------------------------------------------


def streamed(response: Any) -> str:
    return b"".join(response.streaming_content).decode()


def test_the_csv_export_streams_the_runs_rows_in_row_order(api: Client) -> None:
    run = items_run()
    response = api.get(f"{RUNS}{run.pk}/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="docket-run-{run.pk}.csv"'
    rows = list(csv.DictReader(io.StringIO(streamed(response))))
    assert [row["position"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert (
        rows[0]["lang"] == "en"
        and rows[0]["key"] == "case-0"
        and rows[3]["Politeness score"] == "0.6"
        and rows[2]["status"] == "failed"
    )


def test_the_jsonl_export_takes_the_items_filters(api: Client) -> None:
    run = items_run()
    response = api.get(f"{RUNS}{run.pk}/export.jsonl?status=completed&sort=-score:Concision")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="docket-run-{run.pk}-filtered.jsonl"'
    records = [json.loads(line) for line in streamed(response).splitlines()]
    # Ties (rows 1 and 2 both 0.5) follow the sort's direction too, as on the page.
    assert [record["position"] for record in records] == [5, 2, 1, 4]
    assert records[0]["scores"]["Concision"] == {"score": 1.0, "justification": "Concision: 1.0"}


# --- Who may do what, and what is not there -----------------------------------------------------------


def test_a_read_token_reads_runs_but_changes_none(api: Client, reader: Client) -> None:
    run = build_run({"Politeness": [0.5, None]})
    for path in (
        f"{RUNS}{run.pk}/",
        f"{RUNS}{run.pk}/status/",
        f"{RUNS}{run.pk}/items/",
        f"{RUNS}{run.pk}/retry/",
    ):
        assert reader.get(path).status_code == 200, path
    for response in (
        post(reader, RUNS, {"dataset_id": run.dataset_id, "judge": run.judge.name}),
        post(reader, f"{RUNS}{run.pk}/cancel/"),
        post(reader, f"{RUNS}{run.pk}/retry/"),
        reader.delete(f"{RUNS}{run.pk}/"),
    ):
        assert_problem(response, 403)
    assert Run.objects.count() == 1


@pytest.mark.parametrize("run_id", ["999999", "0", "99999999999999999999"])
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("get", ""),
        ("get", "status/"),
        ("get", "items/"),
        ("get", "retry/"),
        ("get", "export.csv"),
        ("get", "export.jsonl"),
        ("post", "cancel/"),
        ("post", "retry/"),
        ("delete", ""),
    ],
)
def test_an_unknown_run_is_a_404_problem(api: Client, run_id: str, method: str, suffix: str) -> None:
    build_run({"Politeness": [0.5]})
    response = getattr(api, method)(f"{RUNS}{run_id}/{suffix}", content_type="application/json")
    assert_problem(response, 404)


@pytest.mark.parametrize("run_id", ["seven", "-3", "1.5"])
def test_a_run_id_that_is_not_a_number_names_no_run(api: Client, run_id: str) -> None:
    build_run({"Politeness": [0.5]})
    assert api.get(f"{RUNS}{run_id}/").status_code == 404
