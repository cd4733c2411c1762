"""What of a run its reader may see (`Visibility`): everything for teammates, less through a share link.

Applied where rows are read (`evals.selectors.results`, the exports), so a page or export made for a
link never holds what the link hides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from evals.models import INPUT_FIELDS, Item, Run

# An example's text, as the judge was given it; a share link may hide all of it. Metadata stays.
TEXT_FIELDS = INPUT_FIELDS
# The row's key (a column of the user's, e.g. a case id that may name a customer) goes with the texts.
TEXT_COLUMNS = (*TEXT_FIELDS, "input_key")
HIDDEN_MESSAGE = "The judge's message is hidden by this share link (it may quote the text)."
# Ids of the judge API (batches, execution logs, evaluators, judge versions: all UUIDs) and of Docket
# (batch tags `docket:<uuid>:<n>`), and the judge API's address, as they appear inside messages.
_ID = re.compile(r"\b[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\b", re.IGNORECASE)
_URL = re.compile(r"https?://\S+")


def mask_ids(text: str) -> str:
    """A message with the ids and addresses it names replaced by "[id]" and "[address]"."""
    return _URL.sub("[address]", _ID.sub("[id]", text))


@dataclass(frozen=True)
class Visibility:
    """What of a run its reader may see: everything for teammates, less through a share link.

    texts: each row's request, response, contexts, expected output, turns and system prompt (and the
    judge's messages, which may quote them). justifications: the evaluators' justifications (they may
    quote the text too). internal_ids: the judge API's and Docket's ids, the judge API's address, who
    started the run.
    """

    texts: bool = True
    justifications: bool = True
    internal_ids: bool = True

    @property
    def everything(self) -> bool:
        return self.texts and self.justifications and self.internal_ids

    @property
    def searchable(self) -> tuple[str, ...]:
        """What the results search reads: "text" (request and response) and "justifications", as shown."""
        return (("text",) if self.texts else ()) + (("justifications",) if self.justifications else ())

    def message(self, text: str) -> str:
        """A message from the judge API (or Docket's words around one), as this reader may see it."""
        if not text or self.everything:
            return text
        if not self.texts:
            return HIDDEN_MESSAGE
        return mask_ids(text) if not self.internal_ids else text

    def redact_run(self, run: Run) -> Run:
        """Blank what this reader may not see on a run loaded for one request (it is never saved)."""
        if self.everything:
            return run
        run.last_error = self.message(run.last_error)
        if run.backoff_reason.startswith("judge API error"):
            run.backoff_reason = "judge API error" if not self.texts else self.message(run.backoff_reason)
        if not self.internal_ids:
            run.judge_version_id = ""
            run.created_by = None
            if Run.judge.is_cached(run):
                judge = run.judge
                judge.api_url = judge.remote_id = judge.version_id = ""
                judge.evaluators = [{"name": evaluator.get("name", "")} for evaluator in judge.evaluators]
        if Run.retry_of.is_cached(run) and run.retry_of is not None:
            self.redact_run(run.retry_of)
        return run

    def redact_item(self, item: Item) -> Item:
        """Blank what this reader may not see on an item read by `items_with_details` (never saved)."""
        if self.everything:
            return item
        if not self.texts and Item.example.is_cached(item):
            example = item.example
            example.request = example.response = example.expected_output = example.system_prompt = ""
            example.input_key = ""
            example.contexts = []
            example.turns = None
        # A cancelled item's note is Docket's own ("Cancelled before it was sent."), never the judge's.
        if item.status != Item.Status.CANCELLED:
            item.error_message = self.message(item.error_message)
        if not self.internal_ids:
            item.execution_log_id = ""
            if Item.batch.is_cached(item) and item.batch is not None:
                item.batch.remote_id = item.batch.lease_owner = ""
                item.batch.last_error = self.message(item.batch.last_error)
        if Item.run.is_cached(item):
            self.redact_run(item.run)
        for score in item.scores.all():
            if not self.justifications:
                score.justification = ""
            if not self.internal_ids:
                score.evaluator_id = ""
        return item


ALL = Visibility()
