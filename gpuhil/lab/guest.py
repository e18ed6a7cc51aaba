"""A booted lab guest: QEMU (see :mod:`gpuhil.lab.qemu`) plus the gpuhil agent inside it.

::

    with Guest(GuestSpec(gpu=VENUS_GPU)) as guest:      # boots; ready when the agent answers
        guest.run(["modprobe", "virtio_gpu"], check=True)
        value = guest.call(payloads.getparam, "/dev/dri/renderD128", 3)

Every guest gets its own run directory (shared into the guest as ``/gpuhil/run``) and its own
socketpairs, so several run at once.  Whatever happens (boot failure, panic, timeout, Ctrl-C,
QEMU killed) QEMU is reaped and the run directory removed.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable

from gpuhil import agent
from gpuhil.lab import accel as accel_mod
from gpuhil.lab.agent_client import AgentClient
from gpuhil.lab.errors import (
    AgentError, BootTimeout, GuestBootError, GuestDied, GuestError, GuestPanic, QemuLaunchError,
)
from gpuhil.lab.qemu import QemuProcess
from gpuhil.lab.setup import LabSetup, cache_dir_of, kvm_smoke_test, next_run_id, sweep_stale_runs
from gpuhil.lab.spec import GuestSpec, qemu_argv

class Guest:
    """A lab guest booted from ``spec``; :meth:`start` (or ``with``) boots it until the agent answers.

    ``log_dir`` keeps ``console.log`` and ``qemu.log`` after the guest is gone (by default they
    live in the run directory, which is removed).  ``console_echo`` receives the raw console bytes
    as they arrive (the CLI prints them).
    """

    def __init__(self, spec: GuestSpec | None = None, *, setup: LabSetup | None = None,
                 boot_timeout: float = 120.0, log_dir: Path | None = None, name: str = "guest",
                 console_echo: Callable[[bytes], None] | None = None,
                 kill_grace: float = 3.0) -> None:
        self.spec = spec or GuestSpec()
        self.setup = setup
        self.boot_timeout = boot_timeout
        self.kill_grace = kill_grace
        self.name = name
        self._log_dir = log_dir
        self._echo = console_echo
        self.run_dir: Path | None = None
        self.accel: accel_mod.AccelChoice | None = None
        self.info: agent.AgentInfo | None = None
        self.boot_seconds: float | None = None
        self._process: QemuProcess | None = None
        self._client: AgentClient | None = None
        self._ready = False
        self._finalizer: weakref.finalize | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "Guest":
        """Launch QEMU and wait until the agent answers its handshake."""
        self.launch()
        self.wait_ready()
        return self

    def launch(self) -> None:
        """Start QEMU (returns at once; :meth:`wait_ready` waits for the agent)."""
        if self._process is not None:
            raise RuntimeError("this guest was already launched")
        try:
            setup = self.setup = self.setup or LabSetup.default()
            runs = setup.runs()
            runs.mkdir(parents=True, exist_ok=True)
            sweep_stale_runs(runs)
            self.run_dir = Path(tempfile.mkdtemp(
                prefix=f"{os.getpid()}-{next_run_id()}-{self.name}-", dir=runs))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
            cache_file = cache_dir_of() / "accel.json"
            self.accel = accel_mod.resolve(self.spec.accel, cache_file,
                                           smoke=lambda: kvm_smoke_test(setup))
            spec = self.spec.with_accel(self.accel.accel)
            where = setup.placement(self.run_dir)
            self._process = QemuProcess(lambda ch: qemu_argv(spec, where, ch),
                                        self._log_dir or self.run_dir, self.name,
                                        wrap=setup.wrapper(self.run_dir), echo_console=self._echo)
            self._started_at = time.monotonic()
            # A slow QMP greeting is a slow boot: wait_ready then reports the boot timeout.
            self._process.launch(qmp_timeout=max(self.boot_timeout, 60.0))
            assert self._process.agent is not None
            self._client = AgentClient(self._process.agent, self._check_alive)
        except BaseException:
            self.close()
            raise

    def wait_ready(self) -> agent.AgentInfo:
        """Wait for the agent's handshake; raises BootTimeout, GuestPanic or GuestBootError."""
        if self._client is None:
            raise RuntimeError("launch() the guest first")
        remaining = self.boot_timeout - (time.monotonic() - self._started_at)
        try:
            try:
                self.info = self._client.hello(timeout=max(remaining, 0.01))
            except TimeoutError as exc:
                raise self._failure(BootTimeout, f"the agent did not answer within "
                                    f"{self.boot_timeout:g} s of boot") from exc
            except AgentError as exc:
                raise self._dead_error(during="boot") from exc
        except BaseException:
            self.close()
            raise
        self.boot_seconds = time.monotonic() - self._started_at
        self._ready = True
        return self.info

    def close(self) -> None:
        """Stop QEMU (quit, then SIGKILL after the grace) and remove the run directory; idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        process = self._process
        if process is not None:
            process.stop(grace=self.kill_grace if process.poll() is None else 0)
        if self._finalizer is not None:
            self._finalizer()
        self._ready = False

    def __enter__(self) -> "Guest":
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- state --------------------------------------------------------------------------------

    @property
    def process(self) -> QemuProcess:
        if self._process is None:
            raise RuntimeError("the guest was not launched")
        return self._process

    @property
    def pid(self) -> int | None:
        """QEMU's PID once launched (kept after it exited)."""
        return self._process.pid if self._process is not None else None

    @property
    def console_log(self) -> Path:
        return self.process.log_dir / "console.log"

    @property
    def alive(self) -> bool:
        """Whether QEMU runs and the agent channel is open (False before launch and after close)."""
        return (self._client is not None and self._process is not None
                and self._process.poll() is None)

    @property
    def qemu_argv(self) -> list[str]:
        """QEMU's command line (before the chroot wrapper); empty before launch."""
        return list(self._process.argv) if self._process is not None else []

    def qemu_stderr(self, since: int = 0) -> str:
        """What QEMU printed on stdout/stderr from character offset ``since`` on ("" before
        launch or once the log is gone)."""
        return self._process.stderr_text()[since:] if self._process is not None else ""

    @property
    def fatal(self) -> str | None:
        """The fatal console line seen (kernel panic, initramfs failure), if any."""
        if self._process is None or self._process.console.fatal is None:
            return None
        return self._process.console.fatal.line

    def last_output(self) -> float | None:
        """When the console or QEMU last wrote something (``time.time()``); None before launch."""
        if self._process is None:
            return None
        try:
            return max(path.stat().st_mtime for path in (self.console_log, self._process.qemu_log))
        except OSError:  # the run directory is gone
            return None

    @property
    def returncode(self) -> int | None:
        """QEMU's exit status; None while it runs (and before launch)."""
        return self._process.poll() if self._process is not None else None

    def qemu_status(self) -> str:
        """How QEMU stands: 'exit code N', 'killed by SIGKILL' or 'still running'."""
        return self.process.status()

    def send_console(self, data: bytes) -> None:
        """Type ``data`` on the guest's serial console."""
        self.process.console.send(data)

    def kill(self) -> None:
        """SIGKILL QEMU now (whatever waits on the guest ends); :meth:`close` still cleans up."""
        if self._process is not None:
            self._process.kill()

    def console_slice(self, offset: int = 0) -> str:
        """The console log from byte ``offset`` on (the in-memory tail once the log is gone)."""
        try:
            with open(self.console_log, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except (OSError, RuntimeError):
            return self.console_tail(200)

    def console_size(self) -> int:
        """The console log's size in bytes so far (an offset for :meth:`console_slice`)."""
        try:
            return self.console_log.stat().st_size
        except (OSError, RuntimeError):
            return 0

    def qmp_events(self) -> list[dict[str, Any]]:
        """The QMP events received since the previous call, including those that arrived before
        QEMU died or was stopped ([] when it was never launched)."""
        if self._process is None:
            return []
        try:
            return self._process.qmp_events()
        except Exception:  # QEMU exiting under us while the events are read
            return []

    def console_tail(self, lines: int = 40) -> str:
        """The last lines of the serial console (also after the guest is gone)."""
        if self._process is None:
            return ""
        return self._process.console.tail(lines)

    def _report_tail(self) -> str:
        return self._process.console.report() if self._process is not None else ""

    def _failure(self, cls: type[GuestError], message: str) -> GuestError:
        process = self.process
        process.kill()
        process.wait(5)
        process.console.drain(2)
        fatal = process.console.fatal
        if fatal is not None and fatal.kind == "panic":
            return GuestPanic(fatal.line, self._report_tail(), process.stderr_text())
        return cls(message, self._report_tail(), process.stderr_text())

    def _dead_error(self, during: str) -> GuestError:
        """The error describing a QEMU that exited (or is exiting) while we talked to it."""
        process = self.process
        status = process.wait(2)
        console = process.console
        console.drain(2)
        tail, stderr = self._report_tail(), process.stderr_text()
        fatal = console.fatal
        if fatal is not None and fatal.kind == "panic":
            return GuestPanic(fatal.line, tail, stderr)
        if process.qmp_shutdown():
            what = f"the guest shut down (QEMU pid {process.pid} then {process.status()})"
        elif status is not None:
            what = f"QEMU (pid {process.pid}) {process.status()}"
        else:
            what = f"the agent channel of QEMU (pid {process.pid}) closed"
        if during == "boot":
            if fatal is not None:
                return GuestBootError(f"guest init failed: {fatal.line}", tail, stderr)
            if not tail.strip() and status is not None and status > 0:
                return QemuLaunchError("QEMU exited before the guest started", status,
                                       process.argv, stderr)
            return GuestBootError(f"{what} before the agent answered", tail, stderr)
        return GuestDied(f"{what} during {during}", tail, stderr)

    def _check_alive(self) -> None:
        """Raise if QEMU exited or the console showed a fatal line (called while waiting)."""
        process = self._process
        if process is None:
            return
        fatal = process.console.fatal
        powered_off = process.qmp_shutdown()
        if process.poll() is not None or fatal is not None or powered_off:
            if process.poll() is None:
                # panic=-1 and poweroff end QEMU by themselves, except after virgl use (LAB.md §8)
                process.wait(self.kill_grace)
                process.kill()
            raise self._dead_error("boot" if not self._ready else "an agent request")

    # --- the agent ----------------------------------------------------------------------------

    def _agent(self) -> AgentClient:
        if self._client is None:
            raise GuestDied("the guest is not running (closed, or it died earlier)")
        return self._client

    def _do(self, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except AgentError as exc:
            error = self._dead_error("an agent request")
            self.close()
            raise error from exc
        except GuestError:
            self.close()
            raise

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run a module-level function (or ``"module:qualname"``) in the guest; return its result."""
        return self._do(self._agent().call, func, *args, **kwargs)

    def run(self, argv: list[str] | tuple[str, ...], *, check: bool = False,
            timeout: float | None = None, input: bytes | None = None) -> agent.RunResult:
        """Run a setup command in the guest (modprobe, a sysfs write through sh -c, ...)."""
        return self._do(self._agent().run, argv, timeout=timeout, check=check, input=input)

    def kmsg_mark(self, label: str = "") -> str:
        """Write a marker line into the guest's kernel log and return it."""
        return self._do(self._agent().kmsg_mark, label)

    def kernel_log(self, since: str = "") -> list[str]:
        """Guest kernel log lines after the marker ``since`` (all of them without one)."""
        return self._do(self._agent().kmsg_read, since)

    def qmp(self, command: str, **arguments: Any) -> Any:
        """A QMP command (e.g. ``query-status``) and its return value."""
        return self.process.qmp.execute(command, arguments or None)

    def status(self) -> str:
        """QEMU's run state ('running', 'paused', ...)."""
        return self.qmp("query-status")["status"]
