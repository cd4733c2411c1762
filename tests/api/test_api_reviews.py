"""The review and calibration API: review a score by position (201, then 200 on replacing), list reviews,
the calibration report per evaluator with the judge's verdict at the run's threshold, the calibration set."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from evals.models import ApiToken, Item, Review, Run
from evals.services.reviews import review_save
from evals.services.tokens import api_token_create
from tests.factories import build_run

pytestmark = pytest.mark.django_db


def reviews_url(run: Run) -> str:
    return f"/api/v1/runs/{run.pk}/reviews/"


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, body, content_type="application/json")


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert field in {error["field"] for error in body["errors"]}, body
    return body


def person(name: str) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username=name, password="a-long-test-password")


def client_of(user: AbstractBaseUser, scope: str = ApiToken.Scope.WRITE) -> Client:
    _token, secret = api_token_create(user=user, name=f"{user.get_username()} token", scope=scope)  # type: ignore[arg-type]
    return Client(HTTP_AUTHORIZATION=f"Bearer {secret}")


def review(run: Run, position: int, evaluator: str, who: AbstractBaseUser, label: str, **kw: Any) -> Review:
    item = Item.objects.get(run=run, position=position - 1)
    saved, _ = review_save(item=item, evaluator=evaluator, reviewer=who, label=label, **kw)
    return saved


@pytest.fixture
def run() -> Run:
    # Politeness passes at 0.7 in this run; Accuracy at the default 0.5 and did not score row 3.
    return build_run(
        {"Politeness": [0.7, 0.69, 0.9], "Accuracy": [0.4, 0.8, None]}, thresholds={"Politeness": 0.7}
    )


# --- Posting a review ---------------------------------------------------------------------------------


def test_posting_a_review_creates_it_for_the_token_s_user_then_replaces_it(
    api: Client, run: Run, user: AbstractBaseUser
) -> None:
    # The position is the one GET items answers for the row.
    listed = api.get(f"/api/v1/runs/{run.pk}/items/?sort=position").json()["items"]
    second = listed[1]
    assert second["position"] == 2
    response = post(
        api,
        reviews_url(run),
        {"position": 2, "evaluator": "Politeness", "label": "pass", "score": 0.8, "comment": " Polite. "},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    saved = Review.objects.get()
    assert saved.item_id == second["id"] and saved.reviewer == user and saved.run == run
    assert body["id"] == saved.pk and body["item"] == second["id"] and body["run"] == run.pk
    assert (body["position"], body["evaluator"], body["label"], body["score"]) == (
        2,
        "Politeness",
        "pass",
        0.8,
    )
    assert (body["comment"], body["reviewer"]) == ("Polite.", "ada")
    # The judge's 0.69 is under this run's Politeness threshold of 0.7.
    assert (body["judge_score"], body["judge_label"]) == (0.69, "fail")

    again = post(api, reviews_url(run), {"position": 2, "evaluator": "Politeness", "label": "fail"})
    assert again.status_code == 200, again.content
    assert again.json()["id"] == saved.pk
    replaced = Review.objects.get()
    assert (replaced.label, replaced.score, replaced.comment) == ("fail", None, "")


def test_another_reviewer_s_review_of_the_same_score_is_kept_beside_mine(api: Client, run: Run) -> None:
    bob = client_of(person("bob"))
    assert (
        post(api, reviews_url(run), {"position": 1, "evaluator": "Politeness", "label": "pass"}).status_code
        == 201
    )
    assert (
        post(bob, reviews_url(run), {"position": 1, "evaluator": "Politeness", "label": "fail"}).status_code
        == 201
    )
    assert sorted(Review.objects.values_list("reviewer_name", "label")) == [("ada", "pass"), ("bob", "fail")]


def test_an_unknown_position_is_a_404_naming_it(api: Client, run: Run) -> None:
    body = assert_problem(
        post(api, reviews_url(run), {"position": 4, "evaluator": "Politeness", "label": "pass"}),
        404,
        "position",
    )
    assert "position 4" in body["detail"]
    assert_problem(
        post(
            api, "/api/v1/runs/999999/reviews/", {"position": 1, "evaluator": "Politeness", "label": "pass"}
        ),
        404,
    )
    assert not Review.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"position": 1, "evaluator": "Tone", "label": "pass"}, "evaluator"),  # not the run's evaluator
        ({"position": 3, "evaluator": "Accuracy", "label": "pass"}, "evaluator"),  # gave row 3 no score
        ({"position": 1, "evaluator": "Politeness", "label": "maybe"}, "label"),
        ({"position": 1, "evaluator": "Politeness", "label": "pass", "score": 1.5}, "score"),
        ({"position": 1, "evaluator": "Politeness", "label": "pass", "score": -0.1}, "score"),
        ({"position": 1, "evaluator": "Politeness", "label": "pass", "comment": "x" * 4001}, "comment"),
        ({"position": 1, "evaluator": "Politeness", "label": "pass", "comment": "a\x00b"}, "comment"),
        ({"position": 0, "evaluator": "Politeness", "label": "pass"}, "position"),
        ({"position": 2**31 + 1, "evaluator": "Politeness", "label": "pass"}, "position"),
        ({"position": 1, "evaluator": "Politeness", "lable": "pass"}, "lable"),
        ({"evaluator": "Politeness", "label": "pass"}, "position"),
    ],
)
def test_a_review_that_cannot_be_saved_is_a_422_naming_the_field(
    api: Client, run: Run, body: dict[str, Any], field: str
) -> None:
    assert_problem(post(api, reviews_url(run), body), 422, field)
    assert not Review.objects.exists()


def test_the_service_s_refusal_keeps_its_message(api: Client, run: Run) -> None:
    response = post(api, reviews_url(run), {"position": 3, "evaluator": "Accuracy", "label": "pass"})
    message = '"Accuracy" gave this item no score: there is nothing to review.'
    assert assert_problem(response, 422)["errors"] == [{"field": "evaluator", "message": message}]


def test_only_a_write_token_may_review(reader: Client, logged_in: Client, client: Client, run: Run) -> None:
    body = {"position": 1, "evaluator": "Politeness", "label": "pass"}
    assert_problem(post(reader, reviews_url(run), body), 403)
    assert_problem(post(logged_in, reviews_url(run), body), 403)
    assert_problem(post(Client(), reviews_url(run), body), 401)
    assert not Review.objects.exists()


# --- Listing reviews ----------------------------------------------------------------------------------


def test_reviews_are_listed_newest_first_a_page_at_a_time_with_the_judge_s_verdict(
    reader: Client, run: Run
) -> None:
    ada, bob = person("ann"), person("bob")
    first = review(run, 1, "Politeness", ada, "fail", comment="Curt.")
    second = review(run, 1, "Accuracy", bob, "pass", score=0.9)
    third = review(run, 2, "Politeness", bob, "pass")
    other = build_run({"Politeness": [0.5]})
    review(other, 1, "Politeness", ada, "pass")  # another run's: never listed here

    page = reader.get(reviews_url(run) + "?limit=2").json()
    assert [row["id"] for row in page["items"]] == [third.pk, second.pk]
    rest = reader.get(reviews_url(run) + f"?limit=2&cursor={page['next_cursor']}").json()
    assert [row["id"] for row in rest["items"]] == [first.pk] and rest["next_cursor"] is None
    row = rest["items"][0]
    assert (row["position"], row["evaluator"], row["label"], row["reviewer"], row["comment"]) == (
        1,
        "Politeness",
        "fail",
        "ann",
        "Curt.",
    )
    # 0.7 reaches the run's Politeness threshold of 0.7: the judge said pass, the reviewer fail.
    assert (row["judge_score"], row["judge_label"]) == (0.7, "pass")
    assert row["created_at"] and row["updated_at"]


def test_reviews_filter_by_evaluator_and_reviewer(reader: Client, run: Run) -> None:
    ann, bob = person("ann"), person("bob")
    review(run, 1, "Politeness", ann, "fail")
    review(run, 1, "Accuracy", bob, "pass")
    review(run, 2, "Politeness", bob, "pass")

    def listed(query: str) -> list[tuple[int, str, str]]:
        rows = reader.get(reviews_url(run) + query).json()["items"]
        return sorted((row["position"], row["evaluator"], row["reviewer"]) for row in rows)

    assert listed("?evaluator=Politeness") == [(1, "Politeness", "ann"), (2, "Politeness", "bob")]
    assert listed("?reviewer=bob") == [(1, "Accuracy", "bob"), (2, "Politeness", "bob")]
    assert listed("?reviewer=bob&evaluator=Accuracy") == [(1, "Accuracy", "bob")]
    assert listed("?evaluator=Tone") == []


def test_listing_refuses_a_bad_cursor_and_limit_and_an_unknown_run(reader: Client, run: Run) -> None:
    assert_problem(reader.get(reviews_url(run) + "?cursor=abc"), 422, "cursor")
    assert_problem(reader.get(reviews_url(run) + "?limit=0"), 422, "limit")
    assert_problem(reader.get("/api/v1/runs/999999/reviews/"), 404)
    assert_problem(reader.get(reviews_url(run) + "?reviewer=" + "x" * 151), 422, "reviewer")


# --- The calibration report ---------------------------------------------------------------------------


def reviewed_six(run: Run, who: AbstractBaseUser) -> None:
    for position, label in enumerate(["pass", "pass", "fail", "fail", "fail", "pass"], start=1):
        review(run, position, "Politeness", who, label)


def test_the_calibration_report_counts_the_judge_against_the_reviewers(reader: Client) -> None:
    # Threshold 0.5 (default). Judge: pass pass fail fail pass fail; reviewer: pass pass fail fail fail pass.
    # pp = 2 (rows 1, 2), pf = 1 (row 5), fp = 1 (row 6), ff = 2 (rows 3, 4); n = 6.
    # accuracy = 4/6; pe = (3/6)(3/6) + (3/6)(3/6) = 0.5; kappa = (4/6 - 0.5) / (1 - 0.5) = 1/3.
    run = build_run({"Politeness": [0.9, 0.8, 0.3, 0.2, 0.6, 0.1], "Accuracy": [0.5] * 6})
    reviewed_six(run, person("ann"))
    response = reader.get(f"/api/v1/runs/{run.pk}/calibration/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["run"], body["pooled"], body["runs"]) == (run.pk, False, [run.pk])
    (politeness,) = [found for found in body["evaluators"] if found["name"] == "Politeness"]
    assert (politeness["reviewed"], politeness["reviews"], politeness["reviewers"]) == (6, 6, 1)
    assert politeness["confusion"] == {
        "judge_pass_human_pass": 2,
        "judge_pass_human_fail": 1,
        "judge_fail_human_pass": 1,
        "judge_fail_human_fail": 2,
    }
    assert politeness["accuracy"] == pytest.approx(4 / 6)
    assert politeness["kappa"] == pytest.approx(1 / 3)
    assert politeness["kappa_ci_low"] <= politeness["kappa"] <= politeness["kappa_ci_high"]
    assert politeness["accuracy_ci_low"] <= politeness["accuracy"] <= politeness["accuracy_ci_high"]
    assert (politeness["corrected"], politeness["mae"], politeness["spearman"]) == (0, None, None)
    assert politeness["reviewer_kappa"] is None


def test_the_calibration_report_judges_at_the_run_s_own_threshold(reader: Client) -> None:
    # At 0.7 the judge's 0.7 passes and 0.69 fails; the reviewer agrees on both: accuracy 1.
    run = build_run({"Politeness": [0.7, 0.69]}, thresholds={"Politeness": 0.7})
    ann = person("ann")
    review(run, 1, "Politeness", ann, "pass")
    review(run, 2, "Politeness", ann, "fail")
    (politeness,) = reader.get(f"/api/v1/runs/{run.pk}/calibration/").json()["evaluators"]
    assert politeness["confusion"]["judge_pass_human_pass"] == 1
    assert politeness["confusion"]["judge_fail_human_fail"] == 1
    assert politeness["accuracy"] == 1.0


def test_the_calibration_report_gives_error_and_rank_agreement_and_reviewer_agreement(
    reader: Client,
) -> None:
    run = build_run({"Politeness": [0.9, 0.2, 0.6]})
    ann, bob = person("ann"), person("bob")
    # Ann corrects all three: |0.9 - 0.8| + |0.2 - 0.4| + |0.6 - 0.6| = 0.3, MAE = 0.3 / 3 = 0.1;
    # the corrected scores rank the rows as the judge does (2 < 3 < 1): rho = 1.
    review(run, 1, "Politeness", ann, "pass", score=0.8)
    review(run, 2, "Politeness", ann, "fail", score=0.4)
    review(run, 3, "Politeness", ann, "pass", score=0.6)
    # Bob agrees with Ann on rows 1 and 2: Fleiss over 2 items of 2 raters, P = 1, Pe = 0.5^2 + 0.5^2
    # = 0.5 (two passes, two fails), kappa = (1 - 0.5) / (1 - 0.5) = 1.
    review(run, 1, "Politeness", bob, "pass")
    review(run, 2, "Politeness", bob, "fail")
    (politeness,) = reader.get(f"/api/v1/runs/{run.pk}/calibration/").json()["evaluators"]
    assert (politeness["reviewed"], politeness["reviews"], politeness["reviewers"]) == (3, 5, 2)
    assert politeness["corrected"] == 3
    assert politeness["mae"] == pytest.approx(0.1)
    assert politeness["mae_ci_low"] <= politeness["mae"] <= politeness["mae_ci_high"]
    assert politeness["spearman"] == pytest.approx(1.0)
    assert (politeness["reviewer_items"], politeness["reviewer_kappa"]) == (2, pytest.approx(1.0))


def test_pooled_calibration_counts_every_run_of_the_judge_and_says_which(reader: Client) -> None:
    ann = person("ann")
    run = build_run({"Politeness": [0.9, 0.8, 0.3, 0.2, 0.6, 0.1]})
    reviewed_six(run, ann)
    later = build_run({"Politeness": [0.9, 0.1]}, judge=run.judge)
    review(later, 1, "Politeness", ann, "pass")  # judge pass, human pass
    review(later, 2, "Politeness", ann, "pass")  # judge fail, human pass
    stranger = build_run({"Politeness": [0.9]})
    review(stranger, 1, "Politeness", ann, "fail")  # another judge's: never pooled here

    body = reader.get(f"/api/v1/runs/{run.pk}/calibration/?pooled=true").json()
    assert (body["pooled"], body["runs"]) == (True, [run.pk, later.pk])
    (politeness,) = body["evaluators"]
    # 2 + 1 = 3 agreements on pass, 1 + 1 = 2 judge-fail-human-pass: 8 reviews.
    assert politeness["confusion"] == {
        "judge_pass_human_pass": 3,
        "judge_pass_human_fail": 1,
        "judge_fail_human_pass": 2,
        "judge_fail_human_fail": 2,
    }
    assert politeness["reviewed"] == 8 and politeness["accuracy"] == pytest.approx(5 / 8)
    alone = reader.get(f"/api/v1/runs/{run.pk}/calibration/").json()
    assert alone["runs"] == [run.pk] and alone["evaluators"][0]["reviewed"] == 6


def test_calibration_of_an_unknown_run_is_a_404_and_a_bad_flag_a_422(reader: Client, run: Run) -> None:
    assert_problem(reader.get("/api/v1/runs/999999/calibration/"), 404)
    assert_problem(reader.get(f"/api/v1/runs/{run.pk}/calibration/?pooled=perhaps"), 422, "pooled")


# --- The calibration set ------------------------------------------------------------------------------


def streamed(response: Any) -> str:
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_the_calibration_set_streams_as_csv_with_the_human_label(reader: Client, run: Run) -> None:
    ann = person("ann")
    review(run, 2, "Politeness", ann, "pass", score=0.8, comment="=fine")
    review(run, 1, "Accuracy", ann, "fail")
    response = reader.get(reviews_url(run) + "export.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"] == f'attachment; filename="docket-run-{run.pk}-calibration-set.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(streamed(response), newline="")))
    assert [
        (row["position"], row["evaluator"], row["human_label"], row["expected_score"]) for row in rows
    ] == [
        ("1", "Accuracy", "fail", "0.0"),
        ("2", "Politeness", "pass", "0.8"),
    ]
    assert (rows[1]["judge_score"], rows[1]["judge_label"], rows[1]["comment"]) == ("0.69", "fail", "'=fine")


def test_the_calibration_set_as_jsonl_pooled_and_for_one_evaluator(reader: Client, run: Run) -> None:
    ann = person("ann")
    review(run, 1, "Politeness", ann, "fail")
    review(run, 1, "Accuracy", ann, "pass")
    later = build_run({"Politeness": [0.3]}, judge=run.judge)
    review(later, 1, "Politeness", ann, "pass")
    response = reader.get(reviews_url(run) + "export.jsonl?pooled=true&evaluator=Politeness")
    assert response["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="docket-judge-{run.judge_id}-hand-judge-politeness-calibration-set.jsonl"'
    )
    records = [json.loads(line) for line in streamed(response).splitlines()]
    assert [(record["run"], record["evaluator"], record["human_label"]) for record in records] == [
        (run.pk, "Politeness", "fail"),
        (later.pk, "Politeness", "pass"),
    ]
    only_this_run = streamed(reader.get(reviews_url(run) + "export.jsonl?evaluator=Politeness"))
    assert [json.loads(line)["run"] for line in only_this_run.splitlines()] == [run.pk]


def test_the_calibration_set_refuses_an_evaluator_no_run_has(reader: Client, run: Run) -> None:
    body = assert_problem(reader.get(reviews_url(run) + "export.csv?evaluator=Tone"), 422, "evaluator")
    assert "Politeness, Accuracy" in body["detail"]
    assert_problem(reader.get("/api/v1/runs/999999/reviews/export.jsonl"), 404)


def test_the_schema_documents_both_answers_of_posting_a_review(client: Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    post_review = document["paths"]["/api/v1/runs/{run_id}/reviews/"]["post"]
    assert {"200", "201", "403", "404", "422"} <= set(post_review["responses"])
    assert post_review["operationId"] == "review_save"
    assert post_review["tags"] == ["Review and calibration"]
    body = document["components"]["schemas"]["ReviewIn"]
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"position", "evaluator", "label"}


def test_compare_and_exports_take_corrected() -> None:
    a = build_run({"Politeness": [0.8, 0.8]}, thresholds={"Politeness": 0.5})
    b = build_run(
        {"Politeness": [0.8, 0.8]}, dataset=a.dataset, judge=a.judge, thresholds={"Politeness": 0.5}
    )
    rita = person("rita")
    review(b, 1, "Politeness", rita, "fail", score=0.1)
    reader = client_of(rita, ApiToken.Scope.READ)

    judge = reader.get(f"/api/v1/compare/?a={a.pk}&b={b.pk}").json()
    corrected = reader.get(f"/api/v1/compare/?a={a.pk}&b={b.pk}&corrected=true").json()
    assert (judge["corrected"], judge["evaluators"][0]["pass_to_fail"]) == (False, 0)
    assert (corrected["corrected"], corrected["evaluators"][0]["pass_to_fail"]) == (True, 1)
    assert corrected["evaluators"][0]["reviewed_b"] == 1

    response = reader.get(f"/api/v1/runs/{b.pk}/export.csv?corrected=true")
    assert "corrected" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode(), newline="")))
    assert [row["Politeness corrected score"] for row in rows] == ["0.1", "0.8"]
    assert [row["Politeness human label"] for row in rows] == ["fail", ""]
