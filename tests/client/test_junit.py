"""The JUnit report read back as a CI server reads it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from docket_client.gate import gate_decide
from docket_client.junit import junit_write

RUN = {
    "id": 7,
    "status": "completed",
    "url": "http://docket.test/runs/7/",
    "evaluator_names": ["politeness", "concision"],
    "evaluators": [
        {
            "name": "politeness",
            "n": 30,
            "mean": 0.62,
            "ci_low": 0.55,
            "ci_high": 0.69,
            "pass_rate": 0.6,
            "threshold": 0.5,
        },
        {
            "name": "concision",
            "n": 30,
            "mean": 0.97,
            "ci_low": 0.93,
            "ci_high": 1.0,
            "pass_rate": 1.0,
            "threshold": 0.5,
        },
    ],
}


def test_one_testcase_per_evaluator_with_a_failure_where_the_gate_failed(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "docket.xml"

    junit_write(path, RUN, gate_decide(RUN, fail_under=0.8))

    suites = ET.parse(path).getroot().findall("testsuite")
    assert [suite.get("name") for suite in suites] == ["docket"]
    suite = suites[0]
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["politeness", "concision"]
    assert {case.get("classname") for case in cases.values()} == {"docket.7"}
    failure = cases["politeness"].find("failure")
    assert failure is not None
    assert failure.get("message") == "mean 0.620 is under --fail-under 0.8"
    assert cases["concision"].find("failure") is None
    properties = {p.get("name"): p.get("value") for p in cases["politeness"].iter("property")}
    assert properties["mean"] == "0.62"
    assert properties["ci"] == "[0.55, 0.69]"
    assert properties["pass_rate"] == "0.6"


def test_a_failed_run_is_a_failing_testcase_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "docket.xml"
    run = {**RUN, "status": "failed", "last_error": "the judge refused the key"}

    junit_write(path, run, gate_decide(run))

    cases = {case.get("name"): case for case in ET.parse(path).getroot().iter("testcase")}
    failure = cases["run"].find("failure")
    assert failure is not None
    assert failure.get("message") == "run 7 finished as failed: the judge refused the key"
