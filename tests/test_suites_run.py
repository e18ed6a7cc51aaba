"""The suites as QA runs them (``make suites``: ``pytest suites -n 2`` against the virtual lab, then
the Allure report), once per CI run: no unexplained failure, every skip with its reason, every
expected failure from the platform's expectations file, and the report agreeing with pytest."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gpuhil.report.render import render

PROJECT = Path(__file__).resolve().parent.parent
#: More than the 20 minutes the suites are meant to take on this kind of machine.
LIMIT = 45 * 60


@dataclass
class SuiteRun:
    """What one suites run produced."""

    returncode: int
    seconds: float
    output: str
    results: Path
    cases: dict[str, tuple[str, str]] = field(default_factory=dict)  # nodeid -> (outcome, message)

    def of(self, outcome: str) -> dict[str, str]:
        return {nodeid: message for nodeid, (kind, message) in self.cases.items() if kind == outcome}


def _cases(junit: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/")
        nodeid = f"{path}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = child.tag, child.get("message", "")
            elif child.tag == "skipped":
                kind = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                outcome, message = kind, child.get("message", "")
        out[nodeid] = (outcome, message)
    return out


@pytest.fixture(scope="module")
def suite_run(lab_setup, tmp_path_factory) -> SuiteRun:
    work = tmp_path_factory.mktemp("suites")
    results, junit = work / "allure-results", work / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "suites", "-n", "2", "-p", "no:cacheprovider",
            "--alluredir", str(results), "--junitxml", str(junit), "-rfEsxX", "-q"]
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the suites did not finish within {LIMIT} s:\n{output[-5000:]}", pytrace=False)
    seconds = time.monotonic() - started
    print(f"suites: {seconds:.0f} s with -n 2\n{output[-3000:]}")
    if not junit.is_file():
        pytest.fail(f"the suites run wrote no junit XML (exit {process.returncode}):\n"
                    f"{output[-5000:]}", pytrace=False)
    return SuiteRun(process.returncode, seconds, output, results, _cases(junit))


def test_suites_have_no_unexplained_failure(suite_run: SuiteRun) -> None:
    """Every suite test passes, skips with its probed reason, or fails as a known bug of this
    platform, so a red suite always means something new."""
    unexplained = suite_run.of("failure") | suite_run.of("error")
    assert not unexplained, "\n".join(f"{k}: {v[:300]}" for k, v in unexplained.items()) + \
        "\n" + suite_run.output[-4000:]
    assert suite_run.returncode == 0, suite_run.output[-4000:]
    assert len(suite_run.cases) >= 100, f"only {len(suite_run.cases)} suite tests ran"
    assert suite_run.of("passed"), "no suite test passed"
    no_reason = [k for k, v in suite_run.of("skipped").items() if len(v.strip()) < 10]
    assert not no_reason, f"skipped without a reason: {no_reason}"
    unknown = {k: v for k, v in suite_run.of("xfailed").items()
               if not re.search(r"known (intermittent )?bug on", v)}
    assert not unknown, f"expected failures that are not in the expectations file: {unknown}"


def test_every_suite_area_ran(suite_run: SuiteRun) -> None:
    """Each suite area of the issue contributed tests that passed, so a suite that silently
    stopped collecting is noticed."""
    areas = {nodeid.split("/")[1] for nodeid in suite_run.of("passed")}
    wanted = {p.name for p in (PROJECT / "suites").iterdir()
              if p.is_dir() and any(p.glob("test_*.py"))}
    assert wanted <= areas, f"areas with no passing test: {sorted(wanted - areas)}"


def test_report_renders_the_same_counts(suite_run: SuiteRun, tmp_path: Path) -> None:
    """The Allure report rendered from the run shows as many tests, passes and skips as pytest
    saw, so QA reads the same verdict in the report."""
    summary = render(suite_run.results, tmp_path / "html", history=False)
    assert (tmp_path / "html" / "index.html").is_file()
    assert summary.total == len(suite_run.cases)
    assert summary.passed == len(suite_run.of("passed"))
    assert summary.skipped == len(suite_run.of("skipped")) + len(suite_run.of("xfailed"))
    assert summary.failed == summary.broken == 0
