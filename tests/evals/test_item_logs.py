"""Fetching one item's execution log on request: kept on the item, or a message the page can show."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from evals.models import Dataset, Item, Judge
from evals.services.item_logs import ItemLogError, item_log_fetch
from evals.services.runs import run_create
from offline_judge import stats
from tests.conftest import SUPPORT_JUDGE
from tests.factories import finish

pytestmark = pytest.mark.usefixtures("offline_judge")


@pytest.fixture
def item(judges: dict[str, Judge], make_dataset: Callable[..., Dataset]) -> Item:
    run = finish(run_create(dataset=make_dataset(2), judge=judges[SUPPORT_JUDGE]))
    found = run.items.order_by("position").first()
    assert found is not None and found.execution_log_id and found.log_detail is None
    return found


def judge_api_requests() -> dict[str, int]:
    """What the (in-process) judge API has received so far, by method and route."""
    return dict(stats.process_counts()["requests"])


def test_the_fetched_log_is_kept_on_the_item(item: Item) -> None:
    item_log_fetch(item=item)
    item.refresh_from_db()
    assert item.log_detail is not None and item.log_detail["cost"] > 0


def test_an_item_without_a_log_is_refused_without_asking(item: Item) -> None:
    Item.objects.filter(pk=item.pk).update(execution_log_id="")
    item.refresh_from_db()
    before = judge_api_requests()
    with pytest.raises(ItemLogError, match="has not given this item an execution log"):
        item_log_fetch(item=item)
    assert judge_api_requests() == before


def test_a_run_judged_through_another_judge_api_is_refused_without_asking(item: Item) -> None:
    Judge.objects.filter(pk=item.run.judge_id).update(api_url="https://judge.elsewhere.example")
    item = Item.objects.select_related("run__judge").get(pk=item.pk)
    before = judge_api_requests()
    with pytest.raises(ItemLogError, match="judged through https://judge.elsewhere.example"):
        item_log_fetch(item=item)
    assert judge_api_requests() == before
    item.refresh_from_db()
    assert item.log_detail is None


def test_a_failing_judge_api_is_a_message_and_keeps_nothing(
    item: Item, offline_judge: Callable[[str], None]
) -> None:
    offline_judge("error=1")
    with pytest.raises(ItemLogError, match="Could not fetch the execution log"):
        item_log_fetch(item=item)
    item.refresh_from_db()
    assert item.log_detail is None
