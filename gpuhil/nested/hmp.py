"""QEMU's human monitor (HMP) on a unix socket, for the inner QEMU's ``device_del`` and
``info`` commands.

QMP is the machine protocol, but its library (``qemu.qmp``) is a host dependency that the lab
guest's Python does not have, and the inner QEMU needs only a few commands whose effects the
cases read elsewhere (fdinfo, the VFIO group, ``info qtree``): a line to the monitor and its
text up to the next ``(qemu)`` prompt."""
from __future__ import annotations

import re
import socket
import time

from gpuhil.errors import GpuhilError

PROMPT = b"(qemu) "
#: the monitor's line editor redraws what it echoes with terminal escapes
_ESCAPES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class HmpError(GpuhilError):
    """The monitor did not answer (QEMU gone, or no prompt in time)."""


class Hmp:
    """A connection to ``-monitor unix:PATH,server=on,wait=off``."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    self._sock.close()
                    raise HmpError(f"HMP monitor {path}: no listener within {timeout:g} s")
                time.sleep(0.05)
        self._read()  # the banner

    def _read(self) -> str:
        self._sock.settimeout(self.timeout)
        data = b""
        while not data.endswith(PROMPT):
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise HmpError(f"HMP monitor {self.path}: no prompt within {self.timeout:g} s "
                               f"(got {data[-200:]!r})") from None
            if not chunk:
                raise HmpError(f"HMP monitor {self.path}: closed (got {data[-200:]!r})")
            data += chunk
        return data[:-len(PROMPT)].decode(errors="replace")

    def command(self, line: str) -> str:
        """Run one monitor command; what it printed (its echo and escapes removed)."""
        self._sock.sendall(line.encode() + b"\n")
        text = _ESCAPES.sub("", self._read())
        lines = text.replace("\r", "").split("\n")
        return "\n".join(lines[1:]).strip()  # the first line is the echoed command

    def close(self) -> None:
        self._sock.close()


__all__ = ["Hmp", "HmpError"]
