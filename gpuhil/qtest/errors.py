"""What goes wrong talking qtest: every error names the qtest command it happened in."""
from __future__ import annotations

from gpuhil.errors import GpuhilError

__all__ = ["QtestClosed", "QtestDied", "QtestError", "QtestFailed", "QtestProtocolError",
           "QtestTimeout"]


class QtestError(GpuhilError):
    """A qtest command did not get its answer; ``command`` is the line sent (no newline)."""

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(message)
        self.command = command


class QtestFailed(QtestError):
    """QEMU answered ``FAIL ...``; ``answer`` is that line."""

    def __init__(self, command: str, answer: str) -> None:
        super().__init__(f"qtest {command!r}: QEMU answered {answer!r}", command)
        self.answer = answer


class QtestProtocolError(QtestError):
    """An answer that is not ``OK [value]``, ``FAIL ...`` or ``IRQ raise|lower N``."""

    def __init__(self, command: str, answer: bytes, why: str = "malformed answer") -> None:
        super().__init__(f"qtest {command!r}: {why}: {answer[:120]!r}", command)
        self.answer = answer


class QtestDied(QtestError):
    """QEMU closed the qtest connection (it exited or was killed) before answering.

    ``status`` is QEMU's exit status as text ("killed by SIGKILL", "exit code 1") when the
    owner knows it, ``stderr`` the tail of what QEMU printed.
    """

    def __init__(self, command: str, status: str = "", stderr: str = "") -> None:
        text = f"qtest {command!r}: QEMU went away before answering"
        if status:
            text += f" ({status})"
        if stderr.strip():
            text += f"; stderr: {stderr.strip()[-400:]}"
        super().__init__(text, command)
        self.status = status
        self.stderr = stderr


class QtestTimeout(QtestError):
    """No answer within the client's timeout (QEMU hangs); the connection is unusable after."""

    def __init__(self, command: str, timeout: float) -> None:
        super().__init__(f"qtest {command!r}: no answer within {timeout:g} s", command)
        self.timeout = timeout


class QtestClosed(QtestError):
    """The client was closed, or broken by an earlier error."""
