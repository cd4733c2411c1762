"""Judges read in full in the background, so judge pages never ask the judge API while they render;
and the one rule for a judge API client a caller may or may not have brought."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from evals.client import JudgeAPI, JudgeError, JudgeInfo
from evals.models import Judge
from evals.services.judges import judge_api, judges_refresh_due

pytestmark = pytest.mark.usefixtures("offline_judge")


def test_judges_without_a_version_are_read_in_full_a_few_at_a_time(judges: dict[str, Judge]) -> None:
    listed = Judge.objects.filter(is_listed=True)
    assert listed.count() > 2 and not listed.exclude(version_id="").exists()
    assert judges_refresh_due(limit=2) == 2
    assert listed.exclude(version_id="").count() == 2
    assert judges_refresh_due() == listed.count() - 2
    assert not listed.filter(version_id="").exists()
    # Nothing left to read: no call at all.
    assert judges_refresh_due() == 0


def test_an_unlisted_judge_is_not_read(judges: dict[str, Judge]) -> None:
    Judge.objects.update(is_listed=False)
    assert judges_refresh_due() == 0


def test_a_judge_api_that_is_down_stops_the_round(
    judges: dict[str, Judge], offline_judge: Callable[[str], None]
) -> None:
    offline_judge("error=1")  # 500 to everything: a passing failure
    assert judges_refresh_due() == 0
    assert not Judge.objects.exclude(version_id="").exists()


def test_a_judge_refused_for_good_is_skipped_and_the_others_are_read(
    judges: dict[str, Judge], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = Judge.objects.order_by("synced_at", "pk").first()
    assert first is not None
    real = JudgeAPI.get_judge

    def refusing(api: JudgeAPI, judge_id: str) -> JudgeInfo:
        if judge_id == first.remote_id:
            raise JudgeError("not found", status=404, permanent=True)
        return real(api, judge_id)

    monkeypatch.setattr(JudgeAPI, "get_judge", refusing)
    total = Judge.objects.count()
    assert judges_refresh_due(limit=total) == total - 1
    assert list(Judge.objects.filter(version_id="")) == [first]


def test_judge_api_leaves_a_given_client_open_and_closes_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[JudgeAPI] = []
    monkeypatch.setattr(JudgeAPI, "close", lambda api: closed.append(api))
    given = JudgeAPI.from_settings()
    with judge_api(given) as api:
        assert api is given
    assert closed == []
    with judge_api() as own:
        assert own is not given
    assert closed == [own]
    with pytest.raises(RuntimeError), judge_api() as failing:
        raise RuntimeError("a failure inside still closes the client")
    assert closed == [own, failing]


def test_the_watchdog_reads_judges_listed_without_their_version(judges: dict[str, Judge]) -> None:
    from evals import tasks

    assert Judge.objects.filter(version_id="").exists()
    for _ in range(Judge.objects.count()):
        tasks.watchdog_refresh_judges()
    assert not Judge.objects.filter(version_id="").exists()


@pytest.mark.django_db
def test_a_round_with_no_judge_stored_lists_the_judge_apis_judges_first() -> None:
    assert not Judge.objects.exists()
    read = judges_refresh_due(limit=100)
    listed = Judge.objects.filter(is_listed=True)
    assert listed.count() > 2
    assert read == listed.count() and not listed.filter(version_id="").exists()
