"""The calibration page: per-evaluator cards with intervals and the matrix, the items behind a cell,
pooling, empty states, and no 500 for addresses that name nothing."""

from __future__ import annotations

import html
import re
import secrets

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dashboard.views.calibration import interval_text
from evals.models import Item, Run, ShareLink
from evals.services.intervals import Interval
from evals.services.reviews import review_save
from tests.factories import NAME, WORKED_LABELS, build_run, make_judge, review_all, worked_example_run

pytestmark = pytest.mark.django_db


def text_of(response: object) -> str:
    return html.unescape(response.content.decode())  # type: ignore[attr-defined]


def person(username: str) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username=username, password="a-long-test-password")


def test_the_page_shows_agreement_with_intervals_a_reading_and_the_matrix(
    logged_in: Client, user: AbstractBaseUser
) -> None:
    run = worked_example_run()
    review_all(run, WORKED_LABELS, reviewer=user)
    page = logged_in.get(f"/runs/{run.pk}/calibration/")
    assert page.status_code == 200
    body = text_of(page)
    assert "<h1>Calibration" in body
    # The worked example: accuracy 0.70, kappa 0.40 ("fair" in Landis and Koch's words), over 50 items.
    assert re.search(r"0\.70 \(95% CI 0\.5\d–0\.8\d\)", body)
    assert re.search(r"0\.40 \(95% CI 0\.1\d–0\.6\d\)", body)
    assert "fair agreement" in body
    assert "35 of 50 reviews agree" in body
    # Each count links to its items: 20, 5, 10 and 15 reviews.
    for cell, count in [
        ("judge_pass_human_pass", 20),
        ("judge_pass_human_fail", 5),
        ("judge_fail_human_pass", 10),
        ("judge_fail_human_fail", 15),
    ]:
        assert f'href="?evaluator={NAME}&cell={cell}#cell" aria-label="{count} reviews' in body
    assert "judged at threshold 0.5" in body
    assert 'aria-current="page">Calibration</a>' in body
    # One reviewer: no reviewer agreement section; no corrected scores: no MAE.
    assert "Agreement between reviewers" not in body
    assert "Mean absolute error" not in body


def test_corrected_scores_and_a_second_reviewer_add_their_sections(
    logged_in: Client, user: AbstractBaseUser
) -> None:
    run = build_run({NAME: [0.1, 0.4, 0.4, 0.8, 0.9]}, thresholds={NAME: 0.5})
    review_all(run, ["fail", "fail", "pass", "pass", "pass"], reviewer=user, scores=[0.2, 0.2, 0.6, 0.5, 1.0])
    review_all(run, ["fail", "pass", None, None, None], reviewer=person("bob"))
    body = text_of(logged_in.get(f"/runs/{run.pk}/calibration/"))
    # MAE (0.1 + 0.2 + 0.2 + 0.3 + 0.1) / 5 = 0.180 and rho 29/38 = 0.76 (test_calibration's worked pairs).
    assert re.search(r"Mean absolute error</dt><dd>0\.180 \(95% CI", body)
    assert re.search(r"Spearman’s rho</dt><dd>0\.76 \(95% CI", body)
    assert "Agreement between reviewers" in body
    # Two items reviewed by both: (fail, fail) and (fail, pass); P̄ = (1 + 0) / 2 = 0.5,
    # p_fail = 3/4, p_pass = 1/4: P_e = 0.625, kappa = (0.5 - 0.625) / 0.375 = -0.33.
    assert re.search(r"Fleiss’ kappa</dt><dd>−0\.33 \(95% CI −1\.00 to ", body)
    assert "poor: worse than chance" in body


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (Interval(0.8, 0.66, 0.92), "0.80 (95% CI 0.66–0.92)"),
        (Interval(-0.111, -0.25, 0.031), "−0.11 (95% CI −0.25 to 0.03)"),
        (Interval(-0.001, -0.004, 0.2), "0.00 (95% CI 0.00–0.20)"),
        (Interval(0.5), "0.50"),
        (Interval(None), "—"),
        (None, "—"),
    ],
)
def test_intervals_read_as_an_estimate_and_its_range(interval: Interval | None, text: str) -> None:
    assert interval_text(interval) == text


def test_an_unreviewed_run_says_what_to_do(logged_in: Client) -> None:
    run = build_run({NAME: [0.9, 0.2]}, thresholds={NAME: 0.5})
    page = logged_in.get(f"/runs/{run.pk}/calibration/")
    assert page.status_code == 200
    body = text_of(page)
    assert "No reviews yet" in body
    assert "Nobody has reviewed this run yet." in body
    assert "?pooled=1" in body


def test_kappa_undefined_is_shown_with_its_reason(logged_in: Client, user: AbstractBaseUser) -> None:
    run = build_run({NAME: [0.9, 0.8]}, thresholds={NAME: 0.5})
    review_all(run, ["pass", "pass"], reviewer=user)
    body = text_of(logged_in.get(f"/runs/{run.pk}/calibration/"))
    assert "undefined" in body
    assert "Every judge verdict and every review is pass" in body


