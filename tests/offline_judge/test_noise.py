"""The offline judge's `noise` option: Gaussian noise on every score, seeded apart from the other faults."""

from __future__ import annotations

import statistics
from typing import Any

import pytest
from pytest_django.fixtures import Settings

from offline_judge import faults
from offline_judge.inputs import ItemInput
from offline_judge.services import Runner, evaluate
from tests.offline_judge.harness import RAG, SUPPORT, Api, FakeClock, set_faults

CONTEXTS = [
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, on the Seine.",
    "It was completed in 1889 as the entrance arch of the World's Fair.",
]
# Every RAG evaluator scores this row 0.5 (one of two sentences supported, half the request addressed,
# one of two contexts used): mid-range, so noise of 0.1 is clamped at 0 or 1 almost never (5 SDs away).
MID_RANGE_ROW: dict[str, Any] = {
    "request": "Where is the tower and when was it finished?",
    "response": "The Eiffel Tower is on the Champ de Mars. It was painted gold by the mayor in 1999.",
    "contexts": CONTEXTS,
}


def judged_scores(api: Api, clock: FakeClock, rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each row's {evaluator: score}, from one batch run to completion."""
    batch_id = api.create(RAG, rows)
    clock.advance(3600)
    detail = api.batch(batch_id)
    assert detail["status"] == "completed"
    return [
        {result["evaluator_name"]: result["score"] for result in item["evaluator_results"]}
        for item in detail["items"]
    ]


def test_the_mid_range_row_really_scores_one_half_without_noise() -> None:
    scored = evaluate(Runner(RAG, RAG.evaluators), ItemInput(**MID_RANGE_ROW))
    assert {s.spec.name: s.verdict.score for s in scored} == {
        "Context support": 0.5,
        "Request relevance": 0.5,
        "Context use": 0.5,
    }


def test_without_noise_every_repeat_gives_exactly_the_same_scores(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "seed=3")
    first = judged_scores(api, clock, [MID_RANGE_ROW] * 5)
    second = judged_scores(api, clock, [MID_RANGE_ROW] * 5)
    assert (
        first == second == [dict.fromkeys(("Context support", "Request relevance", "Context use"), 0.5)] * 5
    )


def test_noise_zero_is_the_default_and_draws_nothing() -> None:
    plan = faults.parse("seed=4")
    assert plan.describe()["noise"] == 0
    state = plan._noise.getstate()
    assert [plan.add_noise(value) for value in (0.0, 0.123, 1.0)] == [0.0, 0.123, 1.0]
    # Nothing drawn: switching noise on later in a sequence would not depend on how much ran before.
    assert plan._noise.getstate() == state


def test_seeded_noise_moves_scores_by_about_its_standard_deviation(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "noise=0.1,seed=3")
    rows = judged_scores(api, clock, [MID_RANGE_ROW] * 100)
    shifts = [score - 0.5 for row in rows for score in row.values()]
    assert len(shifts) == 300
    # 300 draws of N(0, 0.1): the sample SD is within 0.1 ± 0.012 (3 standard errors, 0.1/sqrt(600) each)
    # and the mean within 0 ± 0.017 (3 × 0.1/sqrt(300)).
    assert 0.088 < statistics.stdev(shifts) < 0.112
    assert abs(statistics.mean(shifts)) < 0.017
    assert all(0.0 <= score <= 1.0 and round(score, 3) == score for row in rows for score in row.values())


def test_the_same_seed_gives_the_same_noise_and_another_seed_other_noise(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    runs = []
    for config in ("noise=0.1,seed=3", "noise=0.1,seed=3", "noise=0.1,seed=4"):
        set_faults(judge_settings, config)
        runs.append(judged_scores(api, clock, [MID_RANGE_ROW] * 10))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_noise_does_not_shift_the_other_fault_draws(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    outcomes = []
    for config in ("item_fail=0.5,seed=11", "item_fail=0.5,noise=0.2,seed=11"):
        set_faults(judge_settings, config)
        batch_id = api.create(SUPPORT, [{"response": "Hello."}] * 40)
        clock.advance(3600)
        outcomes.append([item["status"] for item in api.batch(batch_id)["items"]])
    assert outcomes[0] == outcomes[1]
    assert 5 < outcomes[0].count("failed") < 35


def test_noisy_scores_are_clamped_to_zero_and_one() -> None:
    plan = faults.parse("noise=1,seed=5")
    low = [plan.add_noise(0.0) for _ in range(200)]
    high = [plan.add_noise(1.0) for _ in range(200)]
    assert min(low) == 0.0 and max(high) == 1.0
    assert all(0.0 <= value <= 1.0 for value in low + high)
    # About half the draws fall outside and are clamped (a draw below 0 from 0, above 1 from 1).
    assert 70 < low.count(0.0) < 130


def test_a_noisy_justification_says_what_the_noise_did(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "noise=0.1,seed=3")
    batch_id = api.create(RAG, [MID_RANGE_ROW])
    clock.advance(3600)
    result = api.batch(batch_id)["items"][0]["evaluator_results"][0]
    assert result["justification"].endswith(
        f"Simulated judge noise (sd 0.1) moved the score from 0.5 to {result['score']:g}."
    )


def test_a_single_execute_is_noisy_too(api: Api, clock: FakeClock, judge_settings: Settings) -> None:
    set_faults(judge_settings, "noise=0.3,seed=2")
    response = api.post(f"/v1/judges/{RAG.id}/execute/", MID_RANGE_ROW)
    assert response.status_code == 200, response.content
    scores = [result["score"] for result in response.json()["evaluator_results"]]
    assert scores != [0.5, 0.5, 0.5]


def test_the_stats_endpoint_shows_the_noise_setting(
    api: Api, clock: FakeClock, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "noise=0.1")
    assert api.get("/_offline/stats/").json()["faults"]["values"]["noise"] == 0.1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("noise=2", "noise=2 must be between 0 and 1"),
        ("noise=-0.1", "noise=-0.1 must be between 0 and 1"),
        ("noise=lots", 'noise="lots" is not a number'),
    ],
)
def test_bad_noise_settings_are_refused_with_a_clear_message(config: str, message: str) -> None:
    with pytest.raises(faults.FaultConfigError) as raised:
        faults.parse(config)
    assert message in str(raised.value)
