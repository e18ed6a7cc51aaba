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
    #: the failed and errored tests run again, alone: nodeid -> (outcome, message)
    rerun: dict[str, tuple[str, str]] = field(default_factory=dict)

    def of(self, outcome: str) -> dict[str, str]:
        return {nodeid: message for nodeid, (kind, message) in self.cases.items() if kind == outcome}

    def intermittent(self) -> dict[str, str]:
        """Tests that failed in the run and passed when run again alone: a product's
        intermittent behaviour under the run's load, not gpuhil breaking (printed with the
        evidence, for an expectation entry)."""
        return {k: v for k, v in (self.of("failure") | self.of("error")).items()
                if self.rerun.get(k, ("",))[0] == "passed"}


def _cases(junit: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("classname", "").replace(".", "/")
        nodeid = f"{path}.py::{case.get('name')}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):  # the whole report: evidence for the CI log
                outcome, message = child.tag, child.text or child.get("message", "")
            elif child.tag == "skipped":
                kind = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                outcome, message = kind, child.get("message", "")
        out[nodeid] = (outcome, message)
    return out


def _pytest(work: Path, name: str, args: list[str], *options: str) -> tuple[int, str, Path]:
    """Run pytest on ``args`` in the project (junit XML in ``work``); exit code, output, XML."""
    junit = work / f"{name}.xml"
    argv = [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider", "--junitxml",
            str(junit), "-rfEsxX", "-q", *options]
    process = subprocess.Popen(argv, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the suites did not finish within {LIMIT} s:\n{output[-5000:]}", pytrace=False)
    if not junit.is_file():
        pytest.fail(f"the suites run wrote no junit XML (exit {process.returncode}):\n"
                    f"{output[-5000:]}", pytrace=False)
    return process.returncode, output, junit


def _run_suites(work: Path, *options: str) -> SuiteRun:
    results = work / "allure-results"
    started = time.monotonic()
    returncode, output, junit = _pytest(work, "junit", ["suites", "-n", "2", "--alluredir",
                                                        str(results)], *options)
    seconds = time.monotonic() - started
    print(f"suites: {seconds:.0f} s with -n 2\n{output[-3000:]}")
    run = SuiteRun(returncode, seconds, output, results, _cases(junit))
    failed = sorted(run.of("failure") | run.of("error"))
    if failed:
        _code, again, rerun_xml = _pytest(work, "rerun", failed, *options)
        run.rerun = _cases(rerun_xml)
        print(f"rerun of {len(failed)} failed tests:\n{again[-2000:]}")
    return run


@pytest.fixture(scope="module")
def suite_run(lab_setup, tmp_path_factory) -> SuiteRun:
    return _run_suites(tmp_path_factory.mktemp("suites"))


@pytest.fixture(scope="module")
def stable_run(lab_setup, tmp_path_factory) -> SuiteRun:
    """The same suites with QEMU from a Debian stable tree (QEMU 10.0, virglrenderer 1.1) and
    the lab's guest: the older stack a QA lab may still run."""
    work = tmp_path_factory.mktemp("stable")
    (work / "stable.toml").write_text('host_suite = "stable"\n')
    return _run_suites(work, f"--gpuhil-target={work / 'stable.toml'}")


def _explained(run: SuiteRun) -> None:
    """No failure or error; every skip has a reason; every xfail is an expectation entry."""
    flaky = run.intermittent()
    for nodeid, message in flaky.items():
        print(f"INTERMITTENT (failed, then passed when run again alone; an expectation entry "
              f"is due if it recurs): {nodeid}:\n{message[-3000:]}")
    unexplained = {k: v for k, v in (run.of("failure") | run.of("error")).items() if k not in flaky}
    assert not unexplained, "\n".join(f"{k}: {v[-3000:]}" for k, v in unexplained.items()) + \
        "\n" + run.output[-4000:]
    assert run.returncode == 0 or flaky, run.output[-4000:]
    no_reason = [k for k, v in run.of("skipped").items() if len(v.strip()) < 10]
    assert not no_reason, f"skipped without a reason: {no_reason}"
    unknown = {k: v for k, v in run.of("xfailed").items()
               if not re.search(r"known (intermittent )?bug on", v)}
    assert not unknown, f"expected failures that are not in the expectations file: {unknown}"


def test_suites_have_no_unexplained_failure(suite_run: SuiteRun) -> None:
    """Every suite test passes, skips with its probed reason, or fails as a known bug of this
    platform, so a red suite always means something new."""
    _explained(suite_run)
    assert len(suite_run.cases) >= 100, f"only {len(suite_run.cases)} suite tests ran"
    assert suite_run.of("passed"), "no suite test passed"


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
    assert summary.failed + summary.broken == \
        len(suite_run.of("failure")) + len(suite_run.of("error"))


#: Why a test may skip on the older stack and not on the lab's: a probed capability it lacks.
_CAPABILITY = re.compile(r"requires .*qemu\.trace\.|lacks \S+ of virtio-gpu|has no device|"
                         r"lacks drm_native_context|has no qtest accelerator")


def test_the_older_stack_differs_only_where_explained(suite_run: SuiteRun, stable_run: SuiteRun,
                                                      tmp_path: Path) -> None:
    """On Debian stable's QEMU 10.0 the suites are explained too, and every test whose outcome
    differs from the lab's is a probed capability (a skip naming it) or a known bug of the
    older stack (an xfail from its expectations file), never gpuhil's own breakage; the
    comparison is rendered."""
    _explained(stable_run)
    assert "QEMU 10." in (stable_run.results / "environment.properties").read_text()
    from gpuhil.report.compare import compare, load_side, write_html

    comparison = compare([load_side(suite_run.results, "lab"),
                          load_side(stable_run.results, "stable")])
    assert comparison.differing, "the older stack behaved exactly like the lab's"
    page = write_html(comparison, tmp_path / "comparison.html")
    print(f"stacks compared: {len(comparison.differing)} tests differ ({page})")
    by_name = {f"{k.rsplit('.py::', 1)[0].replace('/', '.')}#{k.rsplit('::', 1)[1]}": v
               for k, v in stable_run.cases.items()}
    wrong = {}
    for name in comparison.differing:
        outcome, message = by_name.get(name, ("absent", ""))
        if outcome == "skipped" and _CAPABILITY.search(message):
            continue
        if _nodeid(name) in stable_run.intermittent() | suite_run.intermittent():
            continue  # printed by _explained, with its evidence
        if outcome in ("xfailed", "passed") and "qemu-10.0_virglrenderer-1.1.toml" in message:
            continue  # a known bug of 10.0 (or an intermittent one that passed this time)
        if outcome == "passed" and suite_run.cases.get(_nodeid(name), ("",))[0] == "xfailed":
            continue  # a bug of the lab's stack that 10.0 does not have
        wrong[name] = f"{outcome}: {message[:200]}"
    assert not wrong, "differences no capability or 10.0 expectation explains:\n" + \
        "\n".join(f"{k}: {v}" for k, v in wrong.items())


def _nodeid(name: str) -> str:
    """``suites.blob.test_x#test_y[p]`` -> ``suites/blob/test_x.py::test_y[p]``."""
    module, test = name.split("#", 1)
    return f"{module.replace('.', '/')}.py::{test}"
