"""The run form of issue 14: evaluator checkboxes, project id, spending cap with the estimate beside it,
custom judge inputs said plainly; the judge page's inputs; ids and cost on the item page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from evals.models import Dataset, Example, Judge, Run
from evals.services.sharing import share_link_create
from tests.conftest import RAG_JUDGE, SUPPORT_JUDGE
from tests.factories import build_run, make_judge

pytestmark = pytest.mark.usefixtures("offline_judge")

PROJECT = "0f8fad5b-d9cb-469f-a165-70867728950e"


def text(html: str) -> str:
    """The page's text, tags stripped and spaces collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def checkboxes(html: str) -> dict[str, bool]:
    """{evaluator id: ticked} of the evaluator checkboxes."""
    found = {}
    for tag in re.findall(r'<input type="checkbox" name="evaluators"[^>]*>', html):
        value = re.search(r'value="([^"]+)"', tag)
        assert value is not None
        found[value.group(1)] = " checked" in tag
    return found


def ids(judge: Judge) -> dict[str, str]:
    return {e["name"]: e["id"] for e in judge.evaluators}


def post(client: Client, dataset: Dataset, judge: Judge, **fields: object) -> Any:
    data: dict[str, object] = {"dataset": dataset.pk, "judge": judge.pk, "batch_size": 100, **fields}
    return client.post("/runs/new/", data)


def test_the_form_offers_the_judges_evaluators_all_ticked_with_project_and_cap_defaults(
    logged_in: Client,
    settings: SettingsWrapper,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
) -> None:
    settings.SCORABLE_PROJECT_ID = PROJECT
    settings.DOCKET_DEFAULT_MAX_COST = 5.0
    judge = judges[SUPPORT_JUDGE]
    html = logged_in.get(f"/runs/new/?dataset={make_dataset(3).pk}&judge={judge.pk}").content.decode()
    assert checkboxes(html) == dict.fromkeys(ids(judge).values(), True)
    assert f'name="evaluators_for" value="{judge.pk}"' in html
    assert re.search(rf'name="project_id" value="{PROJECT}"', html)
    assert re.search(r'name="max_cost" value="5\.0"', html)
    page = text(html)
    assert "All ticked runs the whole judge" in page and "Spending cap $5.00. " in page


