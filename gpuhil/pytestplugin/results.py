"""The results half of the gpuhil pytest plugin: outcomes beyond pass/fail/skip, per-test
evidence, timeouts that dump state before killing, and Allure labels/environment/categories.

Load it with ``-p gpuhil.pytestplugin.results`` (or the ``pytest11`` entry point).  It works
with any test that has a machine in play: the lab plugin's fixtures (``guest``,
``capabilities``, the device handles) record it, a fixture of your own records it with
:func:`gpuhil.pytestplugin.keys.use_machine`.  Allure output needs ``allure-pytest`` and
``--alluredir``.

Per test: :mod:`~gpuhil.pytestplugin.evidence` (kernel-log markers and slices, console, QEMU
stderr, QMP events; kernel warnings/BUGs make the test dmesg-warn/dmesg-fail
(:mod:`gpuhil.outcomes`) unless the ``kernel_log_allowed(*regexes)`` marker expects them),
:mod:`~gpuhil.pytestplugin.watchdog` (``--gpuhil-timeout``, ``--gpuhil-inactivity-timeout``,
the ``gpuhil_timeout`` marker; pytest-timeout's ``--timeout`` and ``timeout`` marker through its
hooks) and :mod:`~gpuhil.pytestplugin.allure_result` (the outcome and
labels written into the open Allure result).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from gpuhil.outcomes import PhaseResult, TestTimeout, classify
from gpuhil.pytestplugin.allure_result import SEVERITIES, add_origin, apply
from gpuhil.pytestplugin.evidence import SessionState, TestRecord, attach, begin, finish
from gpuhil.pytestplugin.keys import SNAPSHOT_KEY, SNAPSHOTS_KEY, TIMER_KEY, machine_of
from gpuhil.pytestplugin.watchdog import Watchdog, timeouts
from gpuhil.pytestplugin.keys import ORIGIN_KEY, PLACE_KEY
from gpuhil.report.environment import collect_provenance, host_gpu_pci_ids
from gpuhil.report.machines import RunOrigin, write_environment, write_fragment


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpuhil-report", "gpuhil results")
    group.addoption("--gpuhil-timeout", type=float, default=None, metavar="SECONDS",
                    help="per-test timeout (state is dumped before the test is stopped)")
    group.addoption("--gpuhil-inactivity-timeout", type=float, default=None, metavar="SECONDS",
                    help="stop a test whose guest console and QEMU output stay silent this long")
    group.addoption("--gpuhil-machine", default=None, metavar="NAME",
                    help="the name this machine's results carry in Allure (history, suites, "
                         "merged reports); default: the host name (ini: gpuhil_machine)")
    group.addoption("--gpuhil-kernel-log", choices=("check", "attach"), default="check",
                    help="check: guest kernel warnings/BUGs during a test make it dmesg-warn/"
                         "dmesg-fail (default); attach: only attach the kernel log slice")
    parser.addini("gpuhil_timeout", "default per-test timeout in seconds (0: none; unset: 600 for "
                  "a test with a machine)", default="")
    parser.addini("gpuhil_machine", "the name this machine's results carry (default: the host "
                  "name)", default="")
    parser.addini("gpuhil_inactivity_timeout", "default inactivity timeout in seconds (0: none)",
                  default="0")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ReportPlugin(config), "gpuhil-report")
    config.addinivalue_line("markers", "gpuhil_timeout(seconds, inactivity=None): this test's "
                            "per-test (and inactivity) timeout")
    config.addinivalue_line("markers", "kernel_log_allowed(*regexes): guest kernel log lines "
                            "this test provokes on purpose (not dmesg-warn/dmesg-fail)")
    config.addinivalue_line("markers", f"severity(level): Allure severity, one of {SEVERITIES}")


class ReportPlugin:
    """The hooks; one instance per pytest session (registered by :func:`pytest_configure`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = SessionState()
        self._host_gpus = " ".join(host_gpu_pci_ids()) or "none"  # one sysfs walk per session
        self.origin = self._origin()

    def _origin(self) -> RunOrigin:
        """--gpuhil-machine, else the labgrid place the lab plugin holds, else the host name;
        the place's GPUs, else the host's."""
        config = self.config
        name = config.getoption("gpuhil_machine") or config.getini("gpuhil_machine")
        place = config.stash.get(PLACE_KEY, None)
        if place is not None:
            origin = RunOrigin(name or place.place, place.gpu_summary())
        else:
            origin = RunOrigin.here(name, self._host_gpus)
        config.stash[ORIGIN_KEY] = origin
        return origin

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.origin = self._origin()  # every plugin is configured now (the place is held)

    def _record(self, item: pytest.Item) -> TestRecord:
        record = self.state.records.get(item.nodeid)
        if record is None:
            record = self.state.records[item.nodeid] = TestRecord(item.nodeid, item=item)
        return record

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """pytest-timeout's timeout (``--timeout``, ``@pytest.mark.timeout``) runs gpuhil's
        watchdog over the phases pytest-timeout times: the state dump, then the stop."""
        if not settings.timeout or settings.timeout <= 0:
            return None
        watchdog = Watchdog(self._record(item), float(settings.timeout), timeouts(item)[1])
        item.stash[TIMER_KEY] = watchdog.__enter__()
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        watchdog = item.stash.get(TIMER_KEY, None)
        if watchdog is None:
            return None
        del item.stash[TIMER_KEY]
        watchdog.__exit__(None, None, None)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        """A Ctrl-C (SIGINT) in any phase leaves pytest without a report for the test: its
        still-open Allure result gets the outcome "interrupted" and the phase instead of an
        empty skip."""
        try:
            return (yield)
        except KeyboardInterrupt as exc:
            record = self._record(item)
            when = "setup" if not record.phases else ("call" if len(record.phases) == 1
                                                      else "teardown")
            record.phases.append(PhaseResult(when, "interrupted", exc))
            record.interrupted = f"the run was interrupted (Ctrl-C/SIGINT) during {when}: " \
                                 f"the test did not finish, so it has no verdict"
            self.pytest_runtest_logfinish(item.nodeid)
            raise

    def _dump_once(self, record: TestRecord) -> None:
        if record.timeout_kind and not record.dump_attached:
            record.dump_attached = True
            attach("timeout dump", record.dump)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Inside allure-pytest's setup wrapper, its result is open: the machine and GPU become
        parameters before allure-pytest hashes them into the history id (after teardown)."""
        add_origin(item, self.origin)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        record = self._record(item)
        record.machine = machine_of(item)
        begin(record, self.state)
        total, idle = timeouts(item, has_machine=record.machine is not None)
        if TIMER_KEY in item.stash:  # pytest-timeout's timer is this test's watchdog already
            total = idle = 0.0
        try:
            if total or idle:
                with Watchdog(record, total, idle):
                    result = yield
            else:
                result = yield
        except BaseException as exc:
            if record.timeout_kind:
                self._dump_once(record)
                if record.machine is not None:
                    record.machine.close()  # it was killed; its agent channel is unusable
            try:
                finish(record)
            except Exception as failure:  # the guest died with the test: keep the test's error
                attach("evidence not collected", f"{type(failure).__name__}: {failure}")
            if record.timeout_kind and not isinstance(exc, TestTimeout):
                raise TestTimeout(record.timeout_kind, record.timeout_seconds) from exc
            raise
        problem = finish(record, item.config.getoption("gpuhil_kernel_log") == "check")
        if problem is not None:
            raise problem
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Iterator[pytest.TestReport]:
        report = yield
        record = self._record(item)
        self._dump_once(record)  # a timeout in setup or teardown (pytest-timeout's span)
        exc = call.excinfo.value if call.excinfo is not None else None
        if report.failed and exc is None and isinstance(report.longrepr, str):
            record.failure_text = report.longrepr  # "[XPASS(strict)] <reason>"
        record.phases.append(PhaseResult(report.when, report.outcome, exc))
        outcome = classify(record.phases, timed_out=bool(record.timeout_kind))
        report.user_properties.append(("gpuhil_outcome", outcome.value))
        return report

    def pytest_report_teststatus(self, report: pytest.TestReport
                                 ) -> tuple[str, str, str] | None:
        outcome = dict(getattr(report, "user_properties", ())).get("gpuhil_outcome")
        letters = {"timeout": "T", "crash": "C", "infrastructure": "I", "dmesg-warn": "W",
                   "dmesg-fail": "D"}
        if report.failed and outcome in letters:
            category = "failed" if report.when == "call" else "error"
            return category, letters[outcome], outcome.upper()
        return None

    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        """Runs inside allure-pytest's logfinish wrapper, so its result is still open."""
        record = self.state.records.pop(nodeid, None)
        if record is not None and record.item is not None:
            if record.machine is None:  # the test ended before its call phase
                record.machine = machine_of(record.item)
            apply(record.item, record, self.origin)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write environment.properties (provenance, capability snapshot) and categories.json."""
        results_dir = getattr(self.config.option, "allure_report_dir", None)
        if not results_dir:
            return
        snapshots: dict[str, dict[str, Any]] = {}
        for name, caps in self.config.stash.get(SNAPSHOTS_KEY, {}).items():
            snapshots[name] = caps.as_dict()
        single = self.config.stash.get(SNAPSHOT_KEY, None)
        if single is not None and not snapshots:
            snapshots[getattr(single, "configuration", "default")] = single.as_dict()
        write_fragment(Path(results_dir), self.origin, collect_provenance(self.state.machines),
                       snapshots)
        write_environment(Path(results_dir))
