"""``gpuhil report``: rendering with Allure commandline, history carried from run to run."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from gpuhil.cli import main
from gpuhil.report.render import ReportError, ReportSummary, render


def write_result(results: Path, name: str, status: str) -> None:
    """One allure-pytest style result file."""
    results.mkdir(parents=True, exist_ok=True)
    data = {"uuid": str(uuid.uuid4()), "historyId": name, "name": name, "fullName": f"m#{name}",
            "status": status, "start": 1_700_000_000_000, "stop": 1_700_000_000_500,
            "labels": [{"name": "suite", "value": "m"}]}
    (results / f"{data['uuid']}-result.json").write_text(json.dumps(data))


def test_render_keeps_history_between_runs(tmp_path: Path) -> None:
    report = tmp_path / "report"
    first = tmp_path / "run1"
    write_result(first, "test_a", "passed")
    write_result(first, "test_b", "failed")
    assert render(first, report) == ReportSummary(2, 1, 1, 0, 0, 0)
    second = tmp_path / "run2"
    write_result(second, "test_a", "passed")
    write_result(second, "test_b", "passed")
    write_result(second, "test_c", "skipped")
    assert render(second, report) == ReportSummary(3, 2, 0, 0, 1, 0)
    trend = json.loads((report / "history" / "history-trend.json").read_text())
    assert [point["data"]["total"] for point in trend] == [3, 2]  # newest first
    assert json.loads((second / "executor.json").read_text())["buildOrder"] == 2
    history = json.loads((report / "history" / "history.json").read_text())
    # keyed by a hash of the historyId: test_b is the entry with both its statuses, newest first
    assert ["passed", "failed"] in [[i["status"] for i in entry["items"]] for entry in history.values()]

    third = tmp_path / "run3"
    write_result(third, "test_a", "broken")
    assert render(third, report, history=False).total == 1
    assert len(json.loads((report / "history" / "history-trend.json").read_text())) == 1


def test_render_without_results_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="run pytest with --alluredir"):
        render(tmp_path / "nothing", tmp_path / "report")


def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_result(tmp_path / "res", "test_a", "broken")
    assert main(["report", "--results", str(tmp_path / "res"), "--output", str(tmp_path / "out")]) == 0
    assert f"{tmp_path / 'out'}/index.html: 1 tests, 0 passed, 0 failed, 1 broken, 0 skipped" in \
        capsys.readouterr().out
    assert (tmp_path / "out" / "index.html").is_file()
