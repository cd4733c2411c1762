"""Word-level text handling shared by the evaluators: tokens, content terms, sentences, numbers.

Deliberately small and English-only: the evaluators must be fast, deterministic and explainable in a
justification a person can check by reading the text, not clever.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Numbers first, so that "1,000" and "3.5" stay one token; then words, with inner apostrophes.
WORD_RE = re.compile(r"\d+(?:[.,]\d+)*(?![^\W_])|[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)
PLAIN_NUMBER_RE = re.compile(r"^\d+(?:[.,]\d+)*$")
# Thousands separators and decimals kept together: "1,000", "3.5", "-2", "12%".
NUMBER_RE = re.compile(
    r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.,])[-+]?\d+(?:\.\d+)?(?!\w)"
)
SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+\s*(?:[-*•]\s+|\d+[.)]\s+)?")

STOPWORD_TEXT = """
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each either else etc ever every few for from further get gets got had hadn't has hasn't have
haven't having he he'd he'll he's her here here's hers herself him himself his how how's however i i'd
i'll i'm i've if in into is isn't it it's its itself just let's may me might more most much must mustn't
my myself need no nor not now of off on once one only or other ought our ours ourselves out over own per
please quite rather really said same say says shall shan't she she'd she'll she's should shouldn't so
some such than that that's the their theirs them themselves then there there's these they they'd they'll
they're they've this those though through thus to too under until up upon us very via was wasn't we we'd
we'll we're we've were weren't what what's when when's where where's whether which while who who's whom
whose why why's will with within without won't would wouldn't yes yet you you'd you'll you're you've
your yours yourself yourselves tell give show explain describe know like make use well sure okay ok
thing things way
"""
STOPWORDS = frozenset(STOPWORD_TEXT.split())


def normalise_quotes(text: str) -> str:
    return text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')


def words(text: str) -> list[str]:
    """Every word of the text, in order, as written (apostrophes straightened)."""
    return WORD_RE.findall(normalise_quotes(text))


# Words repeat across items and evaluators; caching the stems is most of the evaluators' speed.
@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A light suffix stripper, so that "towers"/"tower" and "painted"/"paint" count as the same term.

    Far weaker than Porter on purpose: a justification quoting the original words must still make sense.
    """
    word = word.lower()
    if PLAIN_NUMBER_RE.match(word):
        return canonical_number(word)
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) <= 4 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 5:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    if word.endswith("ing") and len(word) > 6:
        return word[:-3]
    if word.endswith("ed") and len(word) > 5:
        return word[:-2]
    return word


def canonical_number(written: str) -> str:
    """ "1,000" and "1000.0" are the same number; "1.5" stays "1.5"."""
    try:
        value = float(written.replace(",", ""))
    except ValueError:
        return written
    return str(int(value)) if value == int(value) else f"{value:g}"


@dataclass(frozen=True)
class Terms:
    """The content terms of a text: stems in first-seen order, with the word first written for each."""

    stems: tuple[str, ...]
    shown: dict[str, str]

    def __len__(self) -> int:
        return len(self.stems)

    def as_set(self) -> frozenset[str]:
        return frozenset(self.stems)

    def quoted(self, stems: list[str] | tuple[str, ...], limit: int = 8) -> str:
        """Human-readable list: "Seine", "1889" (and 3 more)."""
        parts = [f'"{self.shown.get(s, s)}"' for s in stems[:limit]]
        extra = len(stems) - limit
        text = ", ".join(parts)
        return f"{text} (and {extra} more)" if extra > 0 else text


# Several evaluators read the same response and contexts of one item; callers must not mutate the result.
@lru_cache(maxsize=256)
def content_terms(text: str) -> Terms:
    """Distinct non-stopword terms (numbers included), keyed by stem."""
    stems: list[str] = []
    shown: dict[str, str] = {}
    for word in words(text):
        lowered = word.lower()
        if lowered in STOPWORDS or (len(lowered) == 1 and not lowered.isdigit()):
            continue
        key = stem(lowered)
        if key not in shown:
            shown[key] = word
            stems.append(key)
    return Terms(stems=tuple(stems), shown=shown)


def sentences(text: str) -> list[str]:
    """Sentences and list items of a text, stripped, empty ones dropped."""
    return [part.strip() for part in SENTENCE_END_RE.split(text.strip()) if part and part.strip()]


def numbers(text: str) -> list[tuple[str, float]]:
    """Numbers as written and as values, in order; "1,000" and "1000" have the same value."""
    found: list[tuple[str, float]] = []
    for match in NUMBER_RE.finditer(text):
        written = match.group(0)
        try:
            value = float(written.replace(",", ""))
        except ValueError:
            continue
        found.append((written.lstrip("+"), value))
    return found


ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
# Punctuation is deleted, as SQuAD does ("1,000" == "1000"), except joiners that separate words.
WORD_JOINERS = "-/–—"
PUNCTUATION_TABLE = str.maketrans(
    {char: (" " if char in WORD_JOINERS else None) for char in string.punctuation + "’‘“”–—"}
)


def normalise_answer(text: str) -> str:
    """SQuAD-style answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.translate(PUNCTUATION_TABLE)
    text = ARTICLES_RE.sub(" ", text)
    return " ".join(text.split())


def shorten(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
