"""Judges: what the configured judge API offers, cached locally so pages never wait on it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from evals.client import JudgeAPI, JudgeError, JudgeInfo, judge_api_root
from evals.models import Judge

logger = logging.getLogger("evals.judges")

# Judges the watchdog reads in full in one round; the rest wait for the next minute.
REFRESH_LIMIT = 5


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    unlisted: int

    @property
    def total(self) -> int:
        return self.added + self.updated


@contextmanager
def judge_api(api: JudgeAPI | None = None) -> Iterator[JudgeAPI]:
    """`api` when the caller has one (a command's, with Patience; a test's), left open for its owner;
    else a client from the settings, closed on leaving."""
    if api is not None:
        yield api
        return
    with JudgeAPI.from_settings() as own:
        yield own


def current_api_url() -> str:
    """JUDGE_API_URL in the normal form judges store and JudgeAPI.base_url has (no slash or /v1 at the end)."""
    return judge_api_root(str(settings.JUDGE_API_URL))


def judges_for_current_api() -> QuerySet[Judge]:
    # Judges synced before the URL was kept in one normal form may carry another spelling of the same
    # API; the next sync stores the normal form.
    root = current_api_url()
    return Judge.objects.filter(api_url__in=[root, f"{root}/", f"{root}/v1", f"{root}/v1/"])


def judges_sync(*, api: JudgeAPI | None = None) -> SyncResult:
    """Fetch every judge the API lists and store it; judges no longer listed are kept but marked.

    Raises JudgeError when the API cannot be read; nothing is changed then. A command passes an `api`
    with Patience, so a throttled or failing API is waited out instead of failing the command.
    """
    with judge_api(api) as client:
        remote = list(client.list_judges())
    now = timezone.now()
    added = updated = 0
    with transaction.atomic():
        # Where one judge is stored under two spellings of the URL, the normal one is kept up to date.
        stored = sorted(judges_for_current_api(), key=lambda judge: judge.api_url == current_api_url())
        existing = {judge.remote_id: judge for judge in stored}
        for info in remote:
            judge = existing.pop(info.id, None)
            if judge is None:
                judge = Judge(api_url=current_api_url(), remote_id=info.id, source=settings.JUDGE_API_SOURCE)
                added += 1
            else:
                # The normal form, which runs compare with the client's base URL (services/thresholds.py).
                judge.api_url = current_api_url()
                updated += 1
            _apply(judge, info, now=now)
            judge.save()
        unlisted = [judge.pk for judge in existing.values() if judge.is_listed]
        Judge.objects.filter(pk__in=unlisted).update(is_listed=False)
    return SyncResult(added=added, updated=updated, unlisted=len(unlisted))


class JudgeLookupError(ValueError):
    """A name that picks out no judge, or more than one; the message is for the user."""


def judge_find(wanted: str, *, api: JudgeAPI | None = None) -> Judge:
    """The listed judge of the current judge API that `wanted` names: its name (any case), its remote
    id, or Docket's number for it.

    When nothing matches, the judges are synced from the API once (the judge may have been made there
    since the last sync) and looked up again. Raises JudgeError when that sync fails, JudgeLookupError
    when no judge, or more than one, matches.
    """
    found = _judges_named(wanted)
    if not found:
        judges_sync(api=api)
        found = _judges_named(wanted)
    if not found:
        names = ", ".join(judges_for_current_api().filter(is_listed=True).values_list("name", flat=True))
        raise JudgeLookupError(f'No judge is called "{wanted}". Judges: {names or "none"}.')
    if len(found) > 1:
        raise JudgeLookupError(f'"{wanted}" names {len(found)} judges; use the judge id instead.')
    return found[0]


def _judges_named(wanted: str) -> list[Judge]:
    query = Q(remote_id=wanted) | Q(name__iexact=wanted)
    # isdigit() alone accepts "²" (int() refuses it); 18 digits always fit the id column.
    if wanted.isascii() and wanted.isdigit() and len(wanted) <= 18:
        query |= Q(pk=int(wanted))
    return list(judges_for_current_api().filter(is_listed=True).filter(query))


def judge_refresh(*, judge: Judge, api: JudgeAPI | None = None) -> Judge:
    """Fetch one judge's detail (the only place its current version_id appears) and store it."""
    with judge_api(api) as client:
        info = client.get_judge(judge.remote_id)
    _apply(judge, info, now=timezone.now())
    judge.save()
    return judge


def judges_refresh_due(*, api: JudgeAPI | None = None, limit: int = REFRESH_LIMIT) -> int:
    """Read in full the listed judges whose version is not known yet (a sync lists judges without it),
    so that judge pages need not ask while they render; first list the judges, when none is stored.

    Called by the watchdog every minute, so bounded: at most `limit` judges, longest unsynced first, and
    it stops at the first passing failure (the judge API is probably down; the next round tries again).
    A judge the API refuses for good is skipped. Returns how many judges were read.
    """
    refreshed = 0
    with judge_api(api) as client:
        if not judges_for_current_api().exists():
            # Nothing read from this judge API yet (a new install, or a new API): list its judges first.
            judges_sync(api=client)
        due = list(
            judges_for_current_api().filter(is_listed=True, version_id="").order_by("synced_at", "pk")[:limit]
        )
        for judge in due:
            try:
                judge_refresh(judge=judge, api=client)
            except JudgeError as error:
                logger.info("judge %s: not read in full (%s)", judge.pk, error.message)
                if not error.permanent:
                    break
            else:
                refreshed += 1
    return refreshed


def _apply(judge: Judge, info: JudgeInfo, *, now: datetime) -> None:
    judge.name = info.name
    judge.intent = info.intent
    judge.inputs = info.inputs
    judge.evaluators = [
        {
            "id": evaluator.id,
            "name": evaluator.name,
            "model": evaluator.model,
            "intent": evaluator.intent,
            "version_id": evaluator.version_id,
        }
        for evaluator in info.evaluators
    ]
    # List rows carry no version_id; keep the one a detail fetch gave.
    if info.version_id:
        judge.version_id = info.version_id
    judge.remote_created_at = info.created_at
    judge.synced_at = now
    judge.is_listed = True