def test_a_cell_lists_its_items_with_links_to_each_items_own_run(
    logged_in: Client, user: AbstractBaseUser
) -> None:
    judge = make_judge("Support judge", evaluators=[NAME])
    first = build_run({NAME: [0.9, 0.2]}, judge=judge, thresholds={NAME: 0.5}, name="monday")
    second = build_run({NAME: [0.8]}, judge=judge, thresholds={NAME: 0.5}, name="tuesday")
    first_items = list(Item.objects.filter(run=first).order_by("position"))
    review_save(
        item=first_items[0], evaluator=NAME, reviewer=user, label="fail", comment="Invented a refund."
    )
    review_save(item=first_items[1], evaluator=NAME, reviewer=user, label="fail")
    (second_item,) = Item.objects.filter(run=second)
    review_save(item=second_item, evaluator=NAME, reviewer=user, label="fail", comment="Off topic.")

    page = logged_in.get(f"/runs/{first.pk}/calibration/?evaluator={NAME}&cell=judge_pass_human_fail")
    assert page.status_code == 200
    body = text_of(page)
    assert f"{NAME}: judge pass, reviewer fail" in body
    assert f'href="/runs/{first.pk}/items/{first_items[0].pk}/"' in body
    assert "Invented a refund." in body
    assert "Off topic." not in body  # another run's review, not pooled
    assert "1 item, in run and row order." in body

    pooled = text_of(
        logged_in.get(f"/runs/{first.pk}/calibration/?pooled=1&evaluator={NAME}&cell=judge_pass_human_fail")
    )
    assert "pooled over 2 runs of Support judge" in pooled
    assert f'href="/runs/{second.pk}/items/{second_item.pk}/"' in pooled
    assert "Off topic." in pooled
    assert "2 items, in run and row order." in pooled


def test_an_empty_cell_says_so(logged_in: Client, user: AbstractBaseUser) -> None:
    run = build_run({NAME: [0.9]}, thresholds={NAME: 0.5})
    review_all(run, ["pass"], reviewer=user)
    page = logged_in.get(f"/runs/{run.pk}/calibration/?evaluator={NAME}&cell=judge_fail_human_fail")
    assert page.status_code == 200
    assert f"No review puts an item of {NAME} in this cell." in text_of(page)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"evaluator={NAME}&cell=everything", "cell:"),
        ("evaluator=Nobody&cell=judge_pass_human_pass", "evaluator:"),
        (f"evaluator={NAME}", "cell:"),
        ("cell=judge_pass_human_pass", "evaluator:"),
        ("evaluator=&cell=", "evaluator:"),
        ("pooled=banana", "pooled:"),
        # NULs are taken out before any view: both are empty.
        ("evaluator=%00&cell=%00", "evaluator:"),
    ],
)
def test_bad_parameters_get_a_400_naming_the_field_and_the_report_still_shows(
    logged_in: Client, user: AbstractBaseUser, query: str, field: str
) -> None:
    run = build_run({NAME: [0.9]}, thresholds={NAME: 0.5})
    review_all(run, ["pass"], reviewer=user)
    page = logged_in.get(f"/runs/{run.pk}/calibration/?{query}")
    assert page.status_code == 400
    body = text_of(page)
    assert field in body
    assert "1 of 1 reviews agree" in body


def test_unknown_runs_are_404_and_strangers_are_sent_to_log_in(client: Client, logged_in: Client) -> None:
    assert logged_in.get("/runs/999999/calibration/").status_code == 404
    run = build_run({NAME: [0.9]}, thresholds={NAME: 0.5})
    client.logout()
    page = client.get(f"/runs/{run.pk}/calibration/")
    assert page.status_code == 302
    assert page["Location"].startswith("/login/")


def test_a_share_link_cannot_reach_the_calibration_page(client: Client) -> None:
    run = build_run({NAME: [0.9]}, thresholds={NAME: 0.5})
    token = secrets.token_urlsafe(32)
    ShareLink.objects.create(run=run, token_hash=ShareLink.hash_token(token))
    assert client.get(f"/s/{token}/stats/").status_code == 200
    assert client.get(f"/s/{token}/calibration/").status_code == 404


def test_pooled_page_names_the_runs_and_leaves_out_other_judges(
    logged_in: Client, user: AbstractBaseUser
) -> None:
    judge = make_judge("Support judge", evaluators=[NAME])
    first = build_run({NAME: [0.9]}, judge=judge, thresholds={NAME: 0.5}, name="monday")
    second = build_run({NAME: [0.9]}, judge=judge, thresholds={NAME: 0.5}, name="tuesday")
    stranger = build_run({NAME: [0.9]}, thresholds={NAME: 0.5}, name="other judge's run")
    for run in (first, second, stranger):
        review_all(run, ["pass"], reviewer=user)
    body = text_of(logged_in.get(f"/runs/{first.pk}/calibration/?pooled=1"))
    assert "pooled over 2 runs of Support judge" in body
    assert "monday" in body and "tuesday" in body
    assert "other judge's run" not in body
    assert "2 of 2 reviews agree" in body


# Text that survives the trip through a URL (no lone surrogates: a URL cannot carry one).
url_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
calibration_params = st.lists(
    st.tuples(
        st.sampled_from(["pooled", "evaluator", "cell"]),
        st.sampled_from([NAME, "judge_pass_human_fail", "1", "", "0", "9" * 30]) | url_text,
    ),
    max_size=4,
)


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(params=calibration_params)
def test_no_query_string_gets_a_500(
    logged_in: Client, user: AbstractBaseUser, params: list[tuple[str, str]]
) -> None:
    run = Run.objects.filter(name="fuzzed").first()
    if run is None:
        run = build_run({NAME: [0.9, 0.2]}, thresholds={NAME: 0.5}, name="fuzzed")
        review_all(run, ["fail", "fail"], reviewer=user)
    response = logged_in.get(f"/runs/{run.pk}/calibration/", params)
    assert response.status_code in (200, 400), (params, response.content[:300])
