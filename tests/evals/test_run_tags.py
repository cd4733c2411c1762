"""Run.objects.tagged: the one tag filter of the runs page, the API and the client's --baseline-tag."""

from __future__ import annotations

import pytest

from evals.models import Run
from tests.factories import build_run

pytestmark = pytest.mark.django_db


def test_a_tag_matches_whole_tags_in_any_case_and_any_script() -> None:
    release = build_run({"e": [1.0]}, name="release")
    accented = build_run({"e": [1.0]}, name="accented")
    other = build_run({"e": [1.0]}, name="other")
    Run.objects.filter(pk=release.pk).update(tags=["Release-2.3", "nightly"])
    Run.objects.filter(pk=accented.pk).update(tags=["Ünïcode-release", "夜間"])
    Run.objects.filter(pk=other.pk).update(tags=["release-2.3-rc", "nightly-extra"])

    def names(tag: str) -> set[str]:
        return {run.name for run in Run.objects.tagged(tag)}

    assert names("release-2.3") == {"release"}
    assert names("nightly") == {"release"}
    assert names("Ünïcode-release") == {"accented"}
    assert names("夜間") == {"accented"}
    assert names("night") == set()
