"""``gpuhil fuzz`` end to end: the protocol suite's qtest campaign for a time budget, on the
lab's QEMU, and its refusals of bad options."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _fuzz(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpuhil.cli", "fuzz", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.lab
def test_fuzz_runs_seeded_rounds_until_its_budget_and_reports_them(lab_setup, tmp_path):
    """A 6 s budget runs at least one seeded round of 200 batches on a qtest machine, passes
    (no finding on the lab's stack with the sanitized commands), prints how many batches and
    commands ran, and leaves an Allure result of the campaign test."""
    done = _fuzz("--budget", "6", "--seed", "3", "--corpus", str(tmp_path / "corpus"),
                 "--alluredir", str(tmp_path / "allure"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    found = re.search(r"gpuhil fuzz: (\d+) batches, (\d+) commands in", done.stdout)
    assert found, done.stdout[-2000:]
    assert int(found.group(1)) >= 200 and int(found.group(2)) > int(found.group(1))
    results = [json.loads(p.read_text()) for p in (tmp_path / "allure").glob("*-result.json")]
    assert [r["status"] for r in results
            if "test_fuzzed_batches" in r["name"] and "qtest" in r["name"]] == ["passed"]


@pytest.mark.parametrize("args, message", [
    (["--budget", "soon"], "--budget 'soon': not a number of seconds"),
    (["--budget", "0"], "--budget '0': must be more than 0 seconds"),
])
def test_a_bad_budget_is_refused_naming_it(args, message):
    done = _fuzz(*args, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_corpus_that_is_a_file_is_refused_before_any_qemu(tmp_path):
    afile = tmp_path / "corpus"
    afile.write_text("not a directory")
    done = _fuzz("--budget", "5", "--corpus", str(afile), timeout=60)
    assert done.returncode == 2 and f"--corpus {afile}: exists and is not a directory" in done.stderr
    assert afile.read_text() == "not a directory"
