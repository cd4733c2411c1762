"""Cost and spending caps through the API: a run's cost, its items', starting a run with an evaluator set,
a project and a cap, raising the cap, and the cost per item in a comparison."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import BackoffKind, Dataset, Item, Judge, Run
from evals.pump import pump
from tests.conftest import SUPPORT_JUDGE
from tests.factories import build_run

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"
PROJECT = "0f8fad5b-d9cb-469f-a165-70867728950e"


def post(api: Client, path: str, body: dict[str, Any]) -> Any:
    return api.post(path, body, content_type="application/json")


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    if field is not None:
        assert field in {error["field"] for error in body["errors"] or []}, body
    return body


def costed(run: Run, shares: dict[str, float], *, paused_at: float | None = None) -> Run:
    """Costs as the pump records them, on every item and summed on the run; optionally paused at a cap."""
    items = list(run.items.all())
    for item in items:
        item.cost, item.evaluator_costs = sum(shares.values()), dict(shares)
    Item.objects.bulk_update(items, ["cost", "evaluator_costs"])
    update: dict[str, Any] = {
        "cost_total": sum(shares.values()) * len(items),
        "cost_items": len(items),
        "cost_by_evaluator": {name: value * len(items) for name, value in shares.items()},
    }
    if paused_at is not None:
        update.update(
            status=Run.Status.RUNNING,
            max_cost=paused_at,
            backoff_kind=BackoffKind.BUDGET,
            backoff_reason=f"Paused: budget reached at ${paused_at:.4f} of ${paused_at:.4f}",
        )
    Run.objects.filter(pk=run.pk).update(**update)
    run.refresh_from_db()
    return run


def test_a_run_says_what_it_cost_per_item_and_per_evaluator(api: Client) -> None:
    run = costed(build_run({"Politeness": [0.9, 0.4, 0.8, 0.2]}), {"Politeness": 0.0125})
    body = api.get(f"{RUNS}{run.pk}/").json()
    # 4 items at $0.0125: $0.05, $0.0125 per item.
    assert body["cost_total"] == pytest.approx(0.05)
    assert body["cost_items"] == 4
    assert body["cost_per_item"] == pytest.approx(0.0125)
    assert body["cost_by_evaluator"] == {"Politeness": pytest.approx(0.05)}
    assert (body["max_cost"], body["budget_paused"]) == (None, False)
    assert (body["evaluator_ids"], body["project_id"]) == ([], "")
    listed = api.get(RUNS).json()["items"][0]
    assert listed["cost_per_item"] == pytest.approx(0.0125)


def test_a_run_without_known_cost_has_no_cost_per_item(api: Client) -> None:
    body = api.get(f"{RUNS}{build_run({'Politeness': [0.5]}).pk}/").json()
    assert (body["cost_total"], body["cost_items"], body["cost_per_item"]) == (0.0, 0, None)


def test_items_carry_their_cost(api: Client) -> None:
    run = costed(
        build_run({"Politeness": [0.9], "Concision": [0.5]}), {"Politeness": 0.01, "Concision": 0.02}
    )
    [item] = api.get(f"{RUNS}{run.pk}/items/").json()["items"]
    assert item["cost"] == pytest.approx(0.03)
    assert item["evaluator_costs"] == {"Politeness": pytest.approx(0.01), "Concision": pytest.approx(0.02)}


# --- Starting a run ------------------------------------------------------------------------------------


def test_a_run_can_start_with_an_evaluator_set_a_project_and_a_cap(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    by_name = {evaluator["name"]: evaluator["id"] for evaluator in judge.evaluators}
    response = post(
        api,
        RUNS,
        {
            "dataset_id": make_dataset(6).pk,
            "judge": SUPPORT_JUDGE,
            # One by id, one by name.
            "evaluator_ids": [by_name["Politeness"], "Concision"],
            "project_id": PROJECT,
            "max_cost": 2.5,
        },
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["evaluator_ids"] == [by_name["Politeness"], by_name["Concision"]]
    assert body["evaluator_names"] == ["Politeness", "Concision"]
    assert (body["project_id"], body["max_cost"]) == (PROJECT, 2.5)


def test_an_unknown_evaluator_is_a_422_naming_the_field(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    response = post(
        api, RUNS, {"dataset_id": make_dataset(2).pk, "judge": SUPPORT_JUDGE, "evaluator_ids": ["Tone"]}
    )
    assert_problem(response, 422, "evaluator_ids")
    assert not Run.objects.exists()


@pytest.mark.parametrize("max_cost", [0, -1, "lots"])
def test_a_cap_that_is_not_a_positive_amount_is_a_422(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset], max_cost: object
) -> None:
    response = post(
        api, RUNS, {"dataset_id": make_dataset(2).pk, "judge": SUPPORT_JUDGE, "max_cost": max_cost}
    )
    body = assert_problem(response, 422)
    assert "max_cost" in str(body)
    assert not Run.objects.exists()


def test_the_default_cap_applies_unless_the_request_sends_null(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: SettingsWrapper
) -> None:
    settings.DOCKET_DEFAULT_MAX_COST = 7.0
    dataset = make_dataset(2)
    defaulted = post(api, RUNS, {"dataset_id": dataset.pk, "judge": SUPPORT_JUDGE}).json()
    uncapped = post(api, RUNS, {"dataset_id": dataset.pk, "judge": SUPPORT_JUDGE, "max_cost": None}).json()
    assert (defaulted["max_cost"], uncapped["max_cost"]) == (7.0, None)


def test_a_run_of_an_evaluator_set_costs_what_its_items_cost(
    api: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    # End to end on the offline judge: the pump reads each batch's logs and adds up their costs.
    body = post(
        api,
        RUNS,
        {
            "dataset_id": make_dataset(7).pk,
            "judge": SUPPORT_JUDGE,
            "evaluator_ids": ["Politeness", "Concision"],
            "batch_size": 3,
        },
    ).json()
    for _ in range(20):
        pump(budget_seconds=30, requeue=False)
        if Run.objects.get(pk=body["id"]).is_finished:
            break
    run = Run.objects.get(pk=body["id"])
    assert run.status == Run.Status.COMPLETED
    body = api.get(f"{RUNS}{run.pk}/").json()
    items = list(run.items.all())
    assert body["cost_items"] == 7
    assert body["cost_total"] == pytest.approx(sum(item.cost or 0.0 for item in items))
    assert body["cost_total"] > 0
    assert body["cost_per_item"] == pytest.approx(body["cost_total"] / 7)
    assert set(body["cost_by_evaluator"]) == {"Politeness", "Concision"}
    assert sum(body["cost_by_evaluator"].values()) == pytest.approx(body["cost_total"])


# --- Raising the cap -----------------------------------------------------------------------------------


def paused() -> Run:
    return costed(build_run({"Politeness": [0.9, 0.4, 0.8, 0.2]}), {"Politeness": 0.0125}, paused_at=0.05)


def test_raising_the_cap_resumes_a_paused_run(api: Client) -> None:
    run = paused()
    assert api.get(f"{RUNS}{run.pk}/").json()["budget_paused"] is True
    response = post(api, f"{RUNS}{run.pk}/budget/", {"max_cost": 0.2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["max_cost"], body["budget_paused"], body["backoff_reason"]) == (0.2, False, "")


def test_null_removes_the_cap(api: Client) -> None:
    run = paused()
    body = post(api, f"{RUNS}{run.pk}/budget/", {"max_cost": None}).json()
    assert (body["max_cost"], body["budget_paused"]) == (None, False)


def test_a_cap_below_what_was_spent_is_a_422_naming_max_cost(api: Client) -> None:
    run = paused()
    body = assert_problem(post(api, f"{RUNS}{run.pk}/budget/", {"max_cost": 0.01}), 422, "max_cost")
    assert "$0.0500" in body["detail"]
    run.refresh_from_db()
    assert run.max_cost == 0.05 and run.backoff_kind == BackoffKind.BUDGET


@pytest.mark.parametrize("payload", [{}, {"max_cost": 0}, {"max_cost": -1}, {"max_cost": 1, "cap": 2}])
def test_a_missing_or_bad_cap_is_a_422(api: Client, payload: dict[str, Any]) -> None:
    run = paused()
    assert_problem(post(api, f"{RUNS}{run.pk}/budget/", payload), 422)
    run.refresh_from_db()
    assert run.max_cost == 0.05


def test_a_finished_run_takes_no_cap_and_an_unknown_one_is_404(api: Client) -> None:
    run = build_run({"Politeness": [0.5]})
    assert_problem(post(api, f"{RUNS}{run.pk}/budget/", {"max_cost": 1}), 409)
    assert_problem(post(api, f"{RUNS}999999/budget/", {"max_cost": 1}), 404)


def test_a_read_token_cannot_raise_a_cap(reader: Client) -> None:
    run = paused()
    assert_problem(post(reader, f"{RUNS}{run.pk}/budget/", {"max_cost": 1}), 403)
    run.refresh_from_db()
    assert run.max_cost == 0.05


# --- Compare -------------------------------------------------------------------------------------------


def test_compare_gives_the_cost_per_item_of_both_runs_and_the_change(api: Client) -> None:
    a = costed(build_run({"Politeness": [0.9, 0.4]}), {"Politeness": 0.01})
    b = costed(build_run({"Politeness": [0.8, 0.5]}, dataset=a.dataset, judge=a.judge), {"Politeness": 0.004})
    Run.objects.filter(pk=b.pk).update(evaluator_ids=["ev-polite"])
    body = api.get(f"/api/v1/compare/?a={a.pk}&b={b.pk}").json()
    # $0.004 - $0.01 = -$0.006 per item: B is cheaper.
    assert body["cost"]["per_item_a"] == pytest.approx(0.01)
    assert body["cost"]["per_item_b"] == pytest.approx(0.004)
    assert body["cost"]["per_item_change"] == pytest.approx(-0.006)
    assert (body["a"]["evaluator_ids"], body["b"]["evaluator_ids"]) == ([], ["ev-polite"])
    assert any("different evaluator sets" in warning for warning in body["warnings"])
