"""`manage.py compare_runs`: the comparison as text or JSON, and the CI gate against a baseline."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from evals import client
from evals.models import Run
from tests.factories import build_run

pytestmark = pytest.mark.django_db


def compare_runs(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("compare_runs", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = int(exit.code or 0)
    except CommandError as error:
        code = error.returncode
        err.write(str(error))
    return code, out.getvalue(), err.getvalue()


def as_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = compare_runs(*args, "--json")
    return code, json.loads(out)


@pytest.fixture
def baseline() -> Run:
    return build_run({"Politeness": [0.6, 0.7, 0.8, 0.9, 0.7], "Concision": [1.0] * 5}, name="baseline")


def candidate(baseline: Run, politeness: list[float]) -> Run:
    return build_run(
        {"Politeness": politeness, "Concision": [1.0] * 5}, dataset=baseline.dataset, judge=baseline.judge
    )


def test_json_has_the_counts_at_the_top_and_every_figure_per_evaluator(baseline: Run) -> None:
    # d = -.1, +.1, 0, -.2, 0 (Politeness): mean -0.04, not significant.
    b = candidate(baseline, [0.5, 0.8, 0.8, 0.7, 0.7])
    code, data = as_json(str(baseline.pk), str(b.pk))
    assert code == 0
    assert (data["pairs"], data["only_a"], data["only_b"], data["paired_by"]) == (5, 0, 0, "position")
    assert data["duplicated_keys"] == {"a": 0, "b": 0} and data["warnings"] == []
    assert (data["a"]["id"], data["b"]["id"]) == (baseline.pk, b.pk)
    politeness = data["evaluators"][0]
    assert {
        "name",
        "pairs",
        "mean_a",
        "mean_b",
        "diff",
        "ci_low",
        "ci_high",
        "improved",
        "regressed",
        "unchanged",
        "threshold_a",
        "threshold_source_a",
    } <= set(politeness)
    assert politeness["name"] == "Politeness" and politeness["pairs"] == 5
    assert politeness["mean_a"] == pytest.approx(0.74) and politeness["mean_b"] == pytest.approx(0.70)
    assert politeness["diff"] == pytest.approx(-0.04)
    assert politeness["ci_low"] < 0 < politeness["ci_high"]
    assert (politeness["improved"], politeness["regressed"], politeness["unchanged"]) == (1, 2, 2)
    assert (politeness["threshold_a"], politeness["threshold_source_a"]) == (0.5, "pending")
    assert politeness["verdict"] == "no significant difference" and not data["regression"]


def test_text_output_lists_each_evaluator_under_a_header(baseline: Run) -> None:
    b = candidate(baseline, [0.5, 0.8, 0.8, 0.7, 0.7])
    code, out, _ = compare_runs(str(baseline.pk), str(b.pk))
    lines = out.splitlines()
    assert code == 0
    assert lines[2].startswith("pairs 5 by row (same dataset), only_a 0, only_b 0")
    assert lines[3].split()[:10] == [
        "evaluator",
        "pairs",
        "mean_a",
        "mean_b",
        "diff",
        "ci_low",
        "ci_high",
        "improved",
        "regressed",
        "unchanged",
    ]
    politeness = next(line for line in lines if line.startswith("Politeness"))
    assert politeness.split()[1:5] == ["5", "0.740", "0.700", "-0.040"]
    assert politeness.split()[7:10] == ["1", "2", "2"]


def test_fail_on_regression_exits_1_when_an_interval_lies_below_zero(baseline: Run) -> None:
    # Every item dropped by 0.2 to 0.3: the interval of B - A is wholly below 0.
    worse = candidate(baseline, [0.4, 0.4, 0.5, 0.7, 0.5])
    code, out, err = compare_runs(str(baseline.pk), str(worse.pk), "--fail-on-regression")
    assert code == 1
    assert "B regressed on Politeness" in err
    assert "B worse" in out
    # Without the flag it only reports.
    assert compare_runs(str(baseline.pk), str(worse.pk))[0] == 0
    code, data = as_json(str(baseline.pk), str(worse.pk), "--fail-on-regression")
    assert code == 1 and data["regression"] and data["evaluators"][0]["ci_high"] < 0


def test_fail_on_regression_exits_0_on_an_improvement_or_noise(baseline: Run) -> None:
    better = candidate(baseline, [0.8, 0.9, 1.0, 1.0, 0.9])
    noisy = candidate(baseline, [0.5, 0.8, 0.8, 0.7, 0.7])
    assert compare_runs(str(baseline.pk), str(better.pk), "--fail-on-regression")[0] == 0
    assert compare_runs(str(baseline.pk), str(noisy.pk), "--fail-on-regression")[0] == 0


def test_one_pair_is_not_enough_and_is_not_a_regression() -> None:
    a = build_run({"Politeness": [0.9, 0.5]}, requests=["alpha", "bravo"])
    b = build_run({"Politeness": [0.1, 0.5]}, requests=["alpha", "charlie"])
    code, data = as_json(str(a.pk), str(b.pk), "--fail-on-regression")
    assert code == 0
    assert (data["pairs"], data["only_a"], data["only_b"]) == (1, 1, 1)
    row = data["evaluators"][0]
    assert row["verdict"] == "not enough paired items" and row["ci_low"] is None


def test_a_threshold_applies_to_both_runs_as_an_override(baseline: Run) -> None:
    b = candidate(baseline, [0.5, 0.8, 0.8, 0.7, 0.7])
    _, data = as_json(str(baseline.pk), str(b.pk), "--threshold", "0.75")
    politeness = data["evaluators"][0]
    assert (politeness["threshold_a"], politeness["threshold_source_a"]) == (0.75, "override")
    assert (politeness["threshold_b"], politeness["threshold_source_b"]) == (0.75, "override")
    # A passes 0.8 and 0.9; B passes 0.8 and 0.8: row 3 (0.9 -> 0.7) went from pass to fail.
    assert (politeness["pass_to_fail"], politeness["fail_to_pass"]) == (1, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999999", "{b}"], 'There is no run "999999" to use as A.'),
        (["{a}", "latest"], 'There is no run "latest" to use as B.'),
        (["{a}", "{b}", "--threshold", "high"], '--threshold must be a number, not "high".'),
        (["{a}", "{b}", "--threshold", "nan"], "--threshold must be a number"),
        (["{a}"], "the following arguments are required: b"),
        (["{a}", "{b}", "--colour"], "unrecognized arguments: --colour"),
    ],
)
def test_usage_errors_exit_2_with_a_sentence(baseline: Run, args: list[str], message: str) -> None:
    b = candidate(baseline, [0.5] * 5)
    code, out, err = compare_runs(*(arg.format(a=baseline.pk, b=b.pk) for arg in args))
    assert code == 2
    assert message in err
    assert out == ""


def test_the_gate_reads_only_docket_and_never_waits_on_the_judge_api(
    baseline: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A CI gate against a baseline must not hang or fail on a throttled judge API: runs with pending
    # thresholds compare at the default, from what Docket stored, without asking the judge.
    calls: list[httpx.Request] = []

    def down(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, text="Service Unavailable")

    monkeypatch.setattr(client, "default_transport", httpx.MockTransport(down))
    monkeypatch.setattr(client, "patience_sleep", lambda seconds: pytest.fail("compare_runs waited"))
    b = candidate(baseline, [0.4, 0.4, 0.5, 0.7, 0.5])
    code, data = as_json(str(baseline.pk), str(b.pk), "--fail-on-regression")
    assert code == 1 and data["evaluators"][0]["threshold_source_a"] == "pending"
    assert calls == []


def test_corrected_compares_with_the_reviewers_verdicts(baseline: Run, django_user_model: Any) -> None:
    from evals.models import Review

    # B equals A everywhere; a reviewer fails B's first Politeness score (0.6, a judge pass at 0.5).
    b = candidate(baseline, [0.6, 0.7, 0.8, 0.9, 0.7])
    reviewer = django_user_model.objects.create_user(username="rita", password="a-long-test-password")
    item = b.items.get(position=0)
    Review.objects.create(
        item=item, run=b, evaluator_name="Politeness", reviewer=reviewer, reviewer_name="rita", label="fail"
    )
    _, judge = as_json(str(baseline.pk), str(b.pk))
    _, corrected = as_json(str(baseline.pk), str(b.pk), "--corrected")
    assert judge["evaluators"][0]["pass_to_fail"] == 0
    assert corrected["evaluators"][0]["pass_to_fail"] == 1
    assert corrected["corrected"] is True and judge["corrected"] is False
