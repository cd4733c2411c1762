"""The noise-check pages: the plan, starting a check (once), bad numbers, and the noise section."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.template.loader import render_to_string
from django.test import Client, RequestFactory

from evals.models import Run, ShareLink
from evals.services.noise import noise_check_create, noise_report
from tests.factories import build_run


def repeat_of(
    run: Run, repeat: int, scores: dict[str, Sequence[float | None]], positions: Sequence[int]
) -> Run:
    check = build_run(scores, dataset=run.dataset, judge=run.judge, positions=positions, thresholds={})
    Run.objects.filter(pk=check.pk).update(noise_of=run, noise_repeat=repeat)
    return check


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def run(db: None) -> Run:
    return build_run({"quality": [0.1 * (index % 10) for index in range(80)]}, name="nightly", thresholds={})


def test_the_plan_says_what_it_will_send_and_to_which_judge(logged_in: Client, run: Run) -> None:
    response = logged_in.get(f"/runs/{run.pk}/noise/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "50 × 2 = 100 items</strong> to Hand judge" in page
    assert "50 of the run’s 80 scored items" in page
    assert 'name="sample"' in page and 'name="repeats"' in page


def test_the_plan_follows_the_numbers_in_the_address(logged_in: Client, run: Run) -> None:
    page = logged_in.get(f"/runs/{run.pk}/noise/?sample=10&repeats=3").content.decode()
    assert "10 × 3 = 30 items" in page


def test_a_sample_larger_than_the_run_is_the_whole_run_and_says_so(logged_in: Client, db: None) -> None:
    small = build_run({"quality": [0.2, 0.4, None, 0.9]})
    page = logged_in.get(f"/runs/{small.pk}/noise/").content.decode()
    assert "3 × 2 = 6 items" in page
    assert "you asked for 50" in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("sample=abc", "Sample: enter a whole number of items."),
        ("sample=0", "Sample: choose between 1 and 1,000 items."),
        ("sample=5000", "Sample: choose between 1 and 1,000 items."),
        ("repeats=9", "Repeats: choose between 1 and 5 repeats."),
        ("repeats=", "Repeats: enter how many repeats."),
        ("sample=" + "9" * 5000, "Sample: enter a whole number of items."),
        ("sample=99999999999999999999", "Sample: choose between 1 and 1,000 items."),
        ("sample=²", "Sample: enter a whole number of items."),
    ],
)
def test_bad_numbers_in_the_address_are_a_400_naming_the_field(
    logged_in: Client, run: Run, query: str, message: str
) -> None:
    response = logged_in.get(f"/runs/{run.pk}/noise/?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_posting_starts_the_check_and_returns_to_the_calibration_page(logged_in: Client, run: Run) -> None:
    response = logged_in.post(f"/runs/{run.pk}/noise/", {"sample": "20", "repeats": "2"})

    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/calibration/#noise"
    assert messages_of(response) == ["Started: 40 items in 2 runs."]
    checks = list(Run.objects.filter(noise_of=run).order_by("noise_repeat"))
    assert [(check.noise_repeat, check.total_count) for check in checks] == [(1, 20), (2, 20)]
    assert all(check.created_by is not None and check.created_by.get_username() == "ada" for check in checks)


def test_a_second_post_returns_to_the_check_under_way_and_sends_nothing(logged_in: Client, run: Run) -> None:
    logged_in.post(f"/runs/{run.pk}/noise/", {"sample": "20", "repeats": "2"})
    response = logged_in.post(f"/runs/{run.pk}/noise/", {"sample": "30", "repeats": "3"})

    assert response["Location"] == f"/runs/{run.pk}/calibration/#noise"
    assert messages_of(response) == [
        "Started: 40 items in 2 runs.",
        "A noise check of this run is already under way: nothing new was sent.",
    ]
    assert Run.objects.filter(noise_of=run).count() == 2
    plan_page = logged_in.get(f"/runs/{run.pk}/noise/").content.decode()
    assert "A noise check of this run is already under way" in plan_page
    assert "Start the noise check" not in plan_page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sample": "0", "repeats": "2"}, "Sample: choose between 1 and 1,000 items."),
        ({"sample": "1e3", "repeats": "2"}, "Sample: enter a whole number of items."),
        ({"sample": "50", "repeats": "6"}, "Repeats: choose between 1 and 5 repeats."),
        ({"sample": "50"}, "Repeats: enter how many repeats."),
    ],
)
def test_bad_numbers_posted_re_render_the_form_with_a_400_and_start_nothing(
    logged_in: Client, run: Run, data: dict[str, str], message: str
) -> None:
    response = logged_in.post(f"/runs/{run.pk}/noise/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert 'name="sample"' in page
    assert not Run.objects.filter(noise_of=run).exists()


def test_a_run_still_running_cannot_be_checked_and_the_page_says_why(logged_in: Client, run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    page = logged_in.get(f"/runs/{run.pk}/noise/").content.decode()
    assert "Wait for the run to finish before re-judging a sample of it." in page
    assert "Start the noise check" not in page
    response = logged_in.post(f"/runs/{run.pk}/noise/", {"sample": "20", "repeats": "2"})
    assert response.status_code == 400
    assert "Wait for the run to finish" in response.content.decode()
    assert not Run.objects.filter(noise_of=run).exists()


def test_unknown_runs_are_404(logged_in: Client, db: None) -> None:
    assert logged_in.get("/runs/999999/noise/").status_code == 404
    assert logged_in.post("/runs/999999/noise/", {"sample": "5", "repeats": "2"}).status_code == 404
    assert logged_in.get("/runs/99999999999999999999999/noise/").status_code == 404


def test_anonymous_visitors_go_to_the_login_page_and_start_nothing(client: Client, run: Run) -> None:
    for response in (
        client.get(f"/runs/{run.pk}/noise/"),
        client.get(f"/runs/{run.pk}/noise/section/"),
        client.post(f"/runs/{run.pk}/noise/", {"sample": "5", "repeats": "2"}),
    ):
        assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Run.objects.filter(noise_of=run).exists()


def test_a_share_link_reaches_no_noise_page(client: Client, run: Run) -> None:
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token("tok-noise"))
    assert client.get("/s/tok-noise/stats/").status_code == 200
    assert client.get("/s/tok-noise/noise/").status_code == 404
    assert client.post("/s/tok-noise/noise/", {"sample": "5", "repeats": "2"}).status_code in (404, 405)
    assert not Run.objects.filter(noise_of=run).exists()


# --- The noise section -----------------------------------------------------------------------------------


def render_section(run: Run, **extra: object) -> str:
    request = RequestFactory().get(f"/runs/{run.pk}/calibration/")
    return render_to_string(
        "dashboard/_noise.html",
        {"noise": noise_report(run=run), "run": run, "noise_plan": None, **extra},
        request,
    )


def test_without_a_check_the_section_says_what_re_judging_does_and_offers_the_form(run: Run) -> None:
    section = render_section(run)
    assert 'id="noise"' in section
    assert "Is the judge consistent?" in section
    assert "re-judging 50 items two more times sends 100 items to the judge" in section
    assert f'action="/runs/{run.pk}/noise/"' in section and 'value="50"' in section and 'value="2"' in section


def test_the_section_shows_spread_and_flips_with_their_intervals(db: None) -> None:
    source = build_run({"quality": [0.5] * 20}, thresholds={"quality": 0.5})
    repeat_of(source, 1, {"quality": [0.5] * 20}, positions=range(20))

    section = render_section(source)

    # No spread at all: SD 0 with a [0, 0] bootstrap interval. No flips in 20 items: Wilson gives
    # 0 to z²/n / (1 + z²/n) = 0.1921 / 1.1921 = 16%.
    assert '0.000 <span class="muted small nowrap">(95% CI 0.000–0.000)</span>' in section
    assert '0 of 20 <span class="muted small nowrap">(0%, 95% CI 0–16%)</span>' in section
    assert "How to read it" in section
    assert "Re-judge a sample" in section


def test_a_check_under_way_is_linked_with_its_progress_and_no_new_one_is_offered(run: Run) -> None:
    runs, _ = noise_check_create(run=run, sample=12, repeats=2, seed=1)
    Run.objects.filter(pk=runs[0].pk).update(completed_count=5)

    section = render_section(run)

    assert "A noise check is under way" in section
    assert f'href="/runs/{runs[0].pk}/"' in section and f'href="/runs/{runs[1].pk}/"' in section
    assert "5 of 12 items judged" in section and "0 of 12 items judged" in section
    assert "A new check can start once this one has finished." in section
    assert f'action="/runs/{run.pk}/noise/"' not in section
    # It refreshes itself from the section's own URL while the check runs.
    assert f'hx-get="/runs/{run.pk}/noise/section/" hx-trigger="every 5s"' in section


def test_the_section_url_serves_the_section_and_stops_polling_once_the_check_finished(
    logged_in: Client, run: Run
) -> None:
    runs, _ = noise_check_create(run=run, sample=12, repeats=2, seed=1)
    polling = logged_in.get(f"/runs/{run.pk}/noise/section/").content.decode()
    assert polling.lstrip().startswith("<section") and "hx-trigger" in polling
    Run.objects.filter(pk__in=[check.pk for check in runs]).update(status=Run.Status.COMPLETED)

    finished = logged_in.get(f"/runs/{run.pk}/noise/section/").content.decode()

    assert "hx-trigger" not in finished and "A noise check is under way" not in finished
    assert logged_in.get("/runs/999999/noise/section/").status_code == 404


def test_the_plan_page_shows_the_results_of_earlier_checks(logged_in: Client, db: None) -> None:
    source = build_run({"quality": [0.4, 0.6]}, thresholds={"quality": 0.5})
    repeat_of(source, 1, {"quality": [0.6, 0.6]}, positions=[0, 1])

    page = logged_in.get(f"/runs/{source.pk}/noise/").content.decode()

    # Row 0: [0.4, 0.6], variance 0.02; row 1: [0.6, 0.6], variance 0: SD = sqrt(0.01) = 0.100.
    # Row 0 fails then passes at 0.5: 1 flip of 2.
    assert "<td data-noise-sd>0.100" in page
    assert '1 of 2 <span class="muted small nowrap">(50%' in page
    # The page's own form starts checks; the section does not repeat it.
    assert page.count('name="sample"') == 1


def test_the_calibration_page_carries_the_noise_section(logged_in: Client, run: Run) -> None:
    page = logged_in.get(f"/runs/{run.pk}/calibration/").content.decode()
    assert 'id="noise"' in page and "Re-judge a sample" in page


def test_the_section_offers_no_form_where_no_check_can_start_and_says_why(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run.refresh_from_db()
    section = render_section(run)
    assert "Wait for the run to finish before re-judging a sample of it." in section
    assert f'action="/runs/{run.pk}/noise/"' not in section

    check = repeat_of(run, 1, {"quality": [0.5] * 5}, positions=range(5))
    check.refresh_from_db()
    section = render_section(check)
    assert "This run is itself a noise check" in section
    assert f'href="/runs/{run.pk}/calibration/#noise"' in section
    assert f'action="/runs/{check.pk}/noise/"' not in section


def test_a_refused_post_says_why_once(logged_in: Client, run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    response = logged_in.post(f"/runs/{run.pk}/noise/", {"sample": "20", "repeats": "2"})
    assert (
        response.content.decode().count("Wait for the run to finish before re-judging a sample of it.") == 1
    )
