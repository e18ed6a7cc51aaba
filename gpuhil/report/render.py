"""``gpuhil report``: render Allure results into an HTML report, keeping history for trends.

Several runs' results (one per machine) merge into one report.  Allure 2's commandline comes
from the npm registry (``allure-commandline``, needs Java) and is
installed on first use into ``<cache>/allure``.  Before rendering, the previous report's
``history/`` is copied into the results so the new report's trend widgets continue the series.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from filelock import FileLock

from gpuhil.errors import GpuhilError
from gpuhil.lab.cache import cache_dir
from gpuhil.report.machines import FRAGMENTS_DIR, merge_results, write_environment, \
    write_machine_fixtures

ALLURE_PACKAGE = "allure-commandline"


class ReportError(GpuhilError):
    """The HTML report could not be rendered (Allure missing or failing, no results)."""


@dataclass(frozen=True)
class ReportSummary:
    """Counts from the rendered report's summary widget."""

    total: int
    passed: int
    failed: int
    broken: int
    skipped: int
    unknown: int

    @classmethod
    def read(cls, report_dir: Path) -> "ReportSummary":
        """Read ``widgets/summary.json`` of a rendered report."""
        stats = json.loads((report_dir / "widgets" / "summary.json").read_text())["statistic"]
        return cls(**{k: int(stats.get(k, 0)) for k in
                      ("total", "passed", "failed", "broken", "skipped", "unknown")})


def allure_home(cache: Path | None = None) -> Path:
    """Where ``allure-commandline`` is installed (``<cache>/allure``)."""
    return (cache or cache_dir()) / "allure"


def ensure_allure(cache: Path | None = None) -> Path:
    """The ``allure`` executable, installed from the npm registry first if missing."""
    home = allure_home(cache)
    binary = home / "node_modules" / ALLURE_PACKAGE / "dist" / "bin" / "allure"
    if binary.is_file():
        return binary
    if shutil.which("npm") is None:
        raise ReportError("npm is needed to install Allure (apt-get install npm)")
    if shutil.which("java") is None:
        raise ReportError("Allure 2 needs Java (apt-get install default-jre-headless)")
    home.mkdir(parents=True, exist_ok=True)
    with FileLock(str(home / ".install.lock")):
        if not binary.is_file():
            done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix",
                                   str(home), ALLURE_PACKAGE], capture_output=True, text=True)
            if done.returncode != 0 or not binary.is_file():
                raise ReportError(f"npm install {ALLURE_PACKAGE} failed:\n{done.stderr[-2000:]}")
    return binary


def carry_history(previous_report: Path, results_dir: Path) -> bool:
    """Copy ``previous_report/history`` into ``results_dir/history``; whether there was one."""
    source = previous_report / "history"
    if not source.is_dir():
        return False
    target = results_dir / "history"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return True


def write_executor(results_dir: Path, report_dir: Path) -> int:
    """Write ``executor.json`` (who built the report, and its build number in the trend); the
    build number is one more than the number of runs in the carried-over history."""
    trend = results_dir / "history" / "history-trend.json"
    build = 1 + (len(json.loads(trend.read_text())) if trend.is_file() else 0)
    executor = {"name": "gpuhil", "type": "gpuhil", "buildOrder": build,
                "buildName": f"gpuhil run #{build}", "reportName": "gpuhil report",
                "reportUrl": report_dir.resolve().as_uri() + "/index.html"}
    (results_dir / "executor.json").write_text(json.dumps(executor, indent=1))
    return build


def render(results_dir: Path | str | Sequence[Path | str], report_dir: Path | str,
           history: bool = True, cache: Path | None = None) -> ReportSummary:
    """Render ``results_dir`` (allure-pytest output; several: one run per machine, merged) into
    ``report_dir`` and return its counts.

    With ``history``, the trends continue from the report currently in ``report_dir``.  Each
    machine's results get its stack and capability tables (:mod:`gpuhil.report.machines`).
    """
    sources = [Path(results_dir)] if isinstance(results_dir, (str, Path)) else \
        [Path(p) for p in results_dir]
    for results in sources:
        if not results.is_dir() or not any(results.glob("*-result.json")):
            raise ReportError(f"no Allure results in {results} (run pytest with --alluredir "
                              f"{results})")
    report = Path(report_dir)
    allure = ensure_allure(cache)
    if len(sources) == 1:
        return _generate(allure, sources[0], report, history)
    report.parent.mkdir(parents=True, exist_ok=True)
    merged = Path(tempfile.mkdtemp(prefix=f".{report.name}-merged-", dir=report.parent))
    try:
        merge_results(sources, merged)
        return _generate(allure, merged, report, history)
    finally:
        shutil.rmtree(merged, ignore_errors=True)


def _generate(allure: Path, results: Path, report: Path, history: bool) -> ReportSummary:
    if (results / FRAGMENTS_DIR).is_dir():
        write_machine_fixtures(results, write_environment(results))
    if history:
        carry_history(report, results)
    write_executor(results, report)
    env = dict(os.environ)
    env.setdefault("JAVA_HOME", str(Path(os.path.realpath(shutil.which("java") or "java")).parents[1]))
    done = subprocess.run([str(allure), "generate", str(results), "--clean", "-o", str(report)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0 or not (report / "index.html").is_file():
        raise ReportError(f"allure generate failed ({done.returncode}):\n"
                          f"{(done.stdout + done.stderr)[-3000:]}")
    return ReportSummary.read(report)


__all__ = ["ReportError", "ReportSummary", "allure_home", "carry_history", "ensure_allure",
           "render", "write_executor"]
