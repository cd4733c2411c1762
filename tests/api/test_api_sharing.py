"""API: compare two runs (the regression flag the CI gate reads) and a run's share links."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from evals.models import Run, ShareLink
from tests.factories import build_run

pytestmark = pytest.mark.django_db

BASELINE = [0.6, 0.7, 0.8, 0.9, 0.7, 0.8, 0.9, 0.6]


@pytest.fixture
def baseline() -> Run:
    return build_run({"Politeness": BASELINE, "Concision": [1.0] * 8}, name="baseline")


def candidate(baseline: Run, politeness: list[float], *, concision: float = 1.0) -> Run:
    return build_run(
        {"Politeness": politeness, "Concision": [concision] * 8},
        dataset=baseline.dataset,
        judge=baseline.judge,
        name="candidate",
    )


def compared(client: Client, a: Run, b: Run, **params: str) -> dict[str, Any]:
    response = client.get("/api/v1/compare/", {"a": a.pk, "b": b.pk, **params})
    assert response.status_code == 200, response.content
    return response.json()


def row(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(evaluator for evaluator in body["evaluators"] if evaluator["name"] == name)


# --- Compare ------------------------------------------------------------------------------------------


def test_compare_flags_a_regression_when_b_is_clearly_lower(reader: Client, baseline: Run) -> None:
    worse = candidate(baseline, [score - 0.3 for score in BASELINE])
    body = compared(reader, baseline, worse)
    politeness = row(body, "Politeness")
    assert politeness["regression"] is True and politeness["ci_high"] < 0
    assert politeness["diff"] == pytest.approx(-0.3) and politeness["regressed"] == 8
    assert row(body, "Concision")["regression"] is False
    assert body["regression"] is True
    assert (body["a"]["id"], body["b"]["id"], body["pairs"], body["paired_by"]) == (
        baseline.pk,
        worse.pk,
        8,
        "position",
    )


def test_compare_does_not_flag_a_change_within_noise(reader: Client, baseline: Run) -> None:
    # d = -.1, +.1, 0, -.1, +.1, 0, -.1, +.1: mean 0, the interval straddles 0.
    mixed = candidate(baseline, [0.5, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7])
    body = compared(reader, baseline, mixed)
    assert row(body, "Politeness")["regression"] is False
    assert row(body, "Politeness")["ci_low"] < 0 < row(body, "Politeness")["ci_high"]
    assert body["regression"] is False


def test_compare_threshold_overrides_both_runs_for_every_shared_evaluator(
    reader: Client, baseline: Run
) -> None:
    b = candidate(baseline, BASELINE, concision=0.75)
    plain = compared(reader, baseline, b)
    assert row(plain, "Concision")["threshold_source_a"] != "override"
    body = compared(reader, baseline, b, threshold="0.8")
    for name in ("Politeness", "Concision"):
        evaluator = row(body, name)
        assert (evaluator["threshold_a"], evaluator["threshold_b"]) == (0.8, 0.8)
        assert evaluator["threshold_source_a"] == evaluator["threshold_source_b"] == "override"
    # Concision 1.0 passes at 0.8 in A and 0.75 fails in B: every pair goes from pass to fail.
    assert row(body, "Concision")["pass_to_fail"] == 8


def test_compare_names_the_unknown_or_malformed_run(reader: Client, baseline: Run) -> None:
    response = reader.get("/api/v1/compare/", {"a": baseline.pk, "b": 999_999})
    assert response.status_code == 404 and response["Content-Type"] == "application/problem+json"
    assert "B" in response.json()["detail"] and response.json()["errors"][0]["field"] == "b"
    response = reader.get("/api/v1/compare/", {"a": "seven", "b": baseline.pk})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "a"
    response = reader.get("/api/v1/compare/", {"a": baseline.pk})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "b"


@pytest.mark.parametrize("threshold", ["high", "nan", "inf", "-Infinity"])
def test_compare_refuses_a_threshold_that_is_not_a_finite_number(
    reader: Client, baseline: Run, threshold: str
) -> None:
    response = reader.get("/api/v1/compare/", {"a": baseline.pk, "b": baseline.pk, "threshold": threshold})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "threshold"


# --- Share links --------------------------------------------------------------------------------------


def links_url(run: Run) -> str:
    return f"/api/v1/runs/{run.pk}/share-links/"


def test_a_new_share_link_opens_the_run_until_it_is_revoked(api: Client, baseline: Run) -> None:
    response = api.post(
        links_url(baseline), {"label": "Acme review", "hide_text": True}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    created = response.json()
    token = created["token"]
    assert created["url"] == f"http://testserver/s/{token}/"
    assert (created["label"], created["hide_text"], created["usable"], created["revoked_at"]) == (
        "Acme review",
        True,
        True,
        None,
    )
    assert ShareLink.objects.get().token_hash == ShareLink.hash_token(token)

    visitor = Client()
    assert visitor.get(f"/s/{token}/").status_code == 200

    revoked = api.delete(f"{links_url(baseline)}{created['id']}/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None and revoked.json()["usable"] is False
    assert "token" not in revoked.json()
    assert visitor.get(f"/s/{token}/").status_code == 404


def test_share_links_list_newest_first_by_cursor_without_tokens(api: Client, baseline: Run) -> None:
    ids = [
        api.post(links_url(baseline), {"label": f"link {n}"}, content_type="application/json").json()["id"]
        for n in range(3)
    ]
    other = build_run({"Politeness": [0.5]}, name="other")
    api.post(links_url(other), {}, content_type="application/json")

    first = api.get(links_url(baseline), {"limit": 2}).json()
    assert [link["id"] for link in first["items"]] == [ids[2], ids[1]]
    assert all("token" not in link and "url" not in link for link in first["items"])
    second = api.get(links_url(baseline), {"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [link["id"] for link in second["items"]] == [ids[0]] and second["next_cursor"] is None


def test_a_read_token_lists_share_links_but_cannot_make_or_revoke_them(
    reader: Client, api: Client, baseline: Run
) -> None:
    link_id = api.post(links_url(baseline), {}, content_type="application/json").json()["id"]
    assert reader.get(links_url(baseline)).status_code == 200
    assert reader.post(links_url(baseline), {}, content_type="application/json").status_code == 403
    assert reader.delete(f"{links_url(baseline)}{link_id}/").status_code == 403
    assert ShareLink.objects.get().revoked_at is None


def test_share_link_expiry_must_be_in_the_future_and_carry_a_timezone(api: Client, baseline: Run) -> None:
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = api.post(links_url(baseline), {"expires_at": past}, content_type="application/json")
    assert response.status_code == 422 and "future" in response.json()["detail"]
    response = api.post(
        links_url(baseline), {"expires_at": "2099-01-01T00:00:00"}, content_type="application/json"
    )
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "expires_at"
    later = (timezone.now() + timedelta(days=7)).isoformat()
    response = api.post(links_url(baseline), {"expires_at": later}, content_type="application/json")
    assert response.status_code == 201 and response.json()["expires_at"] is not None
    assert ShareLink.objects.count() == 1


def test_share_links_of_an_unknown_run_or_link_are_404(api: Client, baseline: Run) -> None:
    other = build_run({"Politeness": [0.5]}, name="other")
    link_id = api.post(links_url(other), {}, content_type="application/json").json()["id"]
    assert api.get("/api/v1/runs/999999/share-links/").status_code == 404
    assert (
        api.post("/api/v1/runs/999999/share-links/", {}, content_type="application/json").status_code == 404
    )
    # A link revoked through the wrong run is not found, and stays usable.
    assert api.delete(f"{links_url(baseline)}{link_id}/").status_code == 404
    assert api.delete(f"{links_url(baseline)}{2**70}/").status_code == 404
    assert api.get(f"/api/v1/runs/{2**70}/share-links/").status_code == 404
    assert ShareLink.objects.get().revoked_at is None


def test_a_share_link_label_with_a_nul_or_a_misspelt_field_is_a_422(api: Client, baseline: Run) -> None:
    for body in ({"label": "a\u0000b"}, {"lable": "Acme"}):
        response = api.post(links_url(baseline), body, content_type="application/json")
        assert response.status_code == 422, body
        assert response["Content-Type"] == "application/problem+json"
    assert not ShareLink.objects.exists()
