"""Which column feeds which field of an example: the choices, and a guess from common column names."""

from __future__ import annotations

import re

REQUEST = "request"
RESPONSE = "response"
CONTEXTS = "contexts"
EXPECTED_OUTPUT = "expected_output"
TURNS = "turns"
SYSTEM_PROMPT = "system_prompt"
# Not sent to the judge: the row's identity, which pairs it with the same row of another upload (compare).
KEY = "key"
# Sent with the row and copied by the judge onto its execution log, where logs can be filtered by them.
USER_ID = "user_id"
SESSION_ID = "session_id"
METADATA = "metadata"
IGNORE = "ignore"

FIELDS = (REQUEST, RESPONSE, CONTEXTS, EXPECTED_OUTPUT, TURNS, SYSTEM_PROMPT, KEY, USER_ID, SESSION_ID)
# Fields that take exactly one column; contexts may merge several.
SINGLE_FIELDS = (REQUEST, RESPONSE, EXPECTED_OUTPUT, TURNS, SYSTEM_PROMPT, KEY, USER_ID, SESSION_ID)
CHOICES = (*FIELDS, METADATA, IGNORE)

FIELD_LABELS = {
    REQUEST: "request",
    RESPONSE: "response",
    CONTEXTS: "contexts",
    EXPECTED_OUTPUT: "expected output",
    TURNS: "turns",
    SYSTEM_PROMPT: "system prompt",
    KEY: "key (pairs rows across uploads)",
    USER_ID: "user id (copied onto the judge's log)",
    SESSION_ID: "session id (copied onto the judge's log)",
    METADATA: "metadata (keep)",
    IGNORE: "ignore",
}

# Common column names for each field, best first: the first column to match a field wins it.
SYNONYMS: dict[str, tuple[str, ...]] = {
    REQUEST: ("request", "prompt", "question", "input", "query", "user_input", "user_prompt", "instruction"),
    RESPONSE: (
        "response",
        "answer",
        "output",
        "completion",
        "actual_output",
        "model_output",
        "model_response",
        "generated_answer",
        "generation",
    ),
    CONTEXTS: (
        "contexts",
        "context",
        "documents",
        "passages",
        "retrieved_contexts",
        "retrieval_context",
        "docs",
    ),
    EXPECTED_OUTPUT: (
        "expected_output",
        "expected",
        "reference",
        "ground_truth",
        "target",
        "label",
        "expected_answer",
        "reference_answer",
        "ideal",
    ),
    TURNS: ("turns", "messages", "conversation", "dialogue", "dialog"),
    SYSTEM_PROMPT: ("system_prompt", "system", "system_message"),
    KEY: (
        "key",
        "id",
        "case_id",
        "example_id",
        "uid",
        "uuid",
        "row_id",
        "test_id",
        "test_case_id",
        "sample_id",
        "item_id",
        "question_id",
        "record_id",
    ),
    # Only names that cannot mean anything else: a column called "user" may hold the user's message.
    USER_ID: ("user_id", "userid", "end_user_id"),
    SESSION_ID: ("session_id", "sessionid", "conversation_id", "thread_id"),
}

# context_1, context 2, passage3, documents_4 ...: merged into contexts in column order.
_NUMBERED_CONTEXT = re.compile(r"^(context|contexts|document|documents|doc|passage|passages)_?\d+$")


def normalize(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def detect_mapping(columns: list[str]) -> dict[str, str]:
    """A mapping for every column: a field when the name is a common one for it, metadata otherwise."""
    mapping = dict.fromkeys(columns, METADATA)
    normalized = {column: normalize(column) for column in columns}
    for field, names in SYNONYMS.items():
        if field == CONTEXTS:
            continue
        for name in names:
            match = next((c for c in columns if normalized[c] == name and mapping[c] == METADATA), None)
            if match is not None:
                mapping[match] = field
                break
    for column in columns:
        if mapping[column] == METADATA and (
            normalized[column] in SYNONYMS[CONTEXTS] or _NUMBERED_CONTEXT.match(normalized[column])
        ):
            mapping[column] = CONTEXTS
    return mapping


def mapping_problems(columns: list[str], mapping: dict[str, str]) -> list[str]:
    """What stops this mapping from making examples, as sentences (empty when it is usable)."""
    problems: list[str] = []
    unknown = sorted(set(mapping.values()) - set(CHOICES))
    if unknown:
        problems.append(f"Unknown field {unknown[0]!r}; the fields are {', '.join(CHOICES)}.")
    for field in SINGLE_FIELDS:
        chosen = [column for column in columns if mapping.get(column) == field]
        if len(chosen) > 1:
            listed = ", ".join(repr(column) for column in chosen)
            problems.append(f"Only one column can be {FIELD_LABELS[field]}; {listed} are all mapped to it.")
    if not any(mapping.get(column) in (RESPONSE, TURNS) for column in columns):
        problems.append("Map a column to response (or to turns): every example needs one of them.")
    return problems


def apply_overrides(
    columns: list[str], mapping: dict[str, str], overrides: list[tuple[str, str]]
) -> dict[str, str]:
    """Apply FIELD=COLUMN choices on top of a detected mapping.

    A single-valued field moves to the named column (the column that had it falls back to metadata);
    contexts named explicitly replace the detected contexts columns.
    """
    result = dict(mapping)
    contexts_named = False
    for field, column in overrides:
        if field not in CHOICES:
            raise ValueError(f"Unknown field {field!r}; the fields are {', '.join(CHOICES)}.")
        if column not in result:
            raise ValueError(f"There is no column named {column!r}; the columns are {', '.join(columns)}.")
        if field in SINGLE_FIELDS:
            for other, value in result.items():
                if value == field and other != column:
                    result[other] = METADATA
        if field == CONTEXTS and not contexts_named:
            contexts_named = True
            for other, value in result.items():
                if value == CONTEXTS:
                    result[other] = METADATA
        result[column] = field
    return result
