"""A client for QEMU's qtest line protocol over a connected stream socket.

Each call is one round trip: the command line(s) go out in one ``send``, the answer is read
back.  Answers are ``OK``, ``OK <value>`` or ``FAIL <reason>``; QEMU also sends asynchronous
``IRQ raise N`` / ``IRQ lower N`` lines (after :meth:`QtestClient.irq_intercept_in`) at any
point, also between a command and its answer: those are recorded in :attr:`irq_events` and
:attr:`irq_levels`, never taken for an answer.

:meth:`QtestClient.exchange` sends several lines at once and reads all their answers (PCI
config cycles use it: :mod:`gpuhil.qtest.pci`).  Posted writes (``post_writew``, for
virtqueue notifies) are sent without waiting; their answers are read and checked at the next
call, at most :data:`MAX_POSTED` of them left unread.

Errors are typed (:mod:`gpuhil.qtest.errors`) and name the command; after a death, a timeout
or a malformed answer the client is broken and every further call raises
:class:`QtestClosed`.  ``on_death`` (given by the owner of the QEMU) returns QEMU's exit
status and stderr tail for :class:`QtestDied`.
"""
from __future__ import annotations

import base64
import select
import socket
import time
from typing import Callable

from gpuhil.qtest.errors import (
    QtestClosed, QtestDied, QtestFailed, QtestProtocolError, QtestTimeout,
)

__all__ = ["MAX_POSTED", "QtestClient"]

_RECV = 1 << 16
#: Posted writes whose OK may stay unread.  Each answer is a small skb charged at its full
#: truesize against the socket, so a few hundred unread ones fill it; QEMU then blocks in
#: the write of the next answer and stops processing anything (measured: after ~280).
MAX_POSTED = 32
DeathInfo = Callable[[], "tuple[str, str]"]


