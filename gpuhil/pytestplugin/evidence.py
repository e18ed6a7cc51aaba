"""Per-test evidence from the test's machine: start/end markers in its kernel log, then the
kernel-log slice between them (with levels, scanned for warnings/BUGs), the console slice,
QEMU's stderr slice, the QMP events, the guest spec and QEMU's argv, as Allure attachments.

It works on the :class:`~gpuhil.machine.Machine` protocol: what a machine lacks (no QEMU, no
console on the local machine) is simply not attached.
"""
from __future__ import annotations

import dataclasses
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpuhil.devices import kmsg
from gpuhil.machine import Machine
from gpuhil.outcomes import KernelLogProblem, KernelLogVerdict, Outcome, PhaseResult, scan_kernel_log

__all__ = ["MARK_END", "MARK_START", "SessionState", "TestRecord", "attach", "begin", "finish"]

MARK_START, MARK_END = "gpuhil-test-start", "gpuhil-test-end"


@dataclass
class TestRecord:
    """What the plugin gathered about one test while it ran."""

    __test__ = False

    nodeid: str
    phases: list[PhaseResult] = field(default_factory=list)
    machine: Machine | None = None
    start_marker: str = ""
    console_offset: int = 0
    stderr_offset: int = 0
    timeout_kind: str = ""
    timeout_seconds: float = 0.0
    dump: str = ""
    dump_attached: bool = False
    kernel_log: KernelLogVerdict | None = None
    outcome: Outcome | None = None
    item: pytest.Item | None = None
    interrupted: str = ""  # why the test has no verdict (Ctrl-C), shown as its message
    #: a failure pytest raised no exception for (a strict xfail that passed): its report text
    failure_text: str = ""


@dataclass
class SessionState:
    """Per-session state: the records by node id and every machine seen (for provenance)."""

    records: dict[str, TestRecord] = field(default_factory=dict)
    machines: list[Machine] = field(default_factory=list)
    sysrq_ready: set[int] = field(default_factory=set)


def has_qemu(machine: Machine | None) -> bool:
    """Whether ``machine`` is a QEMU (it has a pid): QMP, SysRq keys and QEMU's stderr."""
    return machine is not None and machine.pid is not None


def has_kernel(machine: Machine | None) -> bool:
    """Whether ``machine`` is a QEMU with a guest kernel (SysRq, task stacks); a device-tier
    machine (QEMU under qtest) has none: ``has_kernel = False``."""
    return has_qemu(machine) and getattr(machine, "has_kernel", True)


def begin(record: TestRecord, state: SessionState) -> None:
    """Note where the machine's logs stand and mark the start of the test in its kernel log."""
    machine = record.machine
    if machine is None or not machine.alive:
        return
    if machine not in state.machines:
        state.machines.append(machine)
    if has_qemu(machine):
        if has_kernel(machine) and machine.pid not in state.sysrq_ready:
            # all SysRq functions, so that the watchdog can ask for task stacks from the keyboard
            machine.run(["sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"], check=True)
            state.sysrq_ready.add(machine.pid)
        machine.qmp_events()  # drop what happened before this test
        record.stderr_offset = len(machine.qemu_stderr())
    record.console_offset = console_size(machine)
    try:
        record.start_marker = machine.kmsg_mark(f"{MARK_START} {record.nodeid}")
    except OSError:  # a kernel log this process may not write (the local machine, unprivileged)
        record.start_marker = ""


def allowed(item: pytest.Item | None) -> list[re.Pattern[str]]:
    """The ``kernel_log_allowed`` patterns of a test (kernel lines it provokes on purpose)."""
    if item is None:
        return []
    return [re.compile(p) for m in item.iter_markers("kernel_log_allowed") for p in m.args]


def finish(record: TestRecord, check_kernel_log: bool = True) -> KernelLogProblem | None:
    """Write the end marker, attach the evidence; the kernel-log problem of the slice, if any
    (never with ``check_kernel_log`` False: the slice is only attached)."""
    machine = record.machine
    if machine is None:
        return None
    problem = None
    if machine.alive and record.start_marker:
        end = machine.kmsg_mark(f"{MARK_END} {record.nodeid}")
        records = machine.call(kmsg.records_after, record.start_marker, end)
        attach("kernel log (test slice)", "\n".join(r.line() for r in records))
        patterns = allowed(record.item)
        if check_kernel_log:
            record.kernel_log = scan_kernel_log(
                r for r in records if not any(p.search(r.text) for p in patterns))
            if not record.kernel_log.clean:
                problem = KernelLogProblem(record.kernel_log)
            if record.kernel_log.tolerated:
                attach("kernel warnings of a starved guest CPU (no verdict)",
                       "\n".join(record.kernel_log.tolerated))
    if hasattr(machine, "console_slice"):
        attach("guest console (test slice)", console_slice(machine, record.console_offset))
    if has_qemu(machine):
        attach("QEMU stderr (test slice)", machine.qemu_stderr(record.stderr_offset))
        attach("QMP events", json.dumps(machine.qmp_events(), indent=1, default=str), "json")
    if hasattr(machine, "spec"):
        attach("guest spec", spec_text(machine.spec))
    if hasattr(machine, "qemu_argv"):
        attach("QEMU argv", shlex.join(machine.qemu_argv))
    return problem


def console_size(machine: Machine) -> int:
    """The machine's console log size (0 without a console)."""
    size = getattr(machine, "console_size", None)
    return size() if size is not None else 0


def console_slice(machine: Machine, offset: int) -> str:
    """The machine's console from ``offset`` on ("" without a console)."""
    slice_ = getattr(machine, "console_slice", None)
    return slice_(offset) if slice_ is not None else ""


def spec_text(spec: Any) -> str:
    try:
        return json.dumps(dataclasses.asdict(spec), indent=1, default=str)
    except TypeError:
        return repr(spec)


def attach(name: str, body: str, kind: str = "text") -> None:
    """An Allure attachment of the running test (nothing without allure-pytest)."""
    try:
        import allure
    except ImportError:
        return
    types = {"text": allure.attachment_type.TEXT, "json": allure.attachment_type.JSON}
    allure.attach(body or "(empty)", name=name, attachment_type=types[kind])
