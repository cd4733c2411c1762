"""The gate as a JUnit XML report, which GitHub Actions and GitLab CI show as test results.

One <testsuite name="docket">, one <testcase classname="docket.<run id>" name="<evaluator>"> per
evaluator, with a <failure> when that evaluator failed the gate and its numbers as <properties>. A run
that finished failed or cancelled adds a testcase named "run" that fails.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from docket_client.gate import GateResult, evaluator_names


def junit_tree(run: dict[str, Any], gate: GateResult) -> ET.ElementTree[ET.Element]:
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", name="docket")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("run", run.get("id")), ("status", run.get("status")), ("url", run.get("url"))):
        ET.SubElement(properties, "property", name=name, value=str(value if value is not None else ""))
    stats = {row["name"]: row for row in run.get("evaluators") or []}
    classname = f"docket.{run.get('id')}"
    failures = 0
    cases = 0
    if gate.run_failure:
        case = ET.SubElement(suite, "testcase", classname=classname, name="run")
        ET.SubElement(case, "failure", message=gate.run_failure).text = gate.run_failure
        failures += 1
        cases += 1
    for name in evaluator_names(run):
        case = ET.SubElement(suite, "testcase", classname=classname, name=name)
        cases += 1
        case_properties = ET.SubElement(case, "properties")
        for key, value in _numbers(stats.get(name) or {}).items():
            ET.SubElement(case_properties, "property", name=key, value=value)
        reasons = gate.failures.get(name) or []
        if reasons:
            failure = ET.SubElement(case, "failure", message="; ".join(reasons))
            failure.text = "\n".join(reasons)
            failures += 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suites.set("tests", str(cases))
    suites.set("failures", str(failures))
    ET.indent(suites)
    return ET.ElementTree(suites)


def _numbers(row: dict[str, Any]) -> dict[str, str]:
    def text(value: Any) -> str:
        return "" if value is None else str(value)

    low, high = row.get("ci_low"), row.get("ci_high")
    return {
        "n": text(row.get("n", 0)),
        "mean": text(row.get("mean")),
        "ci": "" if low is None or high is None else f"[{low}, {high}]",
        "pass_rate": text(row.get("pass_rate")),
        "threshold": text(row.get("threshold")),
    }


def junit_write(path: Path, run: dict[str, Any], gate: GateResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(run, gate).write(path, encoding="utf-8", xml_declaration=True)
