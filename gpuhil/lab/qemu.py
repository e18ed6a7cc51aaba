"""One QEMU process: launched with its QMP, console and agent channels as inherited socketpair
ends (no socket files), stopped by QMP ``quit`` and, when it will not exit (it does not after
virgl use, LAB.md §8), SIGKILLed by its own PID.

The child gets ``PR_SET_PDEATHSIG(SIGKILL)``, so QEMU dies with the thread that launched it even
if the host process is killed outright; a weakref finalizer (also run at exit) reaps it when the
object is dropped without :meth:`QemuProcess.stop`.
"""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from gpuhil.errors import ClosedError
from gpuhil.lab.console import Console
from gpuhil.lab.errors import QemuLaunchError, describe_status
from gpuhil.lab.spec import Channels

if TYPE_CHECKING:  # qemu.qmp is a host-only dependency; test modules that import the lab
    from gpuhil.lab.qmp import Qmp  # must stay importable in the guest, which lacks it

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class _Resources:
    """What must be released whatever happens; shared with the finalizer (no ref to the owner)."""

    popen: subprocess.Popen | None = None
    sockets: list[socket.socket] = field(default_factory=list)
    qmp: Qmp | None = None
    #: The QMP connection after release, for the events it had not handed out yet.
    closed_qmp: Qmp | None = None
    console: Console | None = None
    log_file: object | None = None

    def release(self, grace: float = 0.0) -> None:
        popen, self.popen = self.popen, None
        if popen is not None:
            if popen.poll() is None and grace > 0:
                try:
                    popen.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
            if popen.poll() is None:
                popen.kill()  # SIGKILL by QEMU's own pid (the chroot helper execs it)
            popen.wait()
        qmp, self.qmp = self.qmp, None
        if qmp is not None:
            qmp.close()
            self.closed_qmp = qmp
        console, self.console = self.console, None
        if console is not None:
            console.close()
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()
        log, self.log_file = self.log_file, None
        if log is not None:
            log.close()  # type: ignore[attr-defined]


ArgvBuilder = Callable[[Channels], Sequence[str]]


