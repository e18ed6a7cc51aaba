"""A QEMU with devices and no guest: ``accel=qtest``, driven by gpuhil over the qtest protocol.

::

    with QtestMachine(VENUS_GPU, setup=LabSetup.default()) as machine:
        machine.qtest.config_read(0, 1, 0, 0, 4)       # vendor/device of 00:01.0
        machine.ram.write(gpa, descriptors)              # guest RAM, mapped here too

QEMU runs where guests run (:meth:`LabSetup.placement` / :meth:`LabSetup.wrapper`: the lab
tree's chroot, or a lab machine's own QEMU) through :class:`QemuProcess`, so QMP, the stderr
log and the kill-by-own-pid teardown are those of guests.  The run directory holds the qtest
socket gpuhil listens on (QEMU connects to it at start-up) and the RAM file
(``memory-backend-file,share=on``); both are unlinked as soon as the connection is accepted
and the file mapped, and the run directory is removed by :meth:`close`, also when start-up
fails.  QEMU runs with ``-d guest_errors``: its complaints about what the driver did land in
:meth:`qemu_stderr`.

It is a :class:`gpuhil.machine.Machine`: ``call`` runs the function in this process (the device
is reached from here), there is no kernel (``kernel_log`` is ``[]``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Sequence

from gpuhil._mapping import Mapping
from gpuhil.lab.errors import QemuLaunchError, describe_status
from gpuhil.lab.qemu import QemuProcess
from gpuhil.lab.setup import LabSetup, next_run_id, sweep_stale_runs
from gpuhil.lab.qtest_spec import QTEST_RAM as _RAM, QTEST_SOCKET as _SOCKET, QtestSpec, qtest_argv
from gpuhil.lab.spec import VENUS_GPU, Display, GpuSpec
from gpuhil.machine import LocalMachine
from gpuhil.devices.pci_ids import VIRTIO_GPU
from gpuhil.lab.errors import LabError
from gpuhil.qtest import pci
from gpuhil.qtest.client import QtestClient
from gpuhil.qtest.ram import GuestRam
from gpuhil.qtest.transport import QtestGpu

__all__ = ["QtestMachine"]


class QtestMachine:
    """QEMU under qtest with ``gpu`` (and ``extra_args``); :meth:`start` or ``with`` starts it."""

    def __init__(self, gpu: GpuSpec | None = VENUS_GPU, *, setup: LabSetup | None = None,
                 name: str = "qtest", ram_mib: int = 256, display: Display = Display(),
                 extra_args: Sequence[str] = (), log_dir: Path | None = None,
                 start_timeout: float = 60.0, command_timeout: float = 30.0,
                 kill_grace: float = 3.0) -> None:
        self.name = name
        self.gpu = gpu
        self.setup = setup
        self.ram_mib = ram_mib
        self.display = display
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.command_timeout = command_timeout
        self.kill_grace = kill_grace
        self._log_dir = log_dir
        self.run_dir: Path | None = None
        self.start_seconds: float | None = None
        self._process: QemuProcess | None = None
        self._client: QtestClient | None = None
        self._ram: GuestRam | None = None
        self._gpu: QtestGpu | None = None
        self._finalizer: weakref.finalize | None = None

    @classmethod
    def from_spec(cls, spec: QtestSpec, **kwargs: Any) -> "QtestMachine":
        """The machine ``spec`` describes (``kwargs``: setup, name, log_dir, timeouts)."""
        return cls(spec.gpu, ram_mib=spec.ram_mib, display=spec.display,
                   extra_args=spec.extra_args, **kwargs)

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> "QtestMachine":
        """Start QEMU, accept its qtest connection, map guest RAM; QemuLaunchError if not,
        MissingQemuFeature (nothing started) when the QEMU has no qtest accelerator."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} was already started")
        started = time.monotonic()
        listener: socket.socket | None = None
        try:
            setup = self.setup = self.setup or LabSetup.default()
            setup.check_qtest()
            runs = setup.runs()
            runs.mkdir(parents=True, exist_ok=True)
            sweep_stale_runs(runs)
            run_dir = self.run_dir = Path(tempfile.mkdtemp(
                prefix=f"{os.getpid()}-{next_run_id()}-{self.name}-", dir=runs))
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(run_dir), True)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(run_dir / _SOCKET))
            listener.listen(1)
            where = setup.placement(run_dir)
            process = self._process = QemuProcess(
                lambda ch: qtest_argv(where, ch, gpu=self.gpu, ram_mib=self.ram_mib,
                                      display=self.display, extra_args=self.extra_args),
                self._log_dir or run_dir, self.name, wrap=setup.wrapper(run_dir))
            process.launch(qmp_timeout=self.start_timeout)
            conn = self._accept(listener, process, started + self.start_timeout)
            self._client = QtestClient(conn, timeout=self.command_timeout,
                                       on_death=self._death_info, name=self.name)
            self._ram = self._map_ram(run_dir / _RAM)
        except BaseException:
            self.close()
            raise
        finally:
            if listener is not None:
                listener.close()
            if self.run_dir is not None:
                for leftover in (_SOCKET, _RAM):
                    (self.run_dir / leftover).unlink(missing_ok=True)
        self.start_seconds = time.monotonic() - started
        return self

    def _accept(self, listener: socket.socket, process: QemuProcess,
                deadline: float) -> socket.socket:
        listener.settimeout(0.05)
        while True:
            try:
                conn, _ = listener.accept()
                return conn
            except socket.timeout:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                reason = ("QEMU exited before connecting to the qtest socket"
                          if process.poll() is not None else "QEMU did not connect to the "
                          f"qtest socket within {self.start_timeout:g} s")
                raise QemuLaunchError(reason, process.poll(), process.argv,
                                      process.stderr_text())

    def _map_ram(self, path: Path) -> GuestRam:
        """The RAM file mapped, its fd kept (for DMA mappings) and closed with the RAM."""
        size = self.ram_mib << 20
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < size:
                raise QemuLaunchError(f"the RAM file {path} is smaller than {self.ram_mib} MiB",
                                      self._process.poll() if self._process else None,
                                      self.qemu_argv, self.qemu_stderr())
            return GuestRam(Mapping.map(fd, size, op="mmap guest RAM",
                                        label=f"{self.name} RAM"), fd)
        except BaseException:
            os.close(fd)
            raise

    def _death_info(self) -> tuple[str, str]:
        """QEMU's exit status and stderr once the qtest connection broke (waits up to 2 s)."""
        process = self._process
        if process is None:
            return "", ""
        status = process.wait(2.0)
        return describe_status(status), process.stderr_text()

    def close(self) -> None:
        """Stop QEMU (quit, then SIGKILL), unmap RAM, remove the run directory; idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        ram, self._ram = self._ram, None
        if ram is not None:
            ram.close()
        process = self._process
        if process is not None:
            process.stop(grace=self.kill_grace if process.poll() is None else 0)
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "QtestMachine":
        if self._process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the device side ---------------------------------------------------------------------

    @property
    def qtest(self) -> QtestClient:
        """The qtest connection (config space, MMIO, bulk memory, IRQ lines)."""
        if self._client is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._client

    @property
    def ram(self) -> GuestRam:
        """Guest RAM, mapped here: guest-physical address = offset."""
        if self._ram is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._ram

    def raw_target(self) -> QtestGpu:
        """The virtio-gpu for ``RawGpu.open``: the bus enumerated and every BAR assigned and
        enabled by gpuhil once (no firmware runs); LabError when the machine has none."""
        if self._gpu is None:
            functions = pci.bring_up(self.qtest)
            found = [f for f in functions if (f.vendor, f.device) == VIRTIO_GPU]
            if not found:
                seen = ", ".join(f"{f.name} {f.vendor:04x}:{f.device:04x}" for f in functions)
                raise LabError(f"{self.name}: no virtio-gpu ({VIRTIO_GPU[0]:04x}:"
                               f"{VIRTIO_GPU[1]:04x}) on the qtest machine's bus (found: "
                               f"{seen or 'nothing'})")
            self._gpu = QtestGpu(found[0], self.ram)
        return self._gpu

    # --- Machine ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return (self._process is not None and self._process.poll() is None
                and self._client is not None and self._client.usable)

    fatal = None
    has_kernel = False  # no SysRq, no task stacks: there is no guest

    @property
    def qemu_argv(self) -> list[str]:
        """QEMU's command line (before the chroot wrapper); empty before start."""
        return list(self._process.argv) if self._process is not None else []

    def status(self) -> str:
        """'still running', 'exit code N' or 'killed by SIGKILL'."""
        return self._process.status() if self._process is not None else "not started"

    qemu_status = status  # the name a Guest has it under

    @property
    def returncode(self) -> int | None:
        """QEMU's exit status once it ended (None while it runs)."""
        return self._process.poll() if self._process is not None else None

    def kill(self) -> None:
        """SIGKILL QEMU now (the qtest client then raises QtestDied)."""
        if self._process is not None:
            self._process.kill()

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func`` in this process (the device is driven from here)."""
        return LocalMachine().call(func, *args, **kwargs)

    def run(self, argv: list[str] | tuple[str, ...], *, check: bool = False,
            timeout: float | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
        """Run a command on this host (there is no guest)."""
        return LocalMachine().run(argv, check=check, timeout=timeout, input=input)

    def kmsg_mark(self, label: str = "") -> str:
        return ""  # no kernel

    def kernel_log(self, since: str = "") -> list[str]:
        return []

    def qemu_stderr(self, since: int = 0) -> str:
        return self._process.stderr_text()[since:] if self._process is not None else ""

    def qmp(self, command: str, **arguments: Any) -> Any:
        if self._process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._process.qmp.execute(command, arguments or None)

    def qmp_events(self) -> list[dict[str, Any]]:
        return self._process.qmp_events() if self._process is not None else []
