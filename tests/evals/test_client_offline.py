"""Every client method against the offline judge in-process (httpx.WSGITransport over Docket)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from evals.client import Batch, JudgeAPI, JudgeError
from tests.conftest import QA_JUDGE, SUPPORT_JUDGE

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(offline_judge: Callable[[str], None]) -> JudgeAPI:
    return JudgeAPI.from_settings()


def judge_id(api: JudgeAPI, name: str) -> str:
    return next(judge.id for judge in api.list_judges() if judge.name == name)


def test_list_judges_follows_pages_and_detail_has_the_version(api: JudgeAPI) -> None:
    small_pages = list(api.list_judges(page_size=1))
    names = [judge.name for judge in small_pages]
    assert len(names) == len(set(names)) == 3  # one per page, none twice
    assert set(names) >= {SUPPORT_JUDGE, QA_JUDGE}
    assert all(judge.version_id is None for judge in small_pages)
    detail = api.get_judge(judge_id(api, QA_JUDGE))
    assert detail.version_id
    assert set(detail.inputs) == {"response", "expected_output"}
    assert [evaluator.name for evaluator in detail.evaluators] == [
        "Exact match",
        "Token F1",
        "Numeric agreement",
    ]


def test_execute_returns_every_evaluators_verdict_and_a_log_that_can_be_read(api: JudgeAPI) -> None:
    result = api.execute(
        judge_id(api, QA_JUDGE),
        inputs={"response": "It opened in 1889.", "expected_output": "It opened in 1889."},
    )
    assert {row.evaluator_name: row.score for row in result.evaluator_results} == {
        "Exact match": 1.0,
        "Token F1": 1.0,
        "Numeric agreement": 1.0,
    }
    assert result.execution_log_id
    log = api.get_execution_log(result.execution_log_id)
    assert log.model and log.cost is not None and log.thresholds["Exact match"] == 1.0


def test_batch_create_detail_and_list(api: JudgeAPI, offline_judge: Callable[[str], None]) -> None:
    offline_judge("item_ms=0,lanes=100")
    support = judge_id(api, SUPPORT_JUDGE)
    since = timezone.now() - timedelta(seconds=5)
    created = api.create_batch(
        support, inputs=[{"response": "Thanks!"}, {"response": "No."}], tags=["docket:x:0", "mine"]
    )
    assert created.status_url == f"/v1/judges/batch-executions/{created.id}/"
    batch = api.get_batch(created.id)
    assert isinstance(batch, Batch) and batch.is_finished and batch.total_count == 2
    assert [item.index for item in batch.items] == [0, 1]
    assert all(item.evaluator_results and item.error_message == "" for item in batch.items)
    listed = list(api.list_batches(judge_id=support, date_from=since))
    assert [row.id for row in listed] == [created.id] and listed[0].items == ()
    assert api.find_batch_by_tag(judge_id=support, tag="docket:x:0", since=since) is not None
    assert api.find_batch_by_tag(judge_id=support, tag="docket:x:1", since=since) is None


def test_the_judges_400_names_the_field(api: JudgeAPI) -> None:
    with pytest.raises(JudgeError) as caught:
        api.create_batch(judge_id(api, SUPPORT_JUDGE), inputs=[{"response": "x"}] * 101, tags=[])
    assert caught.value.permanent and caught.value.status == 400
    assert "inputs" in caught.value.message and "100" in caught.value.message


def test_a_wrong_key_is_a_permanent_401(api: JudgeAPI) -> None:
    from django.conf import settings

    from evals import client

    wrong = JudgeAPI(base_url=settings.JUDGE_API_URL, api_key="wrong", transport=client.default_transport)
    with pytest.raises(JudgeError) as caught:
        list(wrong.list_judges())
    assert caught.value.status == 401 and caught.value.permanent
    assert "Check SCORABLE_API_KEY" in caught.value.message
