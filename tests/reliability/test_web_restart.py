"""The web process restarts during a run; the live page open in Chromium recovers by itself.

The page polls its live endpoint every 2 s (htmx `every 2s`). While the server is down those polls
fail; when it is back, polling must go on, scores must keep arriving in the rows on screen without a
reload, and polling must stop when the run finishes.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.reliability.harness import CHROMIUM, Deadline, Stack, in_chromium, wait_for

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.browser]

ITEMS = 600
BATCH_SIZE = 25
PASSWORD = "a-long-test-password"
SCORED_ROWS = "tr.item-row:has(td.verdict .score:not(.score-none))"


@pytest.mark.timeout(300)
def test_the_live_page_recovers_by_itself_when_the_web_process_restarts(
    stack: Stack, figures: dict[str, Any]
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt install chromium)")
    deadline = Deadline(240)
    # At least 30 s of judge time (600 x 100 ms / 2 lanes), first come first served across batches.
    stack.start_judge("item_ms=100,lanes=2")
    stack.provision()
    stack.start_web()
    stack.start_worker()
    stack.agent.call("create_user", username="grace", password=PASSWORD)

    def scenario(page: Any) -> None:
        def pause(seconds: float) -> None:
            page.wait_for_timeout(seconds * 1000)  # lets Playwright deliver the page's events meanwhile

        page.goto(f"{stack.web_url}/login/")
        page.fill("input[name=username]", "grace")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login/" not in url)

        run = stack.make_run(ITEMS, batch_size=BATCH_SIZE)
        live: list[tuple[float, str]] = []  # (when, "200" / "204" / "failed: ...") for every live request
        page.on(
            "response",
            lambda r: live.append((time.monotonic(), str(r.status))) if "/live/" in r.url else None,
        )
        page.on(
            "requestfailed",
            lambda r: live.append((time.monotonic(), f"failed: {r.failure}")) if "/live/" in r.url else None,
        )
        # Newest rows first: the rows on screen are in the last batches, judged last, so their scores
        # arrive after the restart.
        page.goto(f"{stack.web_url}/runs/{run['id']}/?sort=-position")
        page.evaluate("window.__sameDocument = true")
        assert page.locator("#run-live").get_attribute("hx-trigger") == "every 2s"
        rows = page.locator("tr.item-row").count()

        def shown_done() -> int:
            text = page.locator("#run-live").inner_text().replace("\n", " ").replace(",", "")
            match = re.search(r"(\d+) of (\d+) items finished", text)
            return int(match.group(1)) if match else -1

        wait_for(
            lambda: shown_done() >= ITEMS // 10,
            timeout=deadline.cap(60),
            what="the page to show 10% of the run done",
            pause=pause,
            diagnose=stack.diagnose(run["id"]),
        )
        assert stack.web is not None
        stack.web.stop()
        down_at = time.monotonic()
        failed = wait_for(
            lambda: [event for event in live if event[0] > down_at and event[1].startswith("failed")][1:],
            timeout=deadline.cap(20),
            what="two live polls to fail while the server is down (one only: htmx stopped polling after a failure)",
            pause=pause,
        )
        assert not stack.status(run["id"])["finished"], (
            "the run finished while the server was down: make it longer"
        )
        scored_at_restart = page.locator(SCORED_ROWS).count()
        done_at_restart = shown_done()
        stack.start_web()
        up_at = time.monotonic()
        first_ok = wait_for(
            lambda: next((event for event in live if event[0] > up_at and event[1] in ("200", "204")), None),
            timeout=deadline.cap(20),
            what="the page to poll again after the server came back (does htmx stop polling after a failure?)",
            pause=pause,
        )
        wait_for(
            lambda: page.locator("#run-live .badge-completed").count(),
            timeout=deadline.cap(120),
            what="the page to show the run completed",
            pause=pause,
            diagnose=stack.diagnose(run["id"]),
        )
        finished_at = time.monotonic()
        figures.update(
            {
                "server down s": round(up_at - down_at, 1),
                "live polls failed while down": len(failed) + 1,
                "first good poll after the server was back s": round(first_ok[0] - up_at, 1),
                "rows on screen scored at restart / at the end": f"{scored_at_restart} / {page.locator(SCORED_ROWS).count()} of {rows}",
                "items shown done at restart": done_at_restart,
                "live requests": len(live),
            }
        )
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        assert page.locator(SCORED_ROWS).count() == rows, "some rows on screen never got their scores"
        assert scored_at_restart < rows, (
            "every row on screen was scored before the restart: the test proves nothing"
        )
        assert shown_done() == ITEMS
        assert any(event[0] > up_at and event[1] == "200" for event in live), (
            "no update arrived after the restart"
        )
        # Polling stops with the run: the header has no polling attributes, and no request goes out over
        # more than two polling periods.
        assert page.locator("#run-live").get_attribute("hx-trigger") is None
        assert page.locator("#run-live").get_attribute("hx-get") is None
        polled = len(live)
        page.wait_for_timeout(4_500)
        assert len(live) == polled, f"{len(live) - polled} live requests after the run finished"
        figures["polls after the run finished (4.5 s)"] = len(live) - polled
        figures["run finished after restart s"] = round(finished_at - up_at, 1)

    in_chromium(scenario, timeout=deadline.left())
