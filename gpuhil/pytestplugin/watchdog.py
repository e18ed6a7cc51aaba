"""Timeouts that dump state before killing: ``--gpuhil-timeout`` / ``--gpuhil-inactivity-timeout``
(or the ``gpuhil_timeout(seconds, inactivity=...)`` marker) end a test that hangs, or whose
machine's console and QEMU output stay silent that long (a test without a QEMU: since it
started).  pytest-timeout's ``--timeout`` and ``@pytest.mark.timeout`` run the same watchdog
through its ``pytest_timeout_set_timer`` hook (over the phases pytest-timeout would time), not
a second, dumpless timer.  Before stopping a test, the watchdog records QMP ``query-status``,
the guest's task stacks (SysRq t and w, typed through QMP because the agent is busy with the
hung call; read back from the console) and this process's thread stacks, then kills QEMU and
interrupts the test."""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
import traceback
from typing import Any

import pytest

from gpuhil.machine import Machine
from gpuhil.outcomes import TestTimeout
from gpuhil.pytestplugin.evidence import (TestRecord, console_size, console_slice, has_kernel,
                                         has_qemu)
from gpuhil.pytestplugin.keys import machine_of

__all__ = ["WATCHDOG_SIGNAL", "Watchdog", "dump_state", "host_stacks", "timeouts"]

#: How the watchdog interrupts the test's thread (not SIGALRM, which pytest-timeout uses).
WATCHDOG_SIGNAL = signal.SIGUSR2


#: The per-test timeout of a test that talks to a machine when nothing else sets one: a safety
#: net so one hung device cannot block a night's run (a timeout, with the state dump, never a
#: verdict on speed: far above what any test needs on a loaded host).
DEFAULT_TIMEOUT = 600.0


def timeouts(item: pytest.Item, has_machine: bool = False) -> tuple[float, float]:
    """The test's (per-test, inactivity) timeouts in seconds (0: none): the marker, else the
    option, else the ini value, else :data:`DEFAULT_TIMEOUT` for a test with a machine."""
    config = item.config
    ini = config.getini("gpuhil_timeout")
    total = config.getoption("gpuhil_timeout") or (
        float(ini) if ini not in ("", None) else (DEFAULT_TIMEOUT if has_machine else 0.0))
    idle = (config.getoption("gpuhil_inactivity_timeout")
            or float(config.getini("gpuhil_inactivity_timeout") or 0))
    marker = item.get_closest_marker("gpuhil_timeout")
    if marker is not None:
        total = float(marker.args[0]) if marker.args else total
        idle = float(marker.kwargs.get("inactivity") or idle)
    return total, idle


def dump_state(machine: Machine | None, settle: float = 30.0) -> str:
    """QMP status and the guest's task stacks (SysRq t, w through the PS/2 keyboard), as text:
    the console from the keys on, once the blocked-task dump (w, the last) has begun and the
    console has been quiet for half a second, or after ``settle`` seconds (a loaded TCG guest
    takes seconds to print the dumps; a fixed wait lost them)."""
    if not has_qemu(machine) or not machine.alive:
        return "no running guest"
    parts = []
    try:
        parts.append(f"QMP query-status: {json.dumps(machine.qmp('query-status'))}")
    except Exception as exc:
        parts.append(f"QMP query-status failed: {type(exc).__name__}: {exc}")
    if not has_kernel(machine):
        return "\n\n".join(parts + ["no guest kernel (a QEMU under qtest): no task stacks"])
    offset = console_size(machine)
    for key in ("9", "t", "w"):  # 9: console loglevel, so the dumps reach the serial console
        try:
            keys = [{"type": "qcode", "data": k} for k in ("alt", "sysrq", key)]
            machine.qmp("send-key", keys=keys)
        except Exception as exc:
            parts.append(f"SysRq {key} failed: {type(exc).__name__}: {exc}")
        time.sleep(0.3)
    deadline, text = time.monotonic() + settle, None
    while True:
        time.sleep(0.5)
        seen = console_slice(machine, offset)
        if (seen == text and "Show Blocked State" in seen) or time.monotonic() > deadline:
            break
        text = seen
    parts.append("guest task stacks (SysRq t, w; from the console):\n" + seen)
    return "\n\n".join(parts)


def host_stacks() -> str:
    """Every thread of this process with its stack (where the host side of the test waits)."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        if names.get(ident) == "gpuhil-watchdog":
            continue
        parts.append(f"thread {names.get(ident, ident)}:\n" + "".join(traceback.format_stack(frame)))
    return "host thread stacks:\n" + "\n".join(parts)


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

    def _machine(self) -> Machine | None:
        """The test's machine: recorded at its call, else what its fixtures set up so far."""
        record = self.record
        if record.machine is None and record.item is not None:
            return machine_of(record.item)
        return record.machine

    def _activity(self, start: float) -> float:
        """The last time the machine's console or QEMU wrote something (monotonic clock)."""
        machine = self._machine()
        last_output = getattr(machine, "last_output", None)
        written = last_output() if has_qemu(machine) and last_output is not None else None
        if written is None:
            return start
        return max(start, time.monotonic() - (time.time() - written))

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
        machine = self._machine()
        self.record.timeout_kind, self.record.timeout_seconds = kind, seconds
        self.record.dump = (f"{kind} timeout after {seconds:g} s\n\n" + dump_state(machine)
                            + "\n\n" + host_stacks())
        self._seconds = seconds
        if self._main is not None:
            signal.pthread_kill(self._main, WATCHDOG_SIGNAL)
        kill = getattr(machine, "kill", None)
        if has_qemu(machine) and kill is not None:
            kill()  # whatever the test waits for in the guest ends now

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
