"""The guest's serial console: read from QEMU's console socket by a thread, written to a log
file with a timestamp per line, kept as an in-memory tail, and watched for fatal lines (a kernel
panic, the initramfs's ``GPUHIL-INIT-FAIL:``)."""
from __future__ import annotations

import collections
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

PANIC_MARK = "Kernel panic - not syncing"
#: Lines that open the oops report a panic may close; an error excerpt starts at the last one.
OOPS_MARKS = ("BUG:", "Oops:", "general protection fault", "------------[ cut here ]",
              "Unable to handle", "kernel BUG at", "invalid opcode:")
INIT_FAIL_MARK = "GPUHIL-INIT-FAIL:"


@dataclass(frozen=True)
class FatalLine:
    """A console line that means the guest is done for."""

    kind: str  # "panic" or "init-fail"
    line: str


def classify(line: str) -> FatalLine | None:
    """Whether ``line`` reports a kernel panic or an initramfs failure."""
    if PANIC_MARK in line:
        return FatalLine("panic", line[line.index(PANIC_MARK):].strip())
    if INIT_FAIL_MARK in line:
        return FatalLine("init-fail", line[line.index(INIT_FAIL_MARK):].strip())
    return None


class Console:
    """Drains a console socket until end-of-file; see :meth:`tail` and :attr:`fatal`."""

    def __init__(self, sock: socket.socket, log_path: Path, tail_lines: int = 200,
                 echo: Callable[[bytes], None] | None = None) -> None:
        self._sock = sock
        self._log: BinaryIO = open(log_path, "ab")
        self.log_path = log_path
        self._tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
        self._lock = threading.Lock()
        self._partial = b""
        self._echo = echo
        self._start = time.monotonic()
        self.fatal: FatalLine | None = None
        self.fatal_event = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"console:{log_path.parent.name}",
                                        daemon=True)
        self._thread.start()

    def _line(self, raw: bytes) -> None:
        text = raw.decode(errors="replace").rstrip("\r")
        stamp = time.monotonic() - self._start
        self._log.write(f"[{stamp:9.3f}] {text}\n".encode())
        with self._lock:
            self._tail.append(text)
        found = classify(text)
        if found is not None and self.fatal is None:
            self.fatal = found
            self.fatal_event.set()

    def _run(self) -> None:
        try:
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                if self._echo is not None:
                    self._echo(data)
                lines = (self._partial + data).split(b"\n")
                self._partial = lines.pop()
                for raw in lines:
                    self._line(raw)
                self._log.flush()
        finally:
            if self._partial:
                self._line(self._partial)
                self._partial = b""
            self._log.flush()

    def tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the console (without timestamps)."""
        with self._lock:
            return "\n".join(list(self._tail)[-lines:])

    def report(self, before: int = 10, limit: int = 150, default: int = 40) -> str:
        """The console excerpt for an error: from the oops that led to the fatal line (or a few
        lines before it) to the end, at most ``limit`` lines; else the last ``default`` lines."""
        with self._lock:
            lines = list(self._tail)
        fatal = self.fatal
        if fatal is not None:
            for index in range(len(lines) - 1, -1, -1):
                if fatal.line in lines[index]:
                    start = max(index - before, 0)
                    for earlier in range(index - 1, max(index - limit, -1), -1):
                        if any(mark in lines[earlier] for mark in OOPS_MARKS):
                            start = min(start, max(earlier - 2, 0))
                            break
                    return "\n".join(lines[start:][:limit])
        return "\n".join(lines[-default:])

    def send(self, data: bytes) -> None:
        """Type ``data`` on the guest's serial console."""
        self._sock.sendall(data)

    def drain(self, timeout: float = 2.0) -> None:
        """Wait until QEMU closed the console (it exited) and every line was processed."""
        self._thread.join(timeout)

    def close(self) -> None:
        """Stop reading and close the socket and the log; harmless twice."""
        if self._sock.fileno() >= 0:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self._sock.close()
        if not self._log.closed:
            self._log.close()
