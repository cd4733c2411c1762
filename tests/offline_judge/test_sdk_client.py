"""The official Scorable SDK, pointed at the offline judge on a real port, works unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from pytest_django.fixtures import Settings
from scorable import Scorable
from scorable.generated.openapi_client.api.judges_api import JudgesApi
from scorable.generated.openapi_client.exceptions import UnauthorizedException

from tests.offline_judge.harness import API_KEY, JUDGES, RAG


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
