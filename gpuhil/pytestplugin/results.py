"""The results half of the gpuhil pytest plugin: outcomes beyond pass/fail/skip, per-test guest
evidence, timeouts that dump state before killing, and Allure labels/environment/categories.

Load it with ``-p gpuhil.pytestplugin.results`` (or the ``pytest11`` entry point).  It works with any test
whose funcargs hold a :class:`gpuhil.lab.guest.Guest`; Allure output needs ``allure-pytest``
and ``--alluredir``.

Per test that uses a guest: start/end markers go into the guest's ``/dev/kmsg``; afterwards the
kernel-log slice between them (with levels), the console slice, QEMU's stderr, the QMP events,
the guest spec and QEMU's argv are attached, and kernel warnings/BUGs turn the test into
dmesg-warn/dmesg-fail (:mod:`gpuhil.outcomes`) unless the ``kernel_log_allowed(*regexes)``
marker expects them.

``--gpuhil-timeout`` / ``--gpuhil-inactivity-timeout`` (or the ``gpuhil_timeout(seconds,
inactivity=...)`` marker) end a test that hangs, or whose guest console and QEMU output stay
silent that long (a host-only test: since it started).  Before stopping it, the watchdog records
QMP ``query-status`` and the guest's task stacks (SysRq t and w, typed through QMP because the
agent is busy with the hung call; read back from the console), then kills QEMU and interrupts
the test.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from gpuhil.devices import kmsg
from gpuhil.report.environment import collect_provenance, host_gpu_pci_ids, write_results_metadata
from gpuhil.lab.guest import Guest
from gpuhil.outcomes import (
    ALLURE, KernelLogProblem, KernelLogVerdict, Outcome, PhaseResult, TestTimeout, allure_message,
    classify, scan_kernel_log,
)

SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")
MARK_START, MARK_END = "gpuhil-test-start", "gpuhil-test-end"
#: How the watchdog interrupts the test's thread (not SIGALRM, which pytest-timeout uses).
WATCHDOG_SIGNAL = signal.SIGUSR2


@dataclass
class TestRecord:
    """What the plugin gathered about one test while it ran."""

    __test__ = False

    nodeid: str
    phases: list[PhaseResult] = field(default_factory=list)
    guest: Guest | None = None
    start_marker: str = ""
    console_offset: int = 0
    stderr_offset: int = 0
    timeout_kind: str = ""
    dump: str = ""
    kernel_log: KernelLogVerdict | None = None
    outcome: Outcome | None = None
    item: pytest.Item | None = None


@dataclass
class SessionState:
    """Per-session state: the records by node id and every guest seen (for provenance)."""

    records: dict[str, TestRecord] = field(default_factory=dict)
    guests: list[Guest] = field(default_factory=list)
    sysrq_ready: set[int] = field(default_factory=set)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpuhil-report", "gpuhil results")
    group.addoption("--gpuhil-timeout", type=float, default=None, metavar="SECONDS",
                    help="per-test timeout (state is dumped before the test is stopped)")
    group.addoption("--gpuhil-inactivity-timeout", type=float, default=None, metavar="SECONDS",
                    help="stop a test whose guest console and QEMU output stay silent this long")
    group.addoption("--gpuhil-kernel-log", choices=("check", "attach"), default="check",
                    help="check: guest kernel warnings/BUGs during a test make it dmesg-warn/"
                         "dmesg-fail (default); attach: only attach the kernel log slice")
    parser.addini("gpuhil_timeout", "default per-test timeout in seconds (0: none)", default="0")
    parser.addini("gpuhil_inactivity_timeout", "default inactivity timeout in seconds (0: none)",
                  default="0")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(ReportPlugin(config), "gpuhil-report")
    config.addinivalue_line("markers", "gpuhil_timeout(seconds, inactivity=None): this test's "
                            "per-test (and inactivity) timeout")
    config.addinivalue_line("markers", "kernel_log_allowed(*regexes): guest kernel log lines "
                            "this test provokes on purpose (not dmesg-warn/dmesg-fail)")
    config.addinivalue_line("markers", f"severity(level): Allure severity, one of {SEVERITIES}")


# --- the guest of a test ----------------------------------------------------------------------

def _guest_of(item: pytest.Item) -> Guest | None:
    """The test's lab guest: its ``guest`` funcarg, else any funcarg that is a Guest or holds
    one as ``.machine`` (the core plugin's device fixtures: virtgpu, udmabuf, vfio_device)."""
    funcargs = getattr(item, "funcargs", None) or {}
    values = [funcargs.get("guest"), *funcargs.values()]
    for value in values:
        if isinstance(value, Guest):
            return value
    for value in values:
        if isinstance(getattr(value, "machine", None), Guest):
            return value.machine
    return None


def _console_size(guest: Guest) -> int:
    try:
        return guest.console_log.stat().st_size
    except (OSError, RuntimeError):
        return 0


def _console_slice(guest: Guest, offset: int) -> str:
    try:
        with open(guest.console_log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except (OSError, RuntimeError):  # the run directory is gone: the in-memory tail remains
        return guest.console_tail(200)


def _begin(record: TestRecord, state: SessionState) -> None:
    guest = record.guest
    if guest is None or not guest.alive:
        return
    if guest not in state.guests:
        state.guests.append(guest)
    if guest.pid not in state.sysrq_ready:
        # all SysRq functions, so that the watchdog can ask for task stacks from the keyboard
        guest.run(["sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"], check=True)
        state.sysrq_ready.add(guest.pid)
    guest.qmp_events()  # drop what happened before this test
    record.console_offset = _console_size(guest)
    record.stderr_offset = len(guest.qemu_stderr())
    record.start_marker = guest.kmsg_mark(f"{MARK_START} {record.nodeid}")


def _allowed(item: pytest.Item | None) -> list[re.Pattern[str]]:
    """The ``kernel_log_allowed`` patterns of a test (kernel lines it provokes on purpose)."""
    if item is None:
        return []
    return [re.compile(p) for m in item.iter_markers("kernel_log_allowed") for p in m.args]


def _finish(record: TestRecord, check_kernel_log: bool = True) -> KernelLogProblem | None:
    """Write the end marker, attach the evidence; the kernel-log problem of the slice, if any
    (never with ``check_kernel_log`` False: the slice is only attached)."""
    guest = record.guest
    if guest is None:
        return None
    problem = None
    if guest.alive and record.start_marker:
        end = guest.kmsg_mark(f"{MARK_END} {record.nodeid}")
        records = guest.call(kmsg.records_after, record.start_marker, end)
        _attach("kernel log (test slice)", "\n".join(r.line() for r in records))
        allowed = _allowed(record.item)
        if check_kernel_log:
            record.kernel_log = scan_kernel_log(
                r for r in records if not any(p.search(r.text) for p in allowed))
            if not record.kernel_log.clean:
                problem = KernelLogProblem(record.kernel_log)
    _attach("guest console (test slice)", _console_slice(guest, record.console_offset))
    _attach("QEMU stderr (test slice)", guest.qemu_stderr()[record.stderr_offset:])
    _attach("QMP events", json.dumps(guest.qmp_events(), indent=1, default=str), "json")
    _attach("guest spec", _spec_text(guest))
    _attach("QEMU argv", shlex.join(guest.qemu_argv))
    return problem


def _spec_text(guest: Guest) -> str:
    try:
        return json.dumps(dataclasses.asdict(guest.spec), indent=1, default=str)
    except TypeError:
        return repr(guest.spec)


def _attach(name: str, body: str, kind: str = "text") -> None:
    try:
        import allure
    except ImportError:
        return
    types = {"text": allure.attachment_type.TEXT, "json": allure.attachment_type.JSON}
    allure.attach(body or "(empty)", name=name, attachment_type=types[kind])


# --- timeouts ---------------------------------------------------------------------------------

def _timeouts(item: pytest.Item) -> tuple[float, float]:
    config = item.config
    total = config.getoption("gpuhil_timeout") or float(config.getini("gpuhil_timeout") or 0)
    idle = (config.getoption("gpuhil_inactivity_timeout")
            or float(config.getini("gpuhil_inactivity_timeout") or 0))
    marker = item.get_closest_marker("gpuhil_timeout")
    if marker is not None:
        total = float(marker.args[0]) if marker.args else total
        idle = float(marker.kwargs.get("inactivity") or idle)
    return total, idle


def dump_state(guest: Guest | None, settle: float = 3.0) -> str:
    """QMP status and the guest's task stacks (SysRq t, w through the PS/2 keyboard), as text."""
    if guest is None or not guest.alive:
        return "no running guest"
    parts = []
    try:
        parts.append(f"QMP query-status: {json.dumps(guest.qmp('query-status'))}")
    except Exception as exc:
        parts.append(f"QMP query-status failed: {type(exc).__name__}: {exc}")
    offset = _console_size(guest)
    for key in ("9", "t", "w"):  # 9: console loglevel, so the dumps reach the serial console
        try:
            keys = [{"type": "qcode", "data": k} for k in ("alt", "sysrq", key)]
            guest.qmp("send-key", keys=keys)
        except Exception as exc:
            parts.append(f"SysRq {key} failed: {type(exc).__name__}: {exc}")
        time.sleep(0.3)
    time.sleep(settle)
    parts.append("guest task stacks (SysRq t, w; from the console):\n"
                 + _console_slice(guest, offset))
    return "\n\n".join(parts)


class Watchdog:
    """Ends the current test when it exceeds ``total`` seconds or ``idle`` seconds of silence."""

    def __init__(self, record: TestRecord, total: float, idle: float) -> None:
        self.record = record
        self.total, self.idle = total, idle
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, name="gpuhil-watchdog", daemon=True)
        self._previous: Any = None
        self._seconds = 0.0

    def _activity(self, start: float) -> float:
        """The last time the guest's console or QEMU wrote something (monotonic clock)."""
        latest = start
        guest = self.record.guest
        if guest is not None and guest.pid is not None:
            for path in (guest.console_log, guest.process.qemu_log):
                try:
                    age = time.time() - path.stat().st_mtime
                except OSError:
                    continue
                latest = max(latest, time.monotonic() - age)
        return latest

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(0.2):
            now = time.monotonic()
            if self.total and now - start > self.total:
                self._fire("per-test", self.total)
                return
            if self.idle and now - self._activity(start) > self.idle:
                self._fire("inactivity", self.idle)
                return

    def _fire(self, kind: str, seconds: float) -> None:
        self.record.timeout_kind = kind
        self.record.dump = f"{kind} timeout after {seconds:g} s\n\n" + dump_state(self.record.guest)
        self._seconds = seconds
        if self._main is not None:
            signal.pthread_kill(self._main, WATCHDOG_SIGNAL)
        guest = self.record.guest
        if guest is not None and guest.pid is not None:
            guest.process.kill()  # whatever the test waits for in the guest ends now

    def _on_alarm(self, signum: int, frame: Any) -> None:
        raise TestTimeout(self.record.timeout_kind or "per-test", self._seconds)

    def __enter__(self) -> "Watchdog":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(WATCHDOG_SIGNAL, self._on_alarm)
        else:
            self._main = None
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._previous is not None:
            signal.signal(WATCHDOG_SIGNAL, self._previous)


def _allure_result(config: pytest.Config, nodeid: str) -> Any:
    """allure-pytest's TestResult of ``nodeid`` while it is still open (None without allure).

    allure-pytest has no public API to change a result's status; its listener's cache is the
    one place that maps a node id to the open result.
    """
    listener = config.pluginmanager.getplugin("allure_listener")
    if listener is None:
        return None
    uuid = listener._cache.get(nodeid)
    return listener.allure_logger.get_test(uuid) if uuid else None


def _suite_labels(item_path: Path, rootdir: Path, name: str) -> dict[str, str]:
    """epic = top folder under suites/ (else the top folder), feature = subfolder or module,
    story = the test."""
    try:
        parts = list(item_path.relative_to(rootdir).parts)
    except ValueError:
        parts = [item_path.name]
    if parts and parts[0] == "suites":
        parts = parts[1:]
    module = Path(parts[-1]).stem.removeprefix("test_") if parts else ""
    folders = parts[:-1]
    epic = folders[0] if folders else module
    feature = "/".join(folders[1:]) if len(folders) > 1 else module
    return {"epic": epic, "feature": feature, "story": name}


def _guest_config(guest: Guest | None) -> str:
    if guest is None:
        return "no guest"
    spec = guest.spec
    what = [spec.gpu.device_arg() if spec.gpu is not None else "no GPU"]
    if spec.iommu is not None:
        what.append(f"iommu={spec.iommu.value}")
    what += [type(d).__name__.lower() for d in spec.devices]
    return ", ".join(what)


def _apply(item: pytest.Item, record: TestRecord, host_gpus: str) -> None:
    """Decide the outcome and write it, with the labels, into the still-open Allure result."""
    outcome = classify(record.phases, timed_out=bool(record.timeout_kind),
                       kernel_log=record.kernel_log)
    record.outcome = outcome
    result = _allure_result(item.config, item.nodeid)
    if result is None:
        return
    from allure_commons.model2 import Label, StatusDetails

    mapping = ALLURE[outcome]
    if outcome not in (Outcome.PASS, Outcome.SKIP):
        result.status = mapping.status
        details = result.statusDetails or StatusDetails()
        details.message = allure_message(outcome, details.message)
        if record.timeout_kind and record.dump:
            details.trace = (record.dump + "\n\n" + (details.trace or "")).strip()
        result.statusDetails = details
    names = {label.name for label in result.labels}
    labels = _suite_labels(Path(str(item.path)), Path(str(item.config.rootpath)),
                           getattr(item, "originalname", item.name))
    marker = item.get_closest_marker("severity")
    if marker is not None and marker.args and "severity" not in names:
        labels["severity"] = str(marker.args[0])
    labels["gpuhil.outcome"] = outcome.value
    labels["gpuhil.category"] = mapping.category.value
    labels["host_gpu"] = host_gpus
    labels["guest_config"] = _guest_config(record.guest or _guest_of(item))
    for name, value in labels.items():
        if name not in names or name.startswith("gpuhil."):
            result.labels.append(Label(name=name, value=value))
    result.labels.append(Label(name="tag", value=outcome.value))


# --- hooks ------------------------------------------------------------------------------------

class ReportPlugin:
    """The hooks; one instance per pytest session (registered by :func:`pytest_configure`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.state = SessionState()
        self.host_gpus = " ".join(host_gpu_pci_ids()) or "none"

    def _record(self, item: pytest.Item) -> TestRecord:
        record = self.state.records.get(item.nodeid)
        if record is None:
            record = self.state.records[item.nodeid] = TestRecord(item.nodeid, item=item)
        return record

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Iterator[None]:
        record = self._record(item)
        record.guest = _guest_of(item)
        _begin(record, self.state)
        total, idle = _timeouts(item)
        try:
            if total or idle:
                with Watchdog(record, total, idle):
                    result = yield
            else:
                result = yield
        except BaseException as exc:
            if record.timeout_kind:
                _attach("timeout dump", record.dump)
                if record.guest is not None:
                    record.guest.close()  # it was killed; its agent channel is unusable
            try:
                _finish(record)
            except Exception as failure:  # the guest died with the test: keep the test's error
                _attach("evidence not collected", f"{type(failure).__name__}: {failure}")
            if record.timeout_kind and not isinstance(exc, TestTimeout):
                seconds = total if record.timeout_kind == "per-test" else idle
                raise TestTimeout(record.timeout_kind, seconds) from exc
            raise
        problem = _finish(record, item.config.getoption("gpuhil_kernel_log") == "check")
        if problem is not None:
            raise problem
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Iterator[pytest.TestReport]:
        report = yield
        record = self._record(item)
        exc = call.excinfo.value if call.excinfo is not None else None
        record.phases.append(PhaseResult(report.when, report.outcome, exc))
        outcome = classify(record.phases, timed_out=bool(record.timeout_kind))
        report.user_properties.append(("gpuhil_outcome", outcome.value))
        return report

    def pytest_report_teststatus(self, report: pytest.TestReport
                                 ) -> tuple[str, str, str] | None:
        outcome = dict(report.user_properties).get("gpuhil_outcome")
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
            _apply(record.item, record, self.host_gpus)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write environment.properties (provenance, capability snapshot) and categories.json."""
        results_dir = getattr(self.config.option, "allure_report_dir", None)
        if not results_dir:
            return
        snapshots: dict[str, dict[str, Any]] = {}
        try:
            from gpuhil.pytestplugin import lab as core
            for name, caps in self.config.stash.get(core.SNAPSHOTS_KEY, {}).items():
                snapshots[name] = caps.as_dict()
            single = self.config.stash.get(core.SNAPSHOT_KEY, None)
            if single is not None and not snapshots:
                snapshots[getattr(single, "configuration", "default")] = single.as_dict()
        except (ImportError, AttributeError):
            pass
        target = Path(results_dir)
        write_results_metadata(target, collect_provenance(self.state.guests), snapshots)
