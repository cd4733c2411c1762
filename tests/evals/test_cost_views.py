"""What a run cost, where people read it: statistics, compare, exports, the run header, run_eval.

The runs are made with `build_run`, then given the totals the pump writes after reading each batch's
execution logs (`Run.cost_total`, `cost_items`, `cost_by_evaluator`, `Item.cost`, `Item.evaluator_costs`),
set directly: these tests are about what is shown, tests/evals/test_costs.py about how it is recorded.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence

import pytest
from django.http import QueryDict
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import BackoffKind, Dataset, Item, Judge, Run
from evals.selectors.compare import comparison_as_dict, runs_compare
from evals.selectors.costs import run_cost
from evals.selectors.export import export_stream
from evals.selectors.results import ResultsQuery
from evals.selectors.stats import run_statistics
from evals.services.sharing import share_link_create
from tests.conftest import SUPPORT_JUDGE
from tests.factories import build_run

pytestmark = pytest.mark.django_db

POLITENESS = [0.9, 0.4, 0.8, 0.2]  # at 0.5: 2 of 4 pass
CONCISION = [0.6, 0.7, 0.1, 0.9]  # at 0.5: 3 of 4 pass
# Each item: Politeness $0.005 + Concision $0.0075 = $0.0125.
SHARES = {"Politeness": 0.005, "Concision": 0.0075}


def give_costs(run: Run, shares: dict[str, float], *, positions: Sequence[int] | None = None) -> Run:
    """Record costs as the pump does after reading the logs: on the items (those at `positions`, default
    all), and their sums on the run."""
    items = list(run.items.order_by("position"))
    costed = [item for item in items if positions is None or item.position in positions]
    for item in costed:
        item.evaluator_costs = dict(shares)
        item.cost = sum(shares.values())
    Item.objects.bulk_update(costed, ["cost", "evaluator_costs"])
    run.cost_items = len(costed)
    run.cost_total = sum(item.cost or 0.0 for item in costed)
    run.cost_by_evaluator = {name: value * len(costed) for name, value in shares.items()}
    run.save(update_fields=["cost_items", "cost_total", "cost_by_evaluator"])
    return run


def costed_run(**kwargs: object) -> Run:
    run = build_run(
        {"Politeness": POLITENESS, "Concision": CONCISION},
        thresholds={"Politeness": 0.5, "Concision": 0.5},
        **kwargs,  # type: ignore[arg-type]
    )
    return give_costs(run, SHARES)


def whole_run(run: Run) -> ResultsQuery:
    return ResultsQuery.from_params(QueryDict("sort=position"), run=run)


def read_csv(run: Run, query: ResultsQuery | None = None) -> list[dict[str, str]]:
    text = "".join(export_stream(run, query or whole_run(run), fmt="csv"))
    return list(csv.DictReader(io.StringIO(text)))


def read_header(run: Run) -> list[str]:
    text = "".join(export_stream(run, whole_run(run), fmt="csv"))
    return next(csv.reader(io.StringIO(text)))


# --- Statistics ---------------------------------------------------------------------------------------


def test_statistics_give_the_cost_per_item_and_per_pass_of_each_evaluator() -> None:
    statistics = run_statistics(run=costed_run())
    # $0.05 over 4 items = $0.0125 per item.
    assert statistics.cost.total == pytest.approx(0.05)
    assert statistics.cost.per_item == pytest.approx(0.0125)
    politeness, concision = statistics.evaluators
    # Politeness: $0.02 / 4 items = $0.005 per item; 2 of 4 pass, so $0.005 / 0.5 = $0.01 per pass.
    assert politeness.cost_per_item == pytest.approx(0.005)
    assert politeness.cost_per_pass == pytest.approx(0.01)
    # Concision: $0.03 / 4 = $0.0075 per item; 3 of 4 pass, so $0.0075 / 0.75 = $0.01 per pass.
    assert concision.cost_per_item == pytest.approx(0.0075)
    assert concision.cost_per_pass == pytest.approx(0.01)
    assert (statistics.cost.total_label, statistics.cost.per_item_label) == ("$0.0500", "$0.0125")


def test_the_cost_per_item_counts_only_the_items_whose_cost_is_known() -> None:
    run = build_run({"Politeness": POLITENESS}, thresholds={"Politeness": 0.5})
    # The logs of the last item's batch were not read: 3 items at $0.004 each.
    give_costs(run, {"Politeness": 0.004}, positions=[0, 1, 2])
    statistics = run_statistics(run=run)
    assert statistics.cost.items == 3 and statistics.items == 4
    assert statistics.cost.per_item == pytest.approx(0.004)  # $0.012 / 3, not / 4
    assert statistics.evaluators[0].cost_per_item == pytest.approx(0.004)


def test_an_evaluator_with_no_pass_has_no_cost_per_pass_and_a_run_without_costs_has_none() -> None:
    run = build_run({"Politeness": [0.1, 0.2]}, thresholds={"Politeness": 0.5})
    assert run_statistics(run=run).cost.known is False
    assert run_statistics(run=run).evaluators[0].cost_per_item is None
    give_costs(run, {"Politeness": 0.01})
    stats = run_statistics(run=run).evaluators[0]
    assert stats.cost_per_item == pytest.approx(0.01) and stats.cost_per_pass is None


def test_the_latest_verdict_view_adds_up_the_cost_of_the_run_and_its_retries() -> None:
    root = build_run({"Politeness": [0.9, None]}, thresholds={"Politeness": 0.5})
    give_costs(root, {"Politeness": 0.01}, positions=[0])
    retry = build_run({"Politeness": [0.7]}, dataset=root.dataset, retry_of=root, positions=[1])
    give_costs(retry, {"Politeness": 0.03})
    # $0.01 (root's one costed item) + $0.03 (the retry's) over 2 items = $0.02 per item.
    cost = run_cost(root, latest=True)
    assert (cost.total, cost.items) == (pytest.approx(0.04), 2)
    assert cost.per_item == pytest.approx(0.02)
    assert run_cost(root).per_item == pytest.approx(0.01)


def test_the_statistics_page_shows_the_cost_and_each_evaluator_s_cost_per_item_and_pass(
    logged_in: Client,
) -> None:
    run = costed_run()
    page = logged_in.get(f"/runs/{run.pk}/stats/").content.decode()
    assert 'Cost <strong class="num">$0.0500</strong> for 4 items' in page
    assert '<strong class="num">$0.0125</strong> per item' in page
    assert "Cost / item" in page and "Cost / pass" in page
    # The cards: $0.005 per item (three significant digits below a cent), $0.01 per pass.
    text = " ".join(re.sub(r"<[^>]+>", "", page).split())
    assert "Cost $0.00500 per item, $0.0100 per pass (2 passes of 4)." in text
    assert "Cost $0.00750 per item, $0.0100 per pass (3 passes of 4)." in text


def test_a_run_without_known_cost_shows_no_cost_on_its_statistics_page(logged_in: Client) -> None:
    run = build_run({"Politeness": POLITENESS}, thresholds={"Politeness": 0.5})
    page = logged_in.get(f"/runs/{run.pk}/stats/").content.decode()
    assert "Cost / item" not in page and "data-stats-cost" not in page


# --- Compare ------------------------------------------------------------------------------------------


def test_compare_gives_each_run_s_cost_per_item_and_the_change() -> None:
    a = costed_run()
    b = build_run({"Politeness": POLITENESS, "Concision": CONCISION}, dataset=a.dataset)
    # B: 3 items costed at $0.015 each.
    give_costs(b, {"Politeness": 0.006, "Concision": 0.009}, positions=[0, 1, 2])
    comparison = runs_compare(a=a, b=b)
    assert comparison.cost_per_item_a == pytest.approx(0.0125)
    assert comparison.cost_per_item_b == pytest.approx(0.015)
    assert comparison.cost_per_item_change == pytest.approx(0.0025)  # 0.015 - 0.0125
    assert comparison.cost_labels == {"a": "$0.0125", "b": "$0.0150", "change": "+$0.00250"}
    as_json = comparison_as_dict(comparison)["cost"]
    assert as_json["per_item_change"] == pytest.approx(0.0025)
    assert (as_json["items_a"], as_json["items_b"]) == (4, 3)


def test_compare_without_cost_on_one_side_gives_no_change() -> None:
    a = costed_run()
    b = build_run({"Politeness": POLITENESS, "Concision": CONCISION}, dataset=a.dataset)
    comparison = runs_compare(a=a, b=b)
    assert comparison.cost_per_item_b is None and comparison.cost_per_item_change is None


def evaluator_set(run: Run, ids: list[str]) -> Run:
    run.evaluator_ids = ids
    run.save(update_fields=["evaluator_ids"])
    return run


def test_compare_warns_when_the_runs_used_different_evaluator_sets() -> None:
    a = build_run({"Politeness": [0.5, 0.6]})
    b = evaluator_set(build_run({"Politeness": [0.5, 0.6]}, dataset=a.dataset, judge=a.judge), ["ev-polite"])
    warnings = runs_compare(a=a, b=b).warnings
    [warning] = [text for text in warnings if "evaluator sets" in text]
    assert f"A: every evaluator of {a.judge.name}" in warning
    assert "B: 1 chosen evaluator: Politeness" in warning


def test_compare_does_not_warn_when_both_runs_used_the_same_set_in_any_order() -> None:
    a = evaluator_set(build_run({"Politeness": [0.5, 0.6]}), ["ev-1", "ev-2"])
    b = evaluator_set(
        build_run({"Politeness": [0.5, 0.6]}, dataset=a.dataset, judge=a.judge), ["ev-2", "ev-1"]
    )
    assert not [text for text in runs_compare(a=a, b=b).warnings if "evaluator sets" in text]


def test_the_compare_page_shows_the_cost_per_item_of_both_runs_and_the_warning(logged_in: Client) -> None:
    a = costed_run()
    b = build_run({"Politeness": POLITENESS, "Concision": CONCISION}, dataset=a.dataset, judge=a.judge)
    give_costs(b, {"Politeness": 0.004, "Concision": 0.006})
    evaluator_set(b, ["ev-polite", "ev-concise"])
    page = logged_in.get(f"/runs/compare/?a={a.pk}&b={b.pk}").content.decode()
    # A $0.0125, B $0.01: B is cheaper by $0.0025 per item.
    assert re.search(
        r"Cost per item: A <strong[^>]*>\$0\.0125</strong> → B <strong[^>]*>\$0\.0100</strong>", page
    )
    assert "(−$0.00250)" in page and "diff-better" in page
    assert "different evaluator sets" in page
    assert "a set of 2: Politeness, Concision" in page


# --- Exports ------------------------------------------------------------------------------------------


def test_the_csv_export_has_a_cost_column_per_item_and_per_evaluator() -> None:
    run = build_run({"Politeness": [0.9, 0.4]}, thresholds={"Politeness": 0.5})
    give_costs(run, {"Politeness": 0.0125}, positions=[0])
    header = read_header(run)
    assert header[header.index("execution_log_id") + 1] == "cost"
    assert header[-3:] == ["Politeness score", "Politeness justification", "Politeness cost"]
    first, second = read_csv(run)
    assert (first["cost"], first["Politeness cost"]) == ("0.0125", "0.0125")
    assert (second["cost"], second["Politeness cost"]) == ("", "")  # its cost is not known


def test_the_jsonl_export_carries_the_cost_of_each_item_and_each_score() -> None:
    run = costed_run()
    lines = "".join(export_stream(run, whole_run(run), fmt="jsonl")).splitlines()
    record = json.loads(lines[0])
    assert record["cost"] == pytest.approx(0.0125)
    assert record["scores"]["Politeness"]["cost"] == pytest.approx(0.005)
    assert record["scores"]["Concision"]["cost"] == pytest.approx(0.0075)


def test_an_export_of_a_run_without_known_cost_is_unchanged() -> None:
    run = build_run({"Politeness": [0.9, 0.4]})
    assert "cost" not in read_header(run) and "Politeness cost" not in read_header(run)
    record = json.loads("".join(export_stream(run, whole_run(run), fmt="jsonl")).splitlines()[0])
    assert "cost" not in record and "cost" not in record["scores"]["Politeness"]


def test_a_metadata_column_named_cost_is_renamed_rather_than_clash() -> None:
    run = build_run({"Politeness": [0.9]}, metadata=lambda position: {"cost": "cheap"})
    give_costs(run, {"Politeness": 0.02})
    [row] = read_csv(run)
    assert row["cost"] == "0.02" and row["metadata.cost"] == "cheap"


# --- The run header -----------------------------------------------------------------------------------


def test_the_run_header_shows_what_the_run_cost(logged_in: Client) -> None:
    run = costed_run()
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    text = re.sub(r"<[^>]+>", "", page)
    assert "Cost $0.0500 (4 items, $0.0125 per item)" in " ".join(text.split())


def pause_for_budget(run: Run) -> Run:
    run.status = Run.Status.RUNNING
    run.max_cost = 0.05
    run.backoff_kind = BackoffKind.BUDGET
    run.backoff_reason = "Paused: budget reached at $0.0500 of $0.0500"
    run.save(update_fields=["status", "max_cost", "backoff_kind", "backoff_reason"])
    return run


def test_a_run_paused_by_its_budget_says_so_with_a_button_to_raise_the_cap(logged_in: Client) -> None:
    run = pause_for_budget(costed_run())
    page = logged_in.get(f"/runs/{run.pk}/").content.decode()
    assert "Paused: budget reached at $0.0500 of $0.0500" in page
    assert f'href="/runs/{run.pk}/budget/">Raise the cap…</a>' in page
    assert "retrying in" not in page  # not a wait that ends by itself


def test_a_share_link_sees_the_pause_but_no_button(db: None) -> None:
    run = pause_for_budget(costed_run())
    _link, token = share_link_create(run=run, created_by=None)
    page = Client().get(f"/s/{token}/").content.decode()
    assert "Paused: budget reached at $0.0500 of $0.0500" in page
    assert "Raise the cap" not in page and "/budget/" not in page


# --- run_eval -----------------------------------------------------------------------------------------


def run_eval(*args: str) -> tuple[int, str, str]:
    from django.core.management import call_command

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("run_eval", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def no_worker_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    # No qcluster runs in these tests: the command works the run itself at once.
    monkeypatch.setattr("dashboard.management.commands.run_eval.WORKER_GRACE", 0.0)


@pytest.mark.usefixtures("no_worker_grace")
def test_run_eval_prints_what_the_run_cost_before_its_table(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    code, out, err = run_eval("--dataset", str(make_dataset(12).pk), "--judge", SUPPORT_JUDGE, "--wait")
    assert code == 0, err
    run = Run.objects.get()
    lines = out.strip().splitlines()
    assert run.cost_items == 12, "the pump read the batch's logs"
    cost = run_cost(run)
    expected = f"cost: {cost.total_label} for 12 items ({cost.per_item_label} per item)"
    # The table (header + one row per evaluator) stays between the cost and the status line.
    assert lines[-1 - len(run.evaluators) - 2] == expected
    assert sum(item.cost or 0.0 for item in run.items.all()) == pytest.approx(run.cost_total)


@pytest.mark.usefixtures("no_worker_grace")
def test_run_eval_stops_waiting_at_the_cap_and_says_how_to_raise_it(
    judges: dict[str, Judge], make_dataset: Callable[..., Dataset], settings: SettingsWrapper
) -> None:
    # A default cap far below one item's cost. No cost is known yet, so the first batch of 4 goes; once
    # its cost is read the cap is passed and nothing more is sent: the command stops waiting.
    settings.DOCKET_DEFAULT_MAX_COST = 1e-9
    dataset = make_dataset(12)
    code, out, err = run_eval(
        "--dataset", str(dataset.pk), "--judge", SUPPORT_JUDGE, "--batch-size", "4", "--wait"
    )
    run = Run.objects.get()
    assert code == 2, (out, err)
    assert run.backoff_kind == BackoffKind.BUDGET and not run.is_finished
    assert "Paused: budget reached at" in err
    assert f"POST /api/v1/runs/{run.pk}/budget/" in err
    lines = out.strip().splitlines()
    assert lines[-1] == f"run {run.pk}: running"
    assert (
        lines[-2]
        == f"cost: {run_cost(run).total_label} for 4 items ({run_cost(run).per_item_label} per item)"
    )
