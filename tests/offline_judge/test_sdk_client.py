"""The offline judge on a real, threaded port: the official Scorable SDK works unchanged, and concurrent
creates share the lanes correctly."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from pytest_django.fixtures import Settings
from scorable import Scorable
from scorable.generated.openapi_client.api.judges_api import JudgesApi
from scorable.generated.openapi_client.exceptions import UnauthorizedException

from offline_judge.models import Batch, BatchItem, BatchTag
from tests.offline_judge.harness import API_KEY, JUDGES, RAG, SUPPORT, set_faults


@pytest.fixture
def sdk(live_server: Any, judge_settings: Settings) -> Scorable:
    return Scorable(api_key=API_KEY, base_url=live_server.url + "/judge-api")


def test_sdk_follows_next_across_pages_passing_the_whole_url_back_as_cursor(sdk: Scorable) -> None:
    names = []
    cursors = []
    with sdk.get_client_context() as api_client:  # type: ignore[operator]
        judges_api = JudgesApi(api_client)
        page = judges_api.judges_list(page_size=1)
        names += [judge.name for judge in page.results]
        while page.next:
            # What the SDK's own judges.list() does: the full next URL goes back as `cursor`.
            cursors.append(page.next)
            page = judges_api.judges_list(page_size=1, cursor=page.next)
            names += [judge.name for judge in page.results]
    assert names == [judge.name for judge in JUDGES]
    assert len(cursors) == len(JUDGES) - 1
    assert all(cursor.startswith(sdk.base_url + "/v1/judges/?") for cursor in cursors)


def test_sdk_judges_list_and_get_return_the_catalogue(sdk: Scorable) -> None:
    listed = list(sdk.judges.list(limit=10))
    assert [judge.id for judge in listed] == [judge.id for judge in JUDGES]
    judge = sdk.judges.get(RAG.id)
    assert judge.version_id == RAG.version_id
    assert sorted(judge.inputs) == ["contexts", "request", "response"]


def test_sdk_runs_a_judge_once(sdk: Scorable) -> None:
    result = sdk.judges.run(
        RAG.id,
        request="When was the Eiffel Tower completed?",
        response="The Eiffel Tower was completed in 1889.",
        contexts=["The Eiffel Tower was completed in 1889 for the World's Fair in Paris."],
        tags=["sdk-test"],
    )
    scores = {r.evaluator_name: r.score for r in result.evaluator_results}
    assert scores["Context support"] == 1.0
    assert scores["Request relevance"] == 1.0
    assert result.execution_log_id
    log = sdk.execution_logs.get(log_id=result.execution_log_id)
    assert log.tags == ["sdk-test"]


def test_sdk_with_a_wrong_key_raises_unauthorized(live_server: Any, judge_settings: Settings) -> None:
    sdk = Scorable(api_key="not-the-key", base_url=live_server.url + "/judge-api")
    with pytest.raises(UnauthorizedException) as raised:
        sdk.judges.get(RAG.id)
    assert '"code": "authentication_failed"' in str(raised.value.body)


def test_concurrent_creates_on_a_threaded_server_never_exceed_the_lanes(
    live_server: Any, judge_settings: Settings
) -> None:
    set_faults(judge_settings, "lanes=3,item_ms=20")
    url = f"{live_server.url}/judge-api/v1/judges/{SUPPORT.id}/batch-execute/"

    def create(index: int) -> int:
        body = {"inputs": [{"response": f"Reply {index}."}] * 5, "tags": [f"c{index}"]}
        return httpx.post(
            url, json=body, headers={"Authorization": f"Api-Key {API_KEY}"}, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(create, range(16)))
    assert statuses == [202] * 16
    assert sorted(BatchTag.objects.values_list("tag", flat=True)) == sorted(f"c{i}" for i in range(16))
    # Sweep the schedule: at no instant are more than `lanes` items being processed.
    events = sorted(
        [(item.started_at, 1) for item in BatchItem.objects.all()]
        + [(item.completed_at, -1) for item in BatchItem.objects.all()]
    )
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak == 3
    # FIFO: every batch's items start no earlier than those of the batches created before it.
    firsts = [batch.first_started_at for batch in Batch.objects.order_by("seq")]
    assert firsts == sorted(firsts)


def test_sdk_lists_execution_logs_with_include_and_reads_an_evaluator(sdk: Scorable) -> None:
    for n in range(3):
        sdk.judges.run(SUPPORT.id, response=f"Happy to help ({n})!", tags=["sdk-logs"])
    # The SDK pages with page_size=limit and sends the whole next URL back as the cursor.
    rows = list(sdk.execution_logs.list(limit=7, tags=["sdk-logs"], include=["variables"]))
    assert len(rows) == 7
    assert len({row.id for row in rows}) == 7
    assert all(row.variables and row.variables["response"].startswith("Happy to help") for row in rows)
    assert len(list(sdk.execution_logs.list(limit=100, tags=["sdk-logs"]))) == 3 * (
        1 + len(SUPPORT.evaluators)
    )
    spec = SUPPORT.evaluators[0]
    assert sdk.evaluators.get(spec.id).name == spec.name
