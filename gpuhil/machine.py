"""The machine: the one thing every layer above the lab talks to.

A machine is where payloads run and where a device is: a booted lab guest
(:class:`gpuhil.lab.guest.Guest`), this machine itself (:class:`LocalMachine`), and, as the
device tier and nested machines land, a QEMU under qtest or a QEMU inside a guest.  Each
satisfies :class:`Machine`; what is not there (no QEMU on the local machine, no kernel under
qtest) answers empty, never raises, except :meth:`Machine.qmp`, which raises
:class:`NoQmp` where there is no QEMU.

Only the lab knows processes, sockets and argv; the pytest side, the suites and the device
handles use this protocol alone.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from gpuhil.errors import GpuhilError

__all__ = ["LocalMachine", "Machine", "NoQmp", "StderrSlice"]


class NoQmp(GpuhilError):
    """The machine has no QEMU, so no QMP (the local machine)."""


@runtime_checkable
class Machine(Protocol):
    """Where payloads run; see the module docstring."""

    name: str

    @property
    def pid(self) -> int | None:
        """QEMU's pid (kept after it exited); None where there is no QEMU."""

    @property
    def alive(self) -> bool:
        """Whether the machine still answers calls."""

    @property
    def fatal(self) -> str | None:
        """The fatal console line seen (a kernel panic, the initramfs's failure), if any."""

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run a module-level function (or ``"module:qualname"``) there; its result."""

    def run(self, argv: list[str] | tuple[str, ...], *, check: bool = False,
            timeout: float | None = None, input: bytes | None = None) -> Any:
        """Run a setup command there (modprobe, a sysfs write through ``sh -c``, ...)."""

    def kmsg_mark(self, label: str = "") -> str:
        """Write a marker line into the kernel log; the marker (for :meth:`kernel_log`)."""

    def kernel_log(self, since: str = "") -> list[str]:
        """Kernel log lines after the marker ``since`` (all of them without one)."""

    def qemu_stderr(self, since: int = 0) -> str:
        """What QEMU printed from character offset ``since`` on ("" without a QEMU)."""

    def qmp(self, command: str, **arguments: Any) -> Any:
        """A QMP command and its return value (:class:`NoQmp` without a QEMU)."""

    def qmp_events(self) -> list[dict[str, Any]]:
        """The QMP events since the previous call ([] without a QEMU)."""

    def close(self) -> None:
        """Stop the machine and remove what it left (idempotent)."""


class LocalMachine:
    """The ``local`` target: payloads run in this process, commands on this machine."""

    name = "local"
    pid = None
    alive = True
    fatal = None

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` here (the device is on this machine)."""
        if isinstance(func, str):
            from gpuhil.agent import resolve

            func = resolve(func)  # type: ignore[assignment]
        return func(*args, **kwargs)  # type: ignore[operator]

    def run(self, argv: list[str] | tuple[str, ...], *, check: bool = False,
            timeout: float | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), check=check, timeout=timeout, input=input,
                              capture_output=True)

    def kmsg_mark(self, label: str = "") -> str:
        from gpuhil.devices import kmsg

        return kmsg.mark(label)

    def kernel_log(self, since: str = "") -> list[str]:
        from gpuhil.devices import kmsg

        return kmsg.lines_after(since)

    def qemu_stderr(self, since: int = 0) -> str:
        return ""

    def qmp(self, command: str, **arguments: Any) -> Any:
        raise NoQmp(f"QMP {command}: the local machine has no QEMU")

    def qmp_events(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        """Nothing to stop."""


@dataclass
class StderrSlice:
    """QEMU's stderr from the moment the slice was made: ``StderrSlice(machine).text()``."""

    machine: Machine
    start: int = field(init=False)

    def __post_init__(self) -> None:
        self.start = len(self.machine.qemu_stderr())

    def text(self) -> str:
        """What QEMU printed since the slice was made."""
        return self.machine.qemu_stderr(self.start)
