"""Run options of issue 14: evaluator sets, the project, the spending cap, custom judge inputs, the
cost estimate before a run, and what retries and noise checks take from the run they re-judge."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Example, Judge, Run, Score
from evals.services.retry import run_retry
from evals.services.run_options import RunError, custom_inputs, evaluator_set, judge_inputs, run_preflight
from evals.services.runs import run_create
from tests.conftest import RAG_JUDGE, SUPPORT_JUDGE
from tests.factories import build_run, make_judge, pump_until_finished

pytestmark = pytest.mark.django_db

PROJECT = "0f8fad5b-d9cb-469f-a165-70867728950e"


def hand_judge(**fields: object) -> Judge:
    """A judge with remote evaluator ids, as a sync stores them."""
    judge = make_judge("Hand judge")
    judge.evaluators = [
        {"id": "ev-a", "name": "Accuracy"},
        {"id": "ev-b", "name": "Brevity"},
        {"id": "ev-c", "name": "Courtesy"},
    ]
    for name, value in fields.items():
        setattr(judge, name, value)
    judge.save()
    return judge


# --- Evaluator sets ------------------------------------------------------------------------------


def test_an_evaluator_set_keeps_the_judges_order_whatever_order_it_was_named_in() -> None:
    judge = hand_judge()
    # Named by id and by name in any case; the set lists them as the judge does.
    chosen = evaluator_set(judge=judge, chosen=["courtesy", "ev-a"])
    assert (chosen.ids, chosen.names) == (["ev-a", "ev-c"], ["Accuracy", "Courtesy"])


def test_choosing_every_evaluator_or_none_is_the_whole_judge() -> None:
    judge = hand_judge()
    for chosen in (["ev-a", "ev-b", "ev-c"], [], None):
        found = evaluator_set(judge=judge, chosen=chosen)
        assert found.whole_judge and found.names == ["Accuracy", "Brevity", "Courtesy"]


def test_an_evaluator_the_judge_lacks_is_refused_and_the_judges_are_listed(
    make_dataset: Callable[..., Dataset],
) -> None:
    judge = hand_judge()
    with pytest.raises(RunError) as caught:
        run_create(dataset=make_dataset(2), judge=judge, evaluator_ids=["ev-a", "Fluency"])
    assert caught.value.field == "evaluator_ids"
    assert '"Fluency" is not an evaluator of Hand judge' in str(caught.value)
    assert "Accuracy, Brevity, Courtesy" in str(caught.value)
    assert not Run.objects.exists()


def test_a_run_with_an_evaluator_set_stores_the_ids_and_only_those_evaluators(
    make_dataset: Callable[..., Dataset],
) -> None:
    run = run_create(dataset=make_dataset(3), judge=hand_judge(), evaluator_ids=["ev-b"])
    run.refresh_from_db()
    assert (run.evaluator_ids, run.evaluators) == (["ev-b"], ["Brevity"])


def test_an_evaluator_set_run_is_judged_by_its_evaluators_only_end_to_end(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    # The RAG judge needs contexts, which these rows lack: the whole judge cannot start on them. Request
    # relevance reads only the request and the response, so a set of it alone runs every row.
    judge = judges[RAG_JUDGE]
    dataset = make_dataset(12)
    whole = run_preflight(dataset=dataset, judge=judge)
    assert whole.missing_inputs == ["contexts"] and whole.blocked
    relevance = next(e["id"] for e in judge.evaluators if e["name"] == "Request relevance")
    run = pump_until_finished(run_create(dataset=dataset, judge=judge, evaluator_ids=[relevance]))
    assert (run.status, run.completed_count, run.failed_count) == (Run.Status.COMPLETED, 12, 0)
    names = set(Score.objects.filter(item__run=run).values_list("evaluator_name", flat=True))
    assert names == {"Request relevance"}
    assert Score.objects.filter(item__run=run).count() == 12


# --- Project ---------------------------------------------------------------------------------------


def test_the_project_defaults_to_the_setting_and_may_be_overridden_or_emptied(
    settings: SettingsWrapper, make_dataset: Callable[..., Dataset]
) -> None:
    settings.SCORABLE_PROJECT_ID = PROJECT
    dataset, judge = make_dataset(2), hand_judge()
    assert run_create(dataset=dataset, judge=judge).project_id == PROJECT
    other = "6F1D3C1E-8F0A-5B7E-9A51-0C4E2D7B9A10"
    # Stored in the normal form the API uses (lower case).
    assert run_create(dataset=dataset, judge=judge, project_id=other).project_id == other.lower()
    assert run_create(dataset=dataset, judge=judge, project_id="").project_id == ""


def test_a_project_id_that_is_not_a_uuid_is_refused_naming_the_field(
    settings: SettingsWrapper, make_dataset: Callable[..., Dataset]
) -> None:
    dataset, judge = make_dataset(2), hand_judge()
    with pytest.raises(RunError) as caught:
        run_create(dataset=dataset, judge=judge, project_id="marketing")
    assert caught.value.field == "project_id" and '"marketing" is not a UUID' in str(caught.value)
    # A bad setting says it is the setting.
    settings.SCORABLE_PROJECT_ID = "marketing"
    with pytest.raises(RunError, match="SCORABLE_PROJECT_ID"):
        run_create(dataset=dataset, judge=judge)


# --- Spending cap ----------------------------------------------------------------------------------


def test_the_cap_defaults_to_the_setting_and_none_removes_it(
    settings: SettingsWrapper, make_dataset: Callable[..., Dataset]
) -> None:
    settings.DOCKET_DEFAULT_MAX_COST = 2.5
    dataset, judge = make_dataset(2), hand_judge()
    assert run_create(dataset=dataset, judge=judge).max_cost == 2.5
    assert run_create(dataset=dataset, judge=judge, max_cost=0.75).max_cost == 0.75
    assert run_create(dataset=dataset, judge=judge, max_cost=None).max_cost is None
    settings.DOCKET_DEFAULT_MAX_COST = None
    assert run_create(dataset=dataset, judge=judge).max_cost is None


@pytest.mark.parametrize("cap", [0.0, -1.0, float("nan"), float("inf")])
def test_a_cap_that_is_not_above_zero_is_refused_naming_the_field(
    cap: float, make_dataset: Callable[..., Dataset]
) -> None:
    with pytest.raises(RunError) as caught:
        run_create(dataset=make_dataset(2), judge=hand_judge(), max_cost=cap)
    assert caught.value.field == "max_cost" and "more than $0" in str(caught.value)
    assert not Run.objects.exists()


# --- What retries and noise checks take over -------------------------------------------------------


def test_a_retry_takes_the_evaluator_set_project_and_cap_of_the_run_it_retries(
    settings: SettingsWrapper,
) -> None:
    settings.SCORABLE_PROJECT_ID = ""
    settings.DOCKET_DEFAULT_MAX_COST = 99.0
    judge = hand_judge()
    # Row 1 has no score at all: it failed, and a retry sends it again.
    root = build_run({"Accuracy": [0.9, None], "Courtesy": [0.8, None]}, judge=judge)
    Run.objects.filter(pk=root.pk).update(
        evaluator_ids=["ev-a", "ev-c"], project_id=PROJECT, max_cost=1.5, evaluators=["Accuracy", "Courtesy"]
    )
    root.refresh_from_db()
    retry, created = run_retry(run=root)
    assert created and retry.total_count == 1
    # Not the settings' defaults: the retry's verdicts must be comparable with the root's.
    assert (retry.evaluator_ids, retry.evaluators) == (["ev-a", "ev-c"], ["Accuracy", "Courtesy"])
    assert (retry.project_id, retry.max_cost) == (PROJECT, 1.5)


def test_a_noise_check_repeat_takes_the_evaluator_set_and_project_of_its_source(
    settings: SettingsWrapper,
) -> None:
    settings.DOCKET_DEFAULT_MAX_COST = None
    judge = hand_judge()
    source = build_run({"Brevity": [0.4, 0.6, 0.5]}, judge=judge)
    Run.objects.filter(pk=source.pk).update(
        evaluator_ids=["ev-b"], project_id=PROJECT, evaluators=["Brevity"]
    )
    source.refresh_from_db()
    repeat = run_create(
        dataset=source.dataset,
        judge=judge,
        examples=Example.objects.filter(dataset=source.dataset),
        noise_of=source,
        noise_repeat=1,
    )
    assert (repeat.evaluator_ids, repeat.evaluators, repeat.project_id) == (["ev-b"], ["Brevity"], PROJECT)


# --- Custom inputs and the pre-flight --------------------------------------------------------------


def test_judge_inputs_mark_the_ones_no_batch_input_can_carry() -> None:
    judge = hand_judge(
        inputs={
            "product_name": {"type": "string"},
            "contexts": {"type": "array", "items": {"type": "string"}},
            "response": {"type": "string"},
        }
    )
    listed = [(i.name, i.type, i.standard) for i in judge_inputs(judge)]
    assert listed == [
        ("response", "string", True),
        ("contexts", "array of string", True),
        ("product_name", "string", False),
    ]
    assert custom_inputs(judge) == ["product_name"]


def test_the_preflight_lists_custom_inputs_apart_and_names_a_column_that_looks_like_one(
    make_dataset: Callable[..., Dataset],
) -> None:
    judge = hand_judge(inputs={"response": {"type": "string"}, "Product Name": {"type": "string"}})
    dataset = make_dataset(4)
    dataset.columns = ["question", "answer", "product_name"]
    dataset.save(update_fields=["columns"])
    preflight = run_preflight(dataset=dataset, judge=judge)
    # Only the standard inputs are checked against the rows; the custom one is reported, never "present".
    assert preflight.required_inputs == ["response"]
    assert [(c.name, c.column) for c in preflight.custom_inputs] == [("Product Name", "product_name")]
    # A custom input does not block: the run goes, and the form says what the evaluators will miss.
    assert not preflight.blocked


def test_with_an_evaluator_set_a_missing_input_warns_instead_of_blocking(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[RAG_JUDGE]
    dataset = make_dataset(3)
    relevance = next(e["id"] for e in judge.evaluators if e["name"] == "Request relevance")
    preflight = run_preflight(dataset=dataset, judge=judge, evaluator_ids=[relevance])
    assert preflight.evaluators == ["Request relevance"] and preflight.evaluator_set
    assert preflight.missing_inputs == ["contexts"] and not preflight.blocked
    # An id the form offered for another judge is left out: the whole judge, which is blocked.
    other = judges[SUPPORT_JUDGE].evaluators[0]["id"]
    assert run_preflight(dataset=dataset, judge=judge, evaluator_ids=[other]).blocked


# --- The cost estimate ------------------------------------------------------------------------------


def costed_run(judge: Judge, *, total: float, items: int, by_evaluator: dict[str, float]) -> Run:
    run = build_run({name: [0.5] * items for name in by_evaluator}, judge=judge)
    Run.objects.filter(pk=run.pk).update(cost_total=total, cost_items=items, cost_by_evaluator=by_evaluator)
    return run


def test_the_preflight_estimates_the_cost_from_the_judges_recent_cost_per_item(
    make_dataset: Callable[..., Dataset],
) -> None:
    pytest.importorskip("evals.services.costs")
    judge = hand_judge()
    costed_run(judge, total=0.5, items=100, by_evaluator={"Accuracy": 0.2, "Brevity": 0.1, "Courtesy": 0.2})
    preflight = run_preflight(dataset=make_dataset(40), judge=judge, max_cost=0.1)
    # $0.5 over 100 items is $0.005 an item; 40 rows x $0.005 = $0.20.
    assert preflight.cost_per_item == pytest.approx(0.005)
    assert preflight.estimated_cost == pytest.approx(0.2)
    # The $0.10 cap pays for 0.1 / 0.005 = 20 of the 40 items.
    assert preflight.over_cap and preflight.items_within_cap == 20


def test_an_evaluator_sets_estimate_is_what_its_evaluators_cost(make_dataset: Callable[..., Dataset]) -> None:
    pytest.importorskip("evals.services.costs")
    judge = hand_judge()
    costed_run(judge, total=0.5, items=100, by_evaluator={"Accuracy": 0.2, "Brevity": 0.1, "Courtesy": 0.2})
    preflight = run_preflight(dataset=make_dataset(40), judge=judge, evaluator_ids=["ev-b"])
    # Brevity cost $0.1 over 100 items: $0.001 an item; 40 rows: $0.04.
    assert preflight.cost_per_item == pytest.approx(0.001)
    assert preflight.estimated_cost == pytest.approx(0.04)
    assert not preflight.over_cap


def test_with_no_cost_seen_the_estimate_is_unknown_and_says_why(make_dataset: Callable[..., Dataset]) -> None:
    pytest.importorskip("evals.services.costs")
    preflight = run_preflight(dataset=make_dataset(5), judge=hand_judge(), max_cost=1.0)
    assert preflight.estimated_cost is None and preflight.cost_per_item is None
    assert preflight.cost_basis and not preflight.over_cap