class QtestClient:
    """qtest over ``sock`` (already connected); see the module docstring."""

    def __init__(self, sock: socket.socket, *, timeout: float = 30.0,
                 on_death: DeathInfo | None = None, name: str = "qtest") -> None:
        self.name = name
        self.timeout = timeout
        self._sock = sock
        sock.settimeout(timeout)
        self._recv = sock.recv
        self._send = sock.sendall
        self._buf = b""  # received bytes not yet consumed (a partial line at most, usually)
        self._on_death = on_death
        self._broken: str | None = None
        self._posted: list[bytes] = []  # posted commands whose OK has not been read yet
        #: Every ``IRQ raise|lower N`` line received, in order, as (raised, line).
        self.irq_events: list[tuple[bool, int]] = []
        #: The current level of each IRQ line seen.
        self.irq_levels: dict[int, bool] = {}

    # --- the round trip ---------------------------------------------------------------------

    def _line(self, command: bytes) -> bytes:
        """The next answer line (IRQ lines are recorded and skipped)."""
        while True:
            buf = self._buf
            end = buf.find(b"\n")
            while end < 0:
                try:
                    chunk = self._recv(_RECV)
                except socket.timeout:
                    self._break("timeout")
                    raise QtestTimeout(_text(command), self.timeout) from None
                except OSError:
                    chunk = b""
                if not chunk:
                    self._died(command)
                buf += chunk
                end = buf.find(b"\n", len(buf) - len(chunk))
            line, self._buf = buf[:end], buf[end + 1:]
            if line[:3] == b"IRQ":
                self._irq(command, line)
                continue
            return line

    def _ask(self, command: bytes, answers: int = 1) -> bytes:
        """Send ``command`` (``answers`` lines) and return the last answer's text after OK."""
        if self._broken is not None:
            raise QtestClosed(f"qtest {_text(command)!r}: the client is {self._broken}",
                              _text(command))
        try:
            self._send(command)
        except socket.timeout:
            self._break("timeout")
            raise QtestTimeout(_text(command), self.timeout) from None
        except OSError:
            self._died(command)
        if self._posted:
            self._drain()
        line = b""
        for _ in range(answers):
            line = self._line(command)
            if line[:2] != b"OK" or (len(line) > 2 and line[2] != 0x20):
                if line[:4] == b"FAIL":
                    raise QtestFailed(_text(command), line.decode(errors="replace"))
                self._break("broken by a malformed answer")
                raise QtestProtocolError(_text(command), line)
        return line[3:]

    def _post(self, command: bytes) -> None:
        """Send ``command`` without waiting for its OK (read, and checked, at the next call)."""
        if self._broken is not None:
            raise QtestClosed(f"qtest {_text(command)!r}: the client is {self._broken}",
                              _text(command))
        if len(self._posted) >= MAX_POSTED:
            self._drain()
        try:
            self._send(command)
        except OSError:
            self._died(command)
        self._posted.append(command)

    def _drain(self) -> None:
        posted, self._posted = self._posted, []
        for command in posted:
            line = self._line(command)
            if line != b"OK":
                if line[:4] == b"FAIL":
                    raise QtestFailed(_text(command) + " (posted)", line.decode(errors="replace"))
                self._break("broken by a malformed answer")
                raise QtestProtocolError(_text(command) + " (posted)", line)

    @property
    def posted(self) -> int:
        """Posted writes whose answer has not been read yet (at most MAX_POSTED)."""
        return len(self._posted)

    def flush(self) -> None:
        """Wait for the answers of every posted write (raising for the first that failed)."""
        if self._posted:
            self._drain()

    def exchange(self, lines: bytes, answers: int = 1) -> bytes:
        """Send ``lines`` (``answers`` complete command lines) in one go; every answer must be
        OK; the text after the last one's ``OK `` (one round trip for all)."""
        return self._ask(lines, answers)

    def value(self, lines: bytes, answers: int = 1) -> int:
        """:meth:`exchange`, the last answer's value as an integer."""
        return self._value(lines, answers)

    def _value(self, command: bytes, answers: int = 1) -> int:
        text = self._ask(command, answers)
        try:
            return int(text, 16)
        except ValueError:
            self._break("broken by a malformed answer")
            raise QtestProtocolError(_text(command), b"OK " + text, "answer has no hex value") from None

    def _irq(self, command: bytes, line: bytes) -> None:
        parts = line.split()
        if len(parts) != 3 or parts[1] not in (b"raise", b"lower") or not parts[2].isdigit():
            self._break("broken by a malformed answer")
            raise QtestProtocolError(_text(command), line, "malformed IRQ line")
        raised, number = parts[1] == b"raise", int(parts[2])
        self.irq_events.append((raised, number))
        self.irq_levels[number] = raised

    def _died(self, command: bytes) -> None:
        self._break("closed: QEMU went away")
        status, stderr = self._on_death() if self._on_death is not None else ("", "")
        raise QtestDied(_text(command), status, stderr)

    def _break(self, why: str) -> None:
        if self._broken is None:
            self._broken = why

    @property
    def socket(self) -> socket.socket:
        """The connection itself, for tools that speak the protocol directly (benchmarks);
        never interleave that with calls on this client."""
        return self._sock

    @property
    def usable(self) -> bool:
        """Whether calls can still be made (not closed, QEMU not gone, no protocol error)."""
        return self._broken is None

    def close(self) -> None:
        """Close the socket (QEMU sees EOF); harmless twice."""
        self._break("closed")
        self._sock.close()

    # --- port I/O ---------------------------------------------------------------------------

    def outb(self, port: int, value: int) -> None:
        self._ask(b"outb 0x%x 0x%x\n" % (port, value))

    def outw(self, port: int, value: int) -> None:
        self._ask(b"outw 0x%x 0x%x\n" % (port, value))

    def outl(self, port: int, value: int) -> None:
        self._ask(b"outl 0x%x 0x%x\n" % (port, value))

    def inb(self, port: int) -> int:
        return self._value(b"inb 0x%x\n" % port)

    def inw(self, port: int) -> int:
        return self._value(b"inw 0x%x\n" % port)

    def inl(self, port: int) -> int:
        return self._value(b"inl 0x%x\n" % port)

    # --- memory (MMIO and RAM, guest-physical) ----------------------------------------------

    def readb(self, addr: int) -> int:
        return self._value(b"readb 0x%x\n" % addr)

    def readw(self, addr: int) -> int:
        return self._value(b"readw 0x%x\n" % addr)

    def readl(self, addr: int) -> int:
        return self._value(b"readl 0x%x\n" % addr)

    def readq(self, addr: int) -> int:
        return self._value(b"readq 0x%x\n" % addr)

    def writeb(self, addr: int, value: int) -> None:
        self._ask(b"writeb 0x%x 0x%x\n" % (addr, value))

    def writew(self, addr: int, value: int) -> None:
        self._ask(b"writew 0x%x 0x%x\n" % (addr, value))

    def writel(self, addr: int, value: int) -> None:
        self._ask(b"writel 0x%x 0x%x\n" % (addr, value))

    def writeq(self, addr: int, value: int) -> None:
        self._ask(b"writeq 0x%x 0x%x\n" % (addr, value))

    def post_writew(self, addr: int, value: int) -> None:
        """A posted 16-bit store (a virtqueue notify): sent now, its OK read at the next call
        or :meth:`flush`, so the caller does not wait a round trip for it."""
        self._post(b"writew 0x%x 0x%x\n" % (addr, value))

    def post_writel(self, addr: int, value: int) -> None:
        """A posted 32-bit store (see :meth:`post_writew`)."""
        self._post(b"writel 0x%x 0x%x\n" % (addr, value))

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at ``addr`` (qtest ``b64read``)."""
        if size <= 0:
            return b""
        text = self._ask(b"b64read 0x%x 0x%x\n" % (addr, size))
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError:
            self._break("broken by a malformed answer")
            raise QtestProtocolError(f"b64read {addr:#x} {size:#x}", text, "bad base64") from None
        if len(data) != size:
            raise QtestProtocolError(f"b64read {addr:#x} {size:#x}", text,
                                     f"{len(data)} bytes instead of {size}")
        return data

    def write(self, addr: int, data: bytes) -> None:
        """Write ``data`` at ``addr`` (qtest ``b64write``)."""
        if data:
            self._ask(b"b64write 0x%x 0x%x %s\n" % (addr, len(data), base64.b64encode(data)))

    def memset(self, addr: int, size: int, value: int) -> None:
        if size > 0:
            self._ask(b"memset 0x%x 0x%x 0x%x\n" % (addr, size, value))

    # --- interrupts and clock ---------------------------------------------------------------

    def irq_intercept_in(self, qom_path: str) -> None:
        """Report the GPIO inputs of ``qom_path`` (e.g. ``ioapic``) as IRQ lines."""
        self._ask(b"irq_intercept_in %s\n" % qom_path.encode())

    def irq_intercept_out(self, qom_path: str) -> None:
        self._ask(b"irq_intercept_out %s\n" % qom_path.encode())

    def take_irq_events(self) -> list[tuple[bool, int]]:
        """The IRQ events received since the previous call."""
        events, self.irq_events = self.irq_events, []
        return events

    def wait_irq(self, line: int | None, timeout: float) -> bool:
        """Wait (no command outstanding) until IRQ ``line`` (any line: None) is raised;
        whether it was."""
        what = b"(waiting for IRQ %s)" % (b"any" if line is None else b"%d" % line)
        self.flush()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                complete, self._buf = self._buf.split(b"\n", 1)
                if complete[:3] != b"IRQ":
                    self._break("broken by a malformed answer")
                    raise QtestProtocolError(_text(what), complete, "answer with no command")
                self._irq(what, complete)
            if self.irq_levels.get(line) if line is not None else any(self.irq_levels.values()):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._sock], [], [], remaining)[0]:
                return False
            try:
                chunk = self._recv(_RECV)
            except OSError:
                chunk = b""
            if not chunk:
                self._died(what)
            self._buf += chunk

    def clock_step(self, ns: int | None = None) -> int:
        """Advance the virtual clock (to the next deadline without ``ns``); the new time."""
        return int(self._ask(b"clock_step\n" if ns is None else b"clock_step %d\n" % ns) or 0)

    def endianness(self) -> str:
        return self._ask(b"endianness\n").decode()

    def raw_command(self, line: str) -> str:
        """Any qtest command line; the text after ``OK``."""
        return self._ask(line.encode() + b"\n").decode(errors="replace")


def _text(command: bytes) -> str:
    text = command.decode(errors="replace").strip().replace("\n", "; ")
    return text if len(text) <= 100 else text[:97] + "..."
