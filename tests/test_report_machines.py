"""One report across machines: two runs of the same tests with real lab guests, named as two
machines (``--gpuhil-machine``) on two stacks (the sid lab and Debian stable's QEMU), with an
expectation file whose entries make one test a known bug and another a known bug that passed.
Each result carries its machine in its history id and suite; ``gpuhil report`` merges both runs
into one report that keeps them apart, gives each machine its stack and capability tables and
shows the known bugs as a category of their own, read back from the rendered report and in
headless Chromium."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gpuhil.cli import main
from tests.test_report_lab import SELFTEST_REPORTS, _chromium, _chromium_argv

TESTS = '''
def test_pass(guest):
    """The guest answers."""
    assert guest.run(["uname", "-s"]).stdout == b"Linux\\n"


def test_capabilities(capabilities):
    """The snapshot of the default configuration has venus."""
    assert capabilities.as_dict()["capset.venus"] is True


def test_known(guest):
    """A known bug of the guest kernel (an expectation entry makes it an xfail)."""
    assert guest.run(["uname", "-s"]).stdout == b"Windows\\n"


def test_fixed(guest):
    """Its strict entry says it fails; it passes (the bug was fixed)."""
    assert guest.run(["true"]).returncode == 0
'''

EXPECTATIONS = '''
[platform]
kernel = "7.2"

[[xfail]]
test = "test_machine.py::test_known"
reason = "the guest says it is Linux"
seen = "Linux 7.2"

[[xfail]]
test = "test_machine.py::test_fixed"
reason = "true used to fail"
seen = "Linux 7.2"
'''

MACHINES = {"lab-sid": (), "lab-stable": ('host_suite = "stable"\n',)}


def _run(root: Path, machine: str) -> Path:
    if os.environ.get("GPUHIL_LAB") == "0":
        pytest.skip("GPUHIL_LAB=0: the virtual lab is disabled")
    root.mkdir()
    (root / "test_machine.py").write_text(TESTS)
    (root / "expectations").mkdir()
    (root / "expectations" / "linux-7.2.toml").write_text(EXPECTATIONS)
    target = []
    if MACHINES[machine]:
        (root / "lab.toml").write_text("".join(MACHINES[machine]))
        target = [f"--gpuhil-target={root / 'lab.toml'}"]
    results = root / "allure-results"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--alluredir", str(results), "-p", "no:cacheprovider",
         "-rA", f"--gpuhil-machine={machine}", f"--gpuhil-expectations={root / 'expectations'}",
         *target, "test_machine.py"], cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]  # test_fixed fails
    return results


def _results(directory: Path) -> dict[str, dict[str, Any]]:
    return {data["name"]: data for data in
            (json.loads(p.read_text()) for p in directory.glob("*-result.json"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("machines")
    return {machine: _run(base / machine, machine) for machine in MACHINES}


def test_each_result_is_keyed_on_its_machine(runs: dict[str, Path]) -> None:
    """The same test on two machines has two history ids and sits under its machine's suite,
    so Allure neither merges them as retries nor mixes their histories."""
    sid, stable = (_results(runs[m]) for m in MACHINES)
    assert sorted(sid) == sorted(stable) == ["test_capabilities", "test_fixed", "test_known",
                                             "test_pass"]
    for name in sid:
        assert sid[name]["historyId"] != stable[name]["historyId"]
        for machine, result in (("lab-sid", sid[name]), ("lab-stable", stable[name])):
            params = {p["name"]: p["value"] for p in result["parameters"]}
            assert params["machine"] == machine
            assert "host GPU" in params
            labels = {label["name"]: label["value"] for label in result["labels"]}
            assert labels["parentSuite"] == machine and labels["host"] == machine
            assert labels["suite"] == "test_machine"
    assert sid["test_known"]["status"] == "skipped"
    assert sid["test_known"]["statusDetails"]["message"].startswith(
        "XFAIL known bug on ")
    assert "the guest says it is Linux" in sid["test_known"]["statusDetails"]["message"]


def test_merged_report_keeps_machines_apart(runs: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """``gpuhil report --results A --results B`` renders both machines' runs into one report:
    every test twice, history per machine, each machine's stack and capability tables beside
    its results, and the known bugs in categories of their own."""
    report = SELFTEST_REPORTS / "machines"
    args = ["report", "--no-history", "--output", str(report)]
    for machine in MACHINES:
        args += ["--results", str(runs[machine])]
    assert main(args) == 0
    assert "8 tests, 4 passed, 2 failed, 0 broken, 2 skipped" in capsys.readouterr().out
    assert not list(report.parent.glob(".machines-merged-*"))  # the merge directory is gone

    history = json.loads((report / "history" / "history.json").read_text())
    assert len(history) == 8  # four tests on each machine, none merged as a retry

    categories = json.loads((report / "data" / "categories.json").read_text())
    by_name = {c["name"]: c for c in categories["children"]}
    known = by_name["Known product bug (expectation entry)"]
    assert sorted(leaf["name"] for group in known["children"] for leaf in group["children"]) \
        == ["test_known", "test_known"]
    assert re.search(r"known bug on QEMU .*the guest says it is Linux",
                     known["children"][0]["name"])
    fixed = by_name["Known bug fixed? A strict expectation entry's test passed"]
    assert sum(len(group["children"]) for group in fixed["children"]) == 2

    # each test case shows its machine's set-up step with the stack and capability tables
    stacks = {}
    for path in (report / "data" / "test-cases").glob("*.json"):
        case = json.loads(path.read_text())
        machine = {p["name"]: p["value"] for p in case["parameters"]}["machine"]
        (stage,) = [s for s in case["beforeStages"] if s["name"].startswith("stack and ")]
        assert stage["name"] == f"stack and capabilities of {machine}"
        (attachment,) = stage["attachments"]
        stacks[machine] = (report / "data" / "attachments" / attachment["source"]).read_text()
    assert sorted(stacks) == ["lab-sid", "lab-stable"]
    for page in stacks.values():
        assert "<caption>capabilities of venus</caption>" in page
        assert re.search(r"<tr><th>capset\.venus</th><td>True</td></tr>", page)
    qemu = {m: re.search(r"<th>lab\.qemu</th><td>([^<]+)<", p).group(1) for m, p in stacks.items()}
    assert qemu["lab-sid"] != qemu["lab-stable"], qemu  # two stacks, each beside its results

    env = (report / "widgets" / "environment.json").read_text()
    assert "stack.lab-sid" in env and "stack.lab-stable" in env


def test_merged_report_in_chromium(runs: dict[str, Path], tmp_path: Path) -> None:
    """The rendered pages show both machines in the Suites tree and the known-bug category;
    the Categories page is kept as a screenshot for the note."""
    chromium = _chromium()
    report = SELFTEST_REPORTS / "machines"
    if not (report / "index.html").is_file():
        assert main(["report", "--no-history", "--output", str(report),
                     "--results", str(runs["lab-sid"]), "--results", str(runs["lab-stable"])]) == 0

    def text_of(page: str, profile: str) -> str:
        dom = subprocess.run(_chromium_argv(chromium, tmp_path / profile) +
                             ["--dump-dom", (report / "index.html").as_uri() + page],
                             capture_output=True, text=True, timeout=120).stdout
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", dom,
                                                                  flags=re.S)))

    suites = text_of("#suites", "p1")
    assert "lab-sid" in suites and "lab-stable" in suites, suites[:3000]
    categories = text_of("#categories", "p2")
    assert "Known product bug (expectation entry)" in categories, categories[:3000]
    shot = SELFTEST_REPORTS / "machines-categories.png"
    shot.unlink(missing_ok=True)
    subprocess.run(_chromium_argv(chromium, tmp_path / "p3") +
                   [f"--screenshot={shot}", (report / "index.html").as_uri() + "#categories"],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
