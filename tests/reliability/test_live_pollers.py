"""50 open live pages poll one run for 60 s while it runs: every reply is a 200 or a 204.

Each poller is a logged-in session that does what the page does: load the run page once, then every
2 s GET the URL in the live header's `hx-get` (its cursor and its rows), and follow the new URL that
a 200 fragment carries; a 204 (nothing changed) keeps the same one.
"""

from __future__ import annotations

import html
import random
import re
import threading
import time
from typing import Any

import httpx
import pytest

from tests.reliability.harness import Deadline, Stack, percentile, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

POLLERS = 50
WINDOW_S = 60.0
PERIOD_S = 2.0
# At least 72 s of judge time (2,400 x 60 ms / 2 lanes): the run outlasts the 60 s window.
ITEMS = 2_400
LIVE_URL = re.compile(r'<section id="run-live"[^>]*?\bhx-get="([^"]+)"')


class Poller(threading.Thread):
    def __init__(self, base_url: str, run_id: int, session_key: str, until: float) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, cookies={"sessionid": session_key}, timeout=30)
        self.run_id = run_id
        self.until = until
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors: list[str] = []
        self.followed = 0
        self.stopped_by_run = False

    def get(self, url: str, *, live: bool = True) -> httpx.Response | None:
        started = time.monotonic()
        try:
            reply = self.client.get(url)
        except httpx.HTTPError as error:
            self.errors.append(f"{url}: {error!r}")
            return None
        if live:
            self.latencies.append(time.monotonic() - started)
        self.statuses[reply.status_code] = self.statuses.get(reply.status_code, 0) + 1
        if reply.status_code not in (200, 204):
            self.errors.append(f"{url}: HTTP {reply.status_code} {reply.text[:200]}")
        return reply

    def run(self) -> None:
        try:
            # Pages are opened at different moments, not all in one instant.
            time.sleep(random.uniform(0, PERIOD_S))
            page = self.get(f"/runs/{self.run_id}/", live=False)
            match = LIVE_URL.search(page.text) if page is not None and page.status_code == 200 else None
            if match is None:
                self.errors.append("the run page has no live header to poll")
                return
            url = html.unescape(match.group(1))
            next_at = time.monotonic() + PERIOD_S
            while next_at < self.until:
                time.sleep(max(next_at - time.monotonic(), 0))  # htmx's `every 2s` timer
                next_at += PERIOD_S
                reply = self.get(url)
                if reply is None or reply.status_code != 200:
                    continue
                match = LIVE_URL.search(reply.text)
                if match is None:
                    self.stopped_by_run = True  # a finished run's header carries no polling attributes
                    return
                if html.unescape(match.group(1)) != url:
                    self.followed += 1
                    url = html.unescape(match.group(1))
        finally:
            self.client.close()


@pytest.mark.timeout(300)
def test_fifty_live_pages_polling_for_a_minute_get_no_error_response(
    stack: Stack, figures: dict[str, Any]
) -> None:
    deadline = Deadline(240)
    stack.start_judge("item_ms=60,lanes=2")
    stack.provision()
    stack.start_web()
    stack.start_worker()
    stack.agent.call("create_user", username="team", password="a-long-test-password")
    sessions = stack.agent.call("sessions", username="team", count=POLLERS)
    run = stack.make_run(ITEMS)
    wait_for(
        lambda: stack.status(run["id"])["done"] > 0,
        timeout=deadline.cap(60),
        what="the run to start producing results",
        diagnose=stack.diagnose(run["id"]),
    )
    started = time.monotonic()
    pollers = [Poller(stack.web_url, run["id"], key, started + WINDOW_S) for key in sessions]
    for poller in pollers:
        poller.start()
    for poller in pollers:
        poller.join(timeout=deadline.cap(WINDOW_S + 60))
    window = time.monotonic() - started
    assert not any(poller.is_alive() for poller in pollers), "a poller hung"
    state = stack.status(run["id"])

    latencies = [seconds * 1000 for poller in pollers for seconds in poller.latencies]
    errors = [error for poller in pollers for error in poller.errors]
    statuses: dict[str, int] = {}
    for poller in pollers:
        for status, count in poller.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + count
    figures.update(
        {
            "pollers": POLLERS,
            "window s": round(window, 1),
            "live requests": len(latencies),
            "page loads": POLLERS,
            "replies by status": statuses,
            "latency p50 ms": round(percentile(latencies, 0.50), 1),
            "latency p95 ms": round(percentile(latencies, 0.95), 1),
            "latency max ms": round(max(latencies, default=0.0), 1),
            "new cursors followed": sum(poller.followed for poller in pollers),
            "run done at the end of the window": f"{state['done']} of {state['total']}",
            "errors": len(errors),
        }
    )
    assert not errors, f"{len(errors)} failed requests, e.g. {errors[:5]}"
    assert not any(poller.stopped_by_run for poller in pollers), (
        "the run finished inside the window: make it longer"
    )
    # Every poller kept polling the whole minute, and the cursors moved with the run.
    assert all(len(poller.latencies) >= WINDOW_S / PERIOD_S - 5 for poller in pollers)
    assert all(poller.followed > 0 for poller in pollers)
    assert not state["finished"]
    # The pump was not starved: the run went on while the pages polled.
    final = wait_for(
        lambda: (current := stack.status(run["id"]))["finished"] and current,
        timeout=deadline.cap(120),
        what="the run to finish after the pollers stopped",
        diagnose=stack.diagnose(run["id"]),
    )
    assert final["status"] == "completed"
