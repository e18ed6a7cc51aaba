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

import itertools
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import gpuhil
from gpuhil import agent
from gpuhil.lab import accel as accel_mod
from gpuhil.lab.agent_client import AgentClient
from gpuhil.host.lease import pid_alive
from gpuhil.lab.errors import (
    AgentError, BootTimeout, GuestBootError, GuestDied, GuestError, GuestPanic, LabError,
    QemuLaunchError,
)
from gpuhil.lab.qemu import QemuProcess
from gpuhil.lab.spec import Accel, GuestSpec, Placement, qemu_argv, smoke_argv

if TYPE_CHECKING:
    from gpuhil.lab.assets import LabAssets

PROJECT_ROOT = Path(gpuhil.__file__).resolve().parent.parent
Progress = Callable[[str], None]

# Inside the chroot: where the project tree, the run directory and the boot files appear.
_IN_SRC, _IN_RUN = "/gpuhil/src", "/gpuhil/run"
_IN_KERNEL, _IN_INITRAMFS = "/run/gpuhil/vmlinux", "/run/gpuhil/initramfs.cpio"
_IN_GUESTROOT = "/srv/guestroot"


def _cache_dir() -> Path:
    from gpuhil.lab.cache import cache_dir

    return cache_dir()


@dataclass(frozen=True)
class LabSetup:
    """Where the lab's QEMU, kernel, initramfs and guest root are.

    ``chroot`` set: the QEMU stack runs inside that tree (the built sid tree, which is also the
    guest root).  ``chroot`` None: a lab machine's own QEMU, kernel and guest root on the host.
    """

    qemu: str
    kernel: Path
    initramfs: Path
    guest_root: Path
    chroot: Path | None
    project_root: Path = PROJECT_ROOT
    runs_dir: Path | None = None
    assets: "LabAssets | None" = None  # the built assets, when the lab uses them

    @classmethod
    def default(cls, progress: Progress | None = None) -> "LabSetup":
        """The lab from the environment: ``GPUHIL_QEMU``/``GPUHIL_KERNEL``/``GPUHIL_INITRAMFS``/
        ``GPUHIL_GUEST_ROOT`` name a lab machine's own files; otherwise the built assets (built
        first if missing, with the guest's extensions)."""
        env = os.environ
        if env.get("GPUHIL_QEMU"):
            missing = [v for v in ("GPUHIL_KERNEL", "GPUHIL_INITRAMFS", "GPUHIL_GUEST_ROOT")
                       if not env.get(v)]
            if missing:
                raise LabError(f"GPUHIL_QEMU is set, so {', '.join(missing)} must be set too")
            return cls(qemu=env["GPUHIL_QEMU"], kernel=Path(env["GPUHIL_KERNEL"]),
                       initramfs=Path(env["GPUHIL_INITRAMFS"]),
                       guest_root=Path(env["GPUHIL_GUEST_ROOT"]), chroot=None)
        from gpuhil.lab.assets import ensure_assets

        from gpuhil.lab.guest_build import ensure_guest_extensions

        assets = ensure_assets(progress=progress)
        ensure_guest_extensions(assets, PROJECT_ROOT, progress)
        return cls(qemu="/usr/bin/qemu-system-x86_64", kernel=assets.kernel,
                   initramfs=assets.initramfs, guest_root=assets.root, chroot=assets.root,
                   assets=assets)

    def placement(self, run_dir: Path) -> Placement:
        """Paths as QEMU sees them for a guest whose host run directory is ``run_dir``."""
        if self.chroot is None:
            return Placement(self.qemu, str(self.kernel), str(self.initramfs),
                             str(self.guest_root), str(self.project_root), str(run_dir))
        return Placement(self.qemu, _IN_KERNEL, _IN_INITRAMFS, _IN_GUESTROOT, _IN_SRC, _IN_RUN)

    def wrapper(self, run_dir: Path) -> Callable[[list[str]], list[str]]:
        """Turns QEMU's argv into the command that runs it (the chroot helper, or nothing)."""
        if self.chroot is None:
            return lambda argv: argv
        from gpuhil.lab.chroot import chroot_argv

        root = self.chroot
        binds = {_IN_SRC: self.project_root, _IN_RUN: run_dir}
        readonly = {_IN_KERNEL: self.kernel, _IN_INITRAMFS: self.initramfs}
        return lambda argv: chroot_argv(root, argv, binds, readonly_binds=readonly,
                                        export_root_at=_IN_GUESTROOT)

    def runs(self) -> Path:
        """The directory holding the guests' run directories."""
        return self.runs_dir or _cache_dir() / "run"


_counter = itertools.count()


def kvm_smoke_test(setup: LabSetup, timeout: float = 15.0) -> str | None:
    """Boot the kernel alone under KVM: None if it ran to its final "no root" panic, else why not.

    Used by the accelerator probe (LAB.md §9: a PVM or otherwise broken KVM fails here).
    """
    runs = setup.runs()
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{next(_counter)}-kvmsmoke-", dir=runs))
    try:
        where = setup.placement(run_dir)
        process = QemuProcess(lambda ch: smoke_argv(Accel.KVM, where, ch), run_dir, "kvm-smoke",
                              wrap=setup.wrapper(run_dir))
        try:
            process.launch(qmp_timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.console.fatal is None:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
            if process.console.fatal is not None and process.console.fatal.kind == "panic":
                return None
            if process.poll() is not None:
                return f"QEMU {process.status()}: {process.stderr_text().strip()[-300:]}"
            return f"no kernel panic line within {timeout:g} s (console: {process.console.tail(3)!r})"
        except QemuLaunchError as exc:
            return f"QEMU did not start: {exc.stderr.strip()[-300:]}"
        finally:
            process.stop(grace=0)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def sweep_stale_runs(runs: Path) -> None:
    """Remove run directories whose owning process is gone (it was killed outright)."""
    if not runs.is_dir():
        return
    for entry in runs.iterdir():
        owner = entry.name.split("-", 1)[0]
        if owner.isdigit() and not pid_alive(int(owner)):
            shutil.rmtree(entry, ignore_errors=True)


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
                prefix=f"{os.getpid()}-{next(_counter)}-{self.name}-", dir=runs))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.run_dir), True)
            cache_file = _cache_dir() / "accel.json"
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

    def qemu_stderr(self) -> str:
        """What QEMU printed on stdout/stderr so far ("" before launch or once the log is gone)."""
        return self._process.stderr_text() if self._process is not None else ""

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

    def kmsg_read(self, marker: str = "") -> list[str]:
        """Guest kernel log lines after ``marker``."""
        return self._do(self._agent().kmsg_read, marker)

    def qmp(self, command: str, **arguments: Any) -> Any:
        """A QMP command (e.g. ``query-status``) and its return value."""
        return self.process.qmp.execute(command, arguments or None)

    def status(self) -> str:
        """QEMU's run state ('running', 'paused', ...)."""
        return self.qmp("query-status")["status"]