class QemuProcess:
    """A QEMU launched from ``build_argv(channels)`` (wrapped by ``wrap``, e.g. the chroot helper).

    ``log_dir`` receives ``console.log`` (timestamped serial console) and ``qemu.log`` (QEMU's
    stdout and stderr).  Use as a context manager or call :meth:`stop`.
    """

    def __init__(self, build_argv: ArgvBuilder, log_dir: Path, name: str = "qemu",
                 wrap: Callable[[list[str]], list[str]] | None = None,
                 echo_console: Callable[[bytes], None] | None = None) -> None:
        self.name = name
        self.log_dir = Path(log_dir)
        self._build_argv = build_argv
        self._wrap = wrap or (lambda argv: argv)
        self._echo = echo_console
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, _Resources.release, self._res)
        self.argv: list[str] = []
        self.agent: Connection | None = None
        self.returncode: int | None = None
        self._console: Console | None = None
        self._pid: int | None = None
        self.killed = False  # whether stop() had to SIGKILL it
        self.stop_seconds = 0.0

    @property
    def qemu_log(self) -> Path:
        return self.log_dir / "qemu.log"

    @property
    def console(self) -> Console:
        """The serial console (still readable, via its tail, after QEMU is gone)."""
        if self._console is None:
            raise ClosedError(f"{self.name} was not launched")
        return self._console

    @property
    def qmp(self) -> Qmp:
        if self._res.qmp is None:
            raise ClosedError(f"{self.name} is not running")
        return self._res.qmp

    def qmp_events(self) -> list[dict[str, Any]]:
        """QMP events not yet handed out, also those that arrived before QEMU went away."""
        qmp = self._res.qmp or self._res.closed_qmp
        return [] if qmp is None else qmp.events()

    @property
    def pid(self) -> int | None:
        """QEMU's PID once launched (kept after it exited, like Popen.pid)."""
        return self._pid

    def launch(self, qmp_timeout: float = 60.0) -> None:
        """Start QEMU and connect QMP; raises :class:`QemuLaunchError` if QEMU does not come up."""
        if self._res.popen is not None or self.argv:
            raise RuntimeError(f"{self.name} was already launched")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            pairs = {what: socket.socketpair() for what in ("qmp", "console", "agent")}
            for ours, theirs in pairs.values():
                self._res.sockets += [ours, theirs]
            channels = Channels(qmp_fd=pairs["qmp"][1].fileno(),
                                console_fd=pairs["console"][1].fileno(),
                                agent_fd=pairs["agent"][1].fileno())
            self.argv = list(self._build_argv(channels))
            full = self._wrap(self.argv)
            self._res.log_file = open(self.qemu_log, "wb")
            try:
                self._res.popen = subprocess.Popen(
                    full, stdin=subprocess.DEVNULL, stdout=self._res.log_file,
                    stderr=subprocess.STDOUT, pass_fds=[pairs[w][1].fileno() for w in pairs],
                    preexec_fn=_die_with_parent, start_new_session=True)
            except OSError as exc:
                raise QemuLaunchError(f"cannot execute {full[0]}: {exc.strerror}", None,
                                      self.argv, "") from exc
            self._pid = self._res.popen.pid
            for _ours, theirs in pairs.values():  # QEMU holds these now; EOF must reach us
                self._res.sockets.remove(theirs)
                theirs.close()
            self._res.console = self._console = Console(
                pairs["console"][0], self.log_dir / "console.log", echo=self._echo)
            self._res.sockets.remove(pairs["console"][0])
            agent_sock = pairs["agent"][0]
            self._res.sockets.remove(agent_sock)
            self.agent = Connection(agent_sock.detach())
            from gpuhil.lab.qmp import Qmp

            try:
                self._res.qmp = Qmp(pairs["qmp"][0], self.name, qmp_timeout)
            except Exception as exc:
                status = self.wait(5)
                reason = ("QEMU exited during startup" if status is not None else
                          f"no QMP greeting ({type(exc).__name__}: {exc})")
                raise QemuLaunchError(reason, status, self.argv, self.stderr_text()) from exc
        except BaseException:
            self.stop(grace=0)
            raise

    def qmp_shutdown(self) -> bool:
        """Whether QEMU reported SHUTDOWN (the guest powered off; QEMU may still hang)."""
        qmp = self._res.qmp
        return qmp is not None and qmp.shutdown.is_set()

    def stderr_text(self) -> str:
        """What QEMU printed on stdout/stderr so far."""
        try:
            return self.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def poll(self) -> int | None:
        """QEMU's exit status, or None while it runs."""
        popen = self._res.popen
        if popen is not None:
            self.returncode = popen.poll()
        return self.returncode

    def wait(self, timeout: float | None) -> int | None:
        """Wait up to ``timeout`` seconds for QEMU to exit; its status or None."""
        popen = self._res.popen
        if popen is None:
            return self.returncode
        try:
            self.returncode = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        return self.returncode

    def status(self) -> str:
        """'exit code N', 'killed by SIGKILL' or 'still running'."""
        return describe_status(self.poll())

    def stop(self, grace: float = 3.0) -> int | None:
        """Ask QEMU to quit, SIGKILL it after ``grace`` seconds, release everything; harmless twice."""
        popen = self._res.popen
        if popen is not None and popen.poll() is None and grace > 0 and self._res.qmp is not None:
            try:
                self._res.qmp.execute("quit", timeout=grace)
            except Exception:  # QEMU exiting under us closes QMP before answering
                pass
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        start = time.monotonic()
        self._res.release(grace)
        self.killed = popen is not None and popen.returncode == -signal.SIGKILL
        self.stop_seconds = time.monotonic() - start
        if popen is not None:
            self.returncode = popen.returncode
        self._finalizer.detach()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL QEMU now (keeps the channels, so the owner sees the death as it happens)."""
        popen = self._res.popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGKILL)

    def __enter__(self) -> "QemuProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
