"""Errors of the lab runtime: QEMU that would not start, guests that did not boot or died.

Each carries what is needed to understand it without rerunning: QEMU's exit status, command line
and stderr, and the tail of the guest's serial console.
"""
from __future__ import annotations

import shlex
from typing import Sequence

from gpuhil.errors import GpuhilError


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.rstrip("\n").splitlines()) or "    (empty)\n"


def describe_status(returncode: int | None) -> str:
    """'exit code 1', 'killed by SIGKILL', or 'still running'."""
    import signal

    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class LabError(GpuhilError):
    """Base class of the lab runtime's errors."""


class QemuLaunchError(LabError):
    """QEMU did not start: carries its exit code, the argv and what it printed."""

    def __init__(self, reason: str, returncode: int | None, argv: Sequence[str], stderr: str) -> None:
        self.reason = reason
        self.returncode = returncode
        self.argv = list(argv)
        self.stderr = stderr
        super().__init__(reason)

    def __str__(self) -> str:
        return (f"QEMU failed to start: {self.reason} ({describe_status(self.returncode)})\n"
                f"  command: {shlex.join(self.argv)}\n  stderr:\n{_indent(self.stderr)}")


class GuestError(LabError):
    """A guest went wrong; ``console_tail`` holds the last lines of its serial console."""

    def __init__(self, message: str, console_tail: str = "", stderr: str = "") -> None:
        self.message = message
        self.console_tail = console_tail
        self.stderr = stderr
        super().__init__(message)

    def __str__(self) -> str:
        text = f"{self.message}\n  console tail:\n{_indent(self.console_tail)}"
        if self.stderr.strip():
            text += f"  QEMU stderr:\n{_indent(self.stderr)}"
        return text


class GuestBootError(GuestError):
    """The guest did not reach a working agent (init failure, QEMU exit during boot)."""


class BootTimeout(GuestBootError):
    """The agent did not answer its handshake within the boot timeout."""


class GuestDied(GuestError):
    """QEMU went away while the guest was in use (e.g. killed in the middle of an agent call)."""


class GuestPanic(GuestDied):
    """The guest kernel panicked; ``panic_line`` is the console line that said so."""

    def __init__(self, panic_line: str, console_tail: str = "", stderr: str = "") -> None:
        self.panic_line = panic_line
        super().__init__(f"guest kernel panic: {panic_line}", console_tail, stderr)


class AgentError(LabError):
    """The agent channel broke or the agent spoke out of protocol."""


class RemoteError(LabError):
    """A guest exception whose class could not be rebuilt on the host (described as text)."""

    def __init__(self, type_name: str, message: str, guest_traceback: str) -> None:
        self.type_name = type_name
        self.message = message
        self.guest_traceback = guest_traceback
        super().__init__(f"{type_name}: {message}")


class MissingQemuFeature(LabError):
    """The target's QEMU lacks what a configuration needs (a device type or property, probed with
    ``-device TYPE,help``): a missing capability, which a test skips (or fails under
    ``--must-have``), not an infrastructure error.  ``names`` are the capability names
    (``qemu.<property>``) it stands for."""

    def __init__(self, message: str, names: Sequence[str]) -> None:
        super().__init__(message)
        self.names = tuple(names)
