"""What the xdist controller does about workers that die: a crashed worker's test gets a result
naming the signal (in the terminal and in Allure), and at the end of the session the run
directories of dead workers are reaped, so a Ctrl-C or a SIGKILL leaves nothing behind even
when a worker's own cleanup never ran (QEMU itself dies with its worker: PR_SET_PDEATHSIG)."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from gpuhil.lab.errors import describe_status
from gpuhil.outcomes import Outcome
from gpuhil.pytestplugin.allure_result import write_result

__all__ = ["WorkerFaults"]

#: How long the controller waits, after the session, for a worker to exit before reaping.
WORKER_EXIT_WAIT = 30.0


def _popen(node: Any) -> subprocess.Popen | None:
    """The worker's process (execnet's popen gateway keeps it; other gateways have none)."""
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    return popen if isinstance(popen, subprocess.Popen) else None


class WorkerFaults:
    """Controller-side hooks (registered only in an xdist controller)."""

    def __init__(self, config: pytest.Config, runs_dir: Any) -> None:
        self.config = config
        self.runs_dir = runs_dir  # a callable giving the run directory root (None: no lab)
        self.workers: list[subprocess.Popen] = []

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodeready(self, node: Any) -> None:
        popen = _popen(node)
        if popen is not None:
            self.workers.append(popen)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        popen = _popen(getattr(report, "node", None))
        end = "ended"
        if popen is not None:
            try:
                end = describe_status(popen.wait(10))
            except subprocess.TimeoutExpired:
                end = "stopped answering (still running)"
        report.longrepr = f"{report.longrepr}: the worker {end}"
        report.user_properties.append(("gpuhil_outcome", Outcome.CRASH.value))
        write_result(self.config, crashitem, Outcome.CRASH, str(report.longrepr))

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Wait for the workers to be gone, then remove the run directories they left."""
        for popen in self.workers:
            try:
                popen.wait(WORKER_EXIT_WAIT)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        root = self.runs_dir() if self.runs_dir is not None else None
        if root is not None:
            from gpuhil.lab.setup import sweep_stale_runs

            sweep_stale_runs(Path(root))