def test_ticking_some_evaluators_starts_an_evaluator_set_run(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge, dataset = judges[SUPPORT_JUDGE], make_dataset(4)
    chosen = ids(judge)
    # The summary follows the ticks: two of the four evaluators, as a set.
    query = f"dataset={dataset.pk}&judge={judge.pk}&evaluators_for={judge.pk}"
    query += f"&evaluators={chosen['Politeness']}&evaluators={chosen['PII safety']}"
    summary = text(logged_in.get(f"/runs/new/?{query}", HTTP_HX_REQUEST="true").content.decode())
    assert "Evaluators 2 an evaluator set" in summary
    assert "Evaluators in the set PII safety Politeness" in summary

    response = post(
        logged_in,
        dataset,
        judge,
        evaluators_for=judge.pk,
        evaluators=[chosen["Politeness"], chosen["PII safety"]],
    )
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    # In the judge's order, not the order ticked.
    assert run.evaluators == ["PII safety", "Politeness"]
    assert run.evaluator_ids == [chosen["PII safety"], chosen["Politeness"]]
    # The run says it is a set, and which.
    assert "only PII safety, Politeness" in text(logged_in.get(f"/runs/{run.pk}/").content.decode())


def test_no_evaluator_ticked_is_refused_and_the_form_says_so(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    judge = judges[SUPPORT_JUDGE]
    response = post(logged_in, make_dataset(2), judge, evaluators_for=judge.pk)
    assert response.status_code == 200  # the form again, the field named
    assert "Tick at least one evaluator" in response.content.decode()
    assert not Run.objects.exists()


def test_ticks_left_from_another_judge_run_the_whole_new_judge(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    support, rag = judges[SUPPORT_JUDGE], judges[RAG_JUDGE]
    dataset = make_dataset(2, contexts=["Settings holds the reset button."])
    response = post(
        logged_in, dataset, rag, evaluators_for=support.pk, evaluators=[ids(support)["Politeness"]]
    )
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.evaluator_ids == [] and run.evaluators == rag.evaluator_names


def test_the_summary_swaps_the_checkboxes_only_when_the_judge_changed(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    support, rag = judges[SUPPORT_JUDGE], judges[RAG_JUDGE]
    base = f"/runs/new/?dataset={make_dataset(2).pk}"
    changed = logged_in.get(f"{base}&judge={rag.pk}&evaluators_for={support.pk}", HTTP_HX_REQUEST="true")
    html = changed.content.decode()
    assert html.lstrip().startswith('<div id="preflight">')
    assert 'id="evaluator-choices"' in html and 'hx-swap-oob="true"' in html
    assert checkboxes(html) == dict.fromkeys(ids(rag).values(), True)
    # A tick on the same judge's boxes keeps them (and the focus on the box just ticked).
    same = logged_in.get(f"{base}&judge={rag.pk}&evaluators_for={rag.pk}", HTTP_HX_REQUEST="true")
    assert 'id="evaluator-choices"' not in same.content.decode()
    # The estimate beside the cap is refreshed every time.
    assert 'id="cost-hint" aria-live="polite" hx-swap-oob="true"' in same.content.decode()


@pytest.mark.parametrize(
    ("cap", "message"),
    [
        ("0", "The spending cap must be more than $0"),
        ("-3", "The spending cap must be more than $0"),
        ("lots", "Enter an amount such as 5 or 12.50"),
    ],
)
def test_a_bad_cap_is_named_on_the_form(
    cap: str,
    message: str,
    logged_in: Client,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
) -> None:
    response = post(logged_in, make_dataset(2), judges[SUPPORT_JUDGE], max_cost=cap)
    assert response.status_code == 200  # the form again, the field named
    html = response.content.decode()
    errors = re.search(r'name="max_cost".*?<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    assert errors is not None and message in errors.group(1)
    assert not Run.objects.exists()


def test_an_emptied_cap_means_no_cap_and_an_unsent_one_the_default(
    logged_in: Client,
    settings: SettingsWrapper,
    judges: dict[str, Judge],
    make_dataset: Callable[..., Dataset],
) -> None:
    settings.DOCKET_DEFAULT_MAX_COST = 5.0
    dataset, judge = make_dataset(2), judges[SUPPORT_JUDGE]
    assert post(logged_in, dataset, judge, max_cost="").status_code == 302
    assert post(logged_in, dataset, judge, max_cost="2.5").status_code == 302
    assert post(logged_in, dataset, judge).status_code == 302
    assert list(Run.objects.order_by("pk").values_list("max_cost", flat=True)) == [None, 2.5, 5.0]


def test_a_project_id_that_is_not_a_uuid_is_named_on_the_form(
    logged_in: Client, judges: dict[str, Judge], make_dataset: Callable[..., Dataset]
) -> None:
    response = post(logged_in, make_dataset(2), judges[SUPPORT_JUDGE], project_id="marketing")
    assert response.status_code == 200  # the form again, the field named
    html = response.content.decode()
    errors = re.search(r'name="project_id".*?<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    assert errors is not None and "is not a UUID" in errors.group(1)
    response = post(logged_in, make_dataset(2), judges[SUPPORT_JUDGE], project_id=PROJECT.upper())
    assert response.status_code == 302 and Run.objects.get().project_id == PROJECT


def test_a_custom_judge_input_is_said_plainly_and_does_not_block(
    logged_in: Client, make_dataset: Callable[..., Dataset]
) -> None:
    judge = make_judge("Catalogue judge", evaluators=["Accuracy"])
    judge.inputs = {"response": {"type": "string"}, "product_name": {"type": "string"}}
    judge.save()
    dataset = make_dataset(3)
    dataset.columns = ["question", "answer", "product_name"]
    dataset.save(update_fields=["columns"])
    html = logged_in.get(f"/runs/new/?dataset={dataset.pk}&judge={judge.pk}").content.decode()
    page = text(html)
    assert (
        "This judge asks for product_name , which batch inputs cannot carry: its evaluators will see it "
        "empty, in all 3 rows." in page
    )
    assert "The dataset's column product_name is not sent." in page
    assert "✗ product_name (custom)" in page and "✓ response" in page
    assert re.search(r'<button type="submit" form="run-form" class="button button-primary">Start run', html)


def test_the_judge_page_marks_standard_and_custom_inputs_and_offers_single_evaluator_runs(
    logged_in: Client, judges: dict[str, Judge]
) -> None:
    judge = judges[RAG_JUDGE]
    # The page shows the judge as stored (it never fetches it while rendering): these edits show.
    judge.inputs = {**judge.inputs, "product_name": {"type": "string"}}
    judge.version_id = "0b0e8a3e-2c58-4f57-8f36-3c8ac4a30c0d"
    judge.save()
    html = logged_in.get(f"/judges/{judge.pk}/").content.decode()
    rows = dict(
        re.findall(
            r"<tr><td><code>([^<]+)</code></td>.*?<span class=\"badge[^\"]*\">(\w+)</span>", html, re.S
        )
    )
    assert rows == {
        "response": "standard",
        "request": "standard",
        "contexts": "standard",
        "product_name": "custom",
    }
    assert "which Scorable's batch inputs have no field for" in text(html)
    relevance = ids(judge)["Request relevance"]
    assert f"evaluators_for={judge.pk}&amp;evaluators={relevance}" in html


def test_the_item_page_shows_ids_and_cost_but_a_text_hiding_link_does_not_show_ids(
    logged_in: Client, client: Client
) -> None:
    run = build_run({"Accuracy": [0.9], "Brevity": [0.4]})
    Example.objects.filter(dataset=run.dataset).update(user_id="ada@example.com", session_id="chat-7")
    item = run.items.get()
    item.cost = 0.0123
    item.evaluator_costs = {"Accuracy": 0.01, "Brevity": 0.0023}
    item.save(update_fields=["cost", "evaluator_costs"])
    page = text(logged_in.get(f"/runs/{run.pk}/items/{item.pk}/").content.decode())
    assert "User id ada@example.com Session id chat-7" in page
    assert "Cost $0.0123 from the judge's execution logs, 2 evaluators" in page
    # Each verdict carries its evaluator's share: $0.01 and $0.0023 (below a cent: 3 significant digits).
    assert "cost $0.0100" in page and "cost $0.00230" in page

    _, token = share_link_create(run=run, created_by=None, hide_text=True)
    client.logout()  # the same client: a stranger with the link
    shared = text(client.get(f"/s/{token}/items/{item.pk}/").content.decode())
    assert "ada@example.com" not in shared and "chat-7" not in shared
    assert "User id hidden by the share link" in shared and "Cost $0.0123" in shared
