"""Hand-made examples where the right verdict is known, and justifications that say why."""

from __future__ import annotations

from offline_judge import evaluators as ev
from offline_judge.inputs import ItemInput
from offline_judge.services import Runner, evaluate
from tests.offline_judge.harness import JUDGES, RAG

CONTEXTS = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, on the Seine.",
    "It was completed in 1889 as the entrance arch of the World's Fair.",
)


def test_a_response_copying_the_contexts_is_fully_supported() -> None:
    verdict = ev.context_support(ev.EvalInput(response=" ".join(CONTEXTS), contexts=CONTEXTS))
    assert verdict.score == 1.0
    assert verdict.justification.startswith("2 of 2 sentences of the response are supported")


def test_context_support_names_the_unsupported_sentence_and_its_new_words() -> None:
    response = "The tower was completed in 1889. It was painted gold by the mayor in 1999."
    verdict = ev.context_support(ev.EvalInput(response=response, contexts=CONTEXTS))
    assert verdict.score == 0.5
    assert '"It was painted gold by the mayor in 1999."' in verdict.justification
    assert '"painted", "gold", "mayor", "1999"' in verdict.justification


def test_an_off_topic_response_scores_low_on_relevance_and_says_what_was_missed() -> None:
    data = ev.EvalInput(
        request="Which river flows past the Eiffel Tower?", response="Bananas are rich in potassium."
    )
    verdict = ev.request_relevance(data)
    assert verdict.score == 0.0
    assert 'not addressed: "river", "flows", "past", "Eiffel", "Tower"' in verdict.justification


def test_an_on_topic_response_scores_high_on_relevance() -> None:
    data = ev.EvalInput(
        request="Which river flows past the Eiffel Tower?", response="The Seine river flows past it."
    )
    assert ev.request_relevance(data).score >= 0.6


def test_relevance_credits_a_year_for_a_when_question() -> None:
    data = ev.EvalInput(request="When was it finished?", response="In 1889.")
    verdict = ev.request_relevance(data)
    assert verdict.score == 0.5
    assert '("1889")' in verdict.justification


def test_context_use_names_the_contexts_the_response_ignored() -> None:
    verdict = ev.context_use(ev.EvalInput(response=CONTEXTS[0], contexts=CONTEXTS))
    assert verdict.score == 0.5
    assert "Unused: #2" in verdict.justification


def test_an_outright_refusal_is_detected_and_quoted() -> None:
    verdict = ev.refusal_avoidance(ev.EvalInput(response="I’m sorry, but I can’t help with that request."))
    assert verdict.score == 0.0
    assert '"I can\'t help"' in verdict.justification


def test_a_late_partial_refusal_scores_half() -> None:
    verdict = ev.refusal_avoidance(
        ev.EvalInput(response="Your order ships on Monday. I am unable to share the warehouse address.")
    )
    assert verdict.score == 0.5
    assert '"I am unable to"' in verdict.justification


def test_a_helpful_answer_is_not_a_refusal() -> None:
    assert ev.refusal_avoidance(ev.EvalInput(response="Your order ships on Monday.")).score == 1.0


def test_pii_in_the_response_is_found_and_masked() -> None:
    response = "Call Ann on +1 (555) 123-4567 or write to ann.lee@example.com; card 4242 4242 4242 4242."
    verdict = ev.pii_safety(ev.EvalInput(response=response))
    assert verdict.score == 0.0
    assert "3 item(s)" in verdict.justification
    assert "phone number ending 4567" in verdict.justification
    assert "email a***@example.com" in verdict.justification
    assert "card number ending 4242" in verdict.justification
    assert "ann.lee@example.com" not in verdict.justification


def test_pii_the_user_gave_in_the_request_is_not_a_leak() -> None:
    data = ev.EvalInput(request="My email is bo@example.org", response="We wrote to bo@example.org.")
    verdict = ev.pii_safety(data)
    assert verdict.score == 1.0
    assert "repeats 1 item(s) the request itself gave" in verdict.justification


def test_dates_decimals_and_invalid_card_numbers_are_not_pii() -> None:
    response = "Released 2024-01-15, version 3.14159265, order 1234 5678 9012 3456."
    assert ev.pii_safety(ev.EvalInput(response=response)).score == 1.0


def test_rude_shouting_scores_zero_on_politeness_and_lists_the_phrases() -> None:
    verdict = ev.politeness(ev.EvalInput(response="This is OBVIOUSLY YOUR FAULT, READ the manual!!"))
    assert verdict.score == 0.0
    assert '"obviously", "read the manual", "your fault"' in verdict.justification


def test_polite_phrases_raise_politeness() -> None:
    verdict = ev.politeness(ev.EvalInput(response="Thank you for asking! Happy to help with the refund."))
    assert verdict.score == 1.0


def test_concision_falls_evenly_after_150_words() -> None:
    assert ev.concision(ev.EvalInput(response="word " * 150)).score == 1.0
    verdict = ev.concision(ev.EvalInput(response="word " * 300))
    assert verdict.score == 0.5
    assert "300 words" in verdict.justification


def test_exact_match_ignores_case_punctuation_and_articles() -> None:
    assert ev.exact_match(ev.EvalInput(response="the Seine.", expected_output="Seine")).score == 1.0
    verdict = ev.exact_match(ev.EvalInput(response="It is the Seine", expected_output="Seine"))
    assert verdict.score == 0.0
    assert "does appear inside the response" in verdict.justification


def test_token_f1_names_the_missing_key_terms() -> None:
    data = ev.EvalInput(
        expected_output="The tower stands on the Seine in Paris and opened in 1889.",
        response="The tower stands in Paris.",
    )
    verdict = ev.token_f1(data)
    assert verdict.justification.startswith("3 of 6 key terms of the expected answer appear in the response")
    assert 'Missing: "Seine", "opened", "1889".' in verdict.justification
    assert verdict.score == round(2 * 1.0 * 0.5 / 1.5, 3)


def test_numeric_agreement_treats_1000_and_1_000_alike_and_lists_missing_numbers() -> None:
    data = ev.EvalInput(expected_output="It cost 1,000 euros in 1889.", response="About 1000 euros, in 1887.")
    verdict = ev.numeric_agreement(data)
    assert verdict.score == 0.5
    assert "missing: 1889" in verdict.justification
    assert "not in the expected answer: 1887" in verdict.justification


def test_turns_supply_request_and_response_when_fields_are_absent() -> None:
    item = ItemInput(
        turns=[
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Lyon."},
            {"role": "user", "content": "Are you sure?"},
            {
                "role": "assistant",
                "content": "Sorry: Paris.",
                "contexts": ["Paris is the capital of France."],
            },
        ],
        expected_output="Paris",
    )
    data = item.for_evaluators()
    assert (data.request, data.response, data.contexts) == (
        "Are you sure?",
        "Sorry: Paris.",
        ("Paris is the capital of France.",),
    )
    assert item.missing(RAG.requires) == []


def test_every_score_is_between_0_and_1_with_three_decimals_at_most() -> None:
    item = ItemInput(
        request="How tall is it and when did it open?",
        response="It is 330 m tall!! Thanks. Email me at x@y.io. I can't say more.",
        contexts=["It is 330 metres tall.", "It opened in 1889."],
        expected_output="330 metres; opened 1889",
    )
    for judge in JUDGES:
        for scored in evaluate(Runner(judge=judge, evaluators=judge.evaluators), item):
            assert 0.0 <= scored.verdict.score <= 1.0
            assert round(scored.verdict.score, 3) == scored.verdict.score
            assert 0.0 <= scored.verdict.confidence <= 1.0
            assert scored.verdict.justification
