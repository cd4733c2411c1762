"""The CI gate decided from the API's documents: what makes `docket eval` exit 1."""

from __future__ import annotations

from typing import Any

import pytest

from docket_client.gate import GateUsageError, gate_decide


def run_document(status: str = "completed", **means: float | None) -> dict[str, Any]:
    return {
        "id": 12,
        "status": status,
        "last_error": "",
        "evaluator_names": list(means),
        "evaluators": [
            {"name": name, "n": 0 if mean is None else 30, "mean": mean, "ci_low": None, "ci_high": None}
            for name, mean in means.items()
        ],
    }


def test_a_mean_under_fail_under_fails_only_that_evaluator() -> None:
    gate = gate_decide(run_document(politeness=0.6, concision=0.95), fail_under=0.8)

    assert not gate.passed
    assert gate.failures["politeness"] == ["mean 0.600 is under --fail-under 0.8"]
    assert gate.failures["concision"] == []


def test_a_mean_equal_to_fail_under_passes() -> None:
    assert gate_decide(run_document(politeness=0.8), fail_under=0.8).passed


def test_evaluator_limits_the_gate_to_that_evaluator() -> None:
    gate = gate_decide(run_document(politeness=0.6, concision=0.95), fail_under=0.8, evaluator="concision")

    assert gate.passed
    assert gate.checked == ["concision"]


def test_an_evaluator_the_run_lacks_is_a_usage_error_naming_the_ones_it_has() -> None:
    with pytest.raises(GateUsageError, match="politeness, concision"):
        gate_decide(run_document(politeness=0.6, concision=0.95), fail_under=0.8, evaluator="tone")


def test_an_evaluator_without_scores_fails_fail_under() -> None:
    gate = gate_decide(run_document(politeness=None), fail_under=0.1)

    assert gate.failures["politeness"] == ["no scores, so the mean cannot reach --fail-under 0.1"]


def test_without_fail_under_a_completed_run_passes_whatever_its_scores() -> None:
    assert gate_decide(run_document(politeness=0.0)).passed


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_a_failed_or_cancelled_run_fails_the_gate(status: str) -> None:
    gate = gate_decide(run_document(status, politeness=0.9), fail_under=0.1)

    assert not gate.passed
    assert gate.run_failure == f"run 12 finished as {status}"


def test_a_regression_against_the_baseline_fails_that_evaluator() -> None:
    comparison = {
        "evaluators": [
            {
                "name": "politeness",
                "regression": True,
                "mean_a": 0.9,
                "mean_b": 0.5,
                "diff": -0.4,
                "ci_low": -0.5,
                "ci_high": -0.3,
            },
            {
                "name": "concision",
                "regression": False,
                "mean_a": 1.0,
                "mean_b": 1.0,
                "diff": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.0,
            },
        ]
    }

    gate = gate_decide(run_document(politeness=0.5, concision=1.0), comparison=comparison)

    assert not gate.passed
    assert gate.failures["politeness"] == [
        "regression against the baseline: mean 0.900 -> 0.500, difference -0.400 (95% CI -0.500 to -0.300)"
    ]
    assert gate.failures["concision"] == []
    assert gate.as_dict()["failures"] == {"politeness": gate.failures["politeness"]}


def test_a_regression_in_another_evaluator_does_not_fail_a_gate_on_one_evaluator() -> None:
    comparison = {"evaluators": [{"name": "politeness", "regression": True}]}

    gate = gate_decide(
        run_document(politeness=0.5, concision=1.0), comparison=comparison, evaluator="concision"
    )

    assert gate.passed
