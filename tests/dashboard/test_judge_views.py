"""The judge pages read what Docket stored; the judge API is asked only when someone presses a sync button."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from evals.models import Judge
from offline_judge import stats
from tests.conftest import SUPPORT_JUDGE

pytestmark = pytest.mark.usefixtures("offline_judge")


def judge_api_requests() -> dict[str, int]:
    """What the (in-process) judge API has received so far, by method and route."""
    return dict(stats.process_counts()["requests"])


def test_the_judge_page_shows_the_stored_judge_without_asking_the_judge_api(
    logged_in: Client, judges: dict[str, Judge]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    assert judge.version_id == ""  # a sync lists judges without their version
    before = judge_api_requests()
    page = logged_in.get(f"/judges/{judge.pk}/").content.decode()
    assert judge_api_requests() == before
    assert "not read yet" in page
    assert f'action="/judges/{judge.pk}/sync/"' in page and "Sync judge" in page
    assert "Synced" in page and "<time datetime=" in page
    judge.refresh_from_db()
    assert judge.version_id == ""


def test_sync_judge_reads_the_judge_in_full_and_says_so(logged_in: Client, judges: dict[str, Judge]) -> None:
    judge = judges[SUPPORT_JUDGE]
    before = judge_api_requests()
    response = logged_in.post(f"/judges/{judge.pk}/sync/")
    assert response.status_code == 302 and response["Location"] == f"/judges/{judge.pk}/"
    assert judge_api_requests() != before
    judge.refresh_from_db()
    assert judge.version_id
    page = logged_in.get(response["Location"]).content.decode()
    assert f"Synced {judge.name}." in page and judge.version_id in page


def test_a_failing_judge_sync_keeps_the_stored_copy_and_says_why(
    logged_in: Client, judges: dict[str, Judge], offline_judge: Callable[[str], None]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    offline_judge("error=1")  # the judge answers 500 to everything
    page = logged_in.post(f"/judges/{judge.pk}/sync/", follow=True).content.decode()
    assert f"Could not sync {judge.name}; showing the last synced copy." in page
    judge.refresh_from_db()
    assert judge.version_id == ""


def test_judge_sync_wants_post_and_a_teammate(logged_in: Client, judges: dict[str, Judge]) -> None:
    judge = judges[SUPPORT_JUDGE]
    assert logged_in.get(f"/judges/{judge.pk}/sync/").status_code == 405
    assert logged_in.post(f"/judges/{judge.pk}/").status_code == 405
    response = Client().post(f"/judges/{judge.pk}/sync/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_judge_list_never_asks_the_judge_api_and_says_when_nothing_is_read_yet(logged_in: Client) -> None:
    assert not Judge.objects.exists()
    before = judge_api_requests()
    page = logged_in.get("/judges/").content.decode()
    assert judge_api_requests() == before
    assert not Judge.objects.exists()
    assert "Judges not read yet" in page and 'action="/judges/sync/"' in page
