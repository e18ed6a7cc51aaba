"""Stacks compared: real pytest runs with allure-pytest on two "stacks" (the same tests behaving
differently), read back by ``gpuhil compare``; ``gpuhil stacks`` runs the tests per target."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuhil.cli import main
from gpuhil.report.compare import compare, load_side

pytest_plugins = ["pytester"]

TESTS = """
import os
import allure
import pytest

SIDE = os.environ.get("SIDE", "old")

def test_same():
    pass

def test_fixed():
    allure.attach(f"the device answered on {SIDE}", name="device log")
    assert SIDE == "new", "the old stack answers OK_NODATA"

def test_broken():
    assert SIDE == "old", "the new stack hangs"

@pytest.mark.skipif(SIDE == "new", reason="requires qemu.trace.x: absent")
def test_gap():
    pass
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, side: str) -> Path:
    monkeypatch.setenv("SIDE", side)
    results = pytester.path / side
    pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.results", "-p", "no:cacheprovider",
                                  "--alluredir", str(results), "test_x.py", timeout=120)
    return results


def test_compare_shows_what_differs_with_each_side_s_evidence(pytester, monkeypatch, capsys):
    """Three of four tests differ between the two runs: the summary names each with both
    sides' outcomes and messages, and the page links each side's attachments."""
    pytester.makepyfile(test_x=TESTS)
    old, new = _run(pytester, monkeypatch, "old"), _run(pytester, monkeypatch, "new")
    comparison = compare([load_side(old), load_side(new)])
    assert [n.rsplit("#", 1)[1] for n in comparison.differing] == ["test_broken", "test_fixed",
                                                                    "test_gap"]
    page = pytester.path / "out" / "comparison.html"
    assert main(["compare", str(old), str(new), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "3 tests differ" in out
    assert "old: fail: AssertionError: the old stack answers OK_NODATA" in out
    assert "new: skip: Skipped: requires qemu.trace.x: absent" in out
    text = page.read_text()
    assert "test_fixed" in text and "test_same" not in text
    links = [part.split('"', 1)[0] for part in text.split('href="')[1:]]
    assert len(links) == 2 and all((page.parent / link).is_file() for link in links)
    assert {(page.parent / link).read_text() for link in links} == {
        "the device answered on old", "the device answered on new"}


def test_compare_refuses_what_is_not_results(tmp_path, capsys):
    """A directory without Allure results is named in a one-line error."""
    assert main(["compare", str(tmp_path), str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"gpuhil: {tmp_path}: no Allure results " \
                                              f"(*-result.json) in it"


def test_stacks_runs_the_tests_on_each_target(pytester, capsys):
    """``gpuhil stacks`` runs pytest once per target into its own results directory and compares
    them: the local target twice gives two sides and nothing that differs."""
    pytester.makepyfile(test_x=TESTS)
    os.chdir(pytester.path)
    code = main(["stacks", "--target", "local", "--target", "local", "--output", "stacks",
                 "--html", "stacks/page.html", "--", "test_x.py", "-p", "no:cacheprovider"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 tests differ" in out and "local-2:" in out
    assert len(list((pytester.path / "stacks" / "local-2" / "allure-results").glob(
        "*-result.json"))) == 4
