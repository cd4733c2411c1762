"""One item's execution log, fetched when a teammate asks for it on the item page.

The log gives the item its cost, model and latency (kept in `Item.log_detail`, so the page shows them
without asking again). It never changes the run's thresholds: those are learned once
(evals.services.thresholds).
"""

from __future__ import annotations

from evals.client import JudgeAPI, JudgeError
from evals.models import Item
from evals.services.judges import judge_api


class ItemLogError(Exception):
    """The log could not be had; the message is for the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def item_log_fetch(*, item: Item, api: JudgeAPI | None = None) -> Item:
    """Fetch the item's execution log from the judge API and keep it on the item.

    Raises ItemLogError when the item has no log yet, when its run was judged through another judge
    API than the one configured now (whose logs cannot be read from here), or when the API fails.
    """
    if not item.execution_log_id:
        raise ItemLogError(
            "The judge has not given this item an execution log (it has not finished, or it failed)."
        )
    with judge_api(api) as client:
        judged_through = item.run.judge.api_url.rstrip("/")
        if judged_through and judged_through != client.base_url.rstrip("/"):
            raise ItemLogError(
                f"This run was judged through {judged_through}, and Docket now talks to {client.base_url}: "
                "its execution logs cannot be fetched from here."
            )
        try:
            log = client.get_execution_log(item.execution_log_id)
        except JudgeError as exc:
            raise ItemLogError(f"Could not fetch the execution log: {exc.message}") from exc
    item.log_detail = log.as_dict()
    item.save(update_fields=["log_detail"])
    return item
