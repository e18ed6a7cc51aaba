"""A QEMU run by a lab guest itself, under ``-accel qtest``: the nested vantage point, where
QEMU is the user of the guest's VFIO devices and render node (a lab machine in miniature).

Runs where that QEMU runs (in the guest; standard library and gpuhil only).
:class:`InnerQemu` starts ``qemu-system-x86_64 -machine q35,accel=qtest`` with the given
``-device`` arguments and trace events in a fresh run directory under ``/tmp``, accepts its
qtest connection (a :class:`gpuhil.qtest.client.QtestClient`), keeps its stderr (QEMU's
warnings and the trace lines) in a file.  With ``ram_mib`` guest RAM is a shared
``memory-backend-memfd`` (what QEMU's udmabuf path needs for blob resources on the 2-D
device), mapped here through QEMU's own fd, so :meth:`InnerQemu.gpu` is a target for
``RawGpu.open`` as on the host's device tier (the payload runs next to the inner QEMU).
With ``monitor`` its human monitor is :attr:`InnerQemu.monitor` (device_del and the like).
With ``denied_ioctls`` (request -> errno) it runs under :mod:`gpuhil.nested.seccomp`: a kernel
feature withheld from it, as an older kernel would answer.
:meth:`InnerQemu.close` kills it, waits for it and removes the run directory, so nothing is
left in the guest.  A QEMU without the qtest
accelerator (Debian 13's 10.0) is :class:`InnerQemuUnavailable`, with nothing started.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Sequence

from gpuhil._mapping import Mapping
from gpuhil.devices.dmabuf import parse_fdinfo
from gpuhil.devices.pci_ids import VIRTIO_GPU
from gpuhil.errors import GpuhilError
from gpuhil.nested.hmp import Hmp
from gpuhil.nested.seccomp import deny_ioctls
from gpuhil.qtest import pci
from gpuhil.qtest.client import QtestClient
from gpuhil.qtest.ram import GuestRam
from gpuhil.qtest.transport import QtestGpu

__all__ = ["InnerQemu", "InnerQemuError", "InnerQemuUnavailable", "dma_bufs", "trace_events"]

QEMU = "qemu-system-x86_64"
_NO_QTEST = "invalid accelerator qtest"


class InnerQemuError(GpuhilError):
    """The inner QEMU did not come up: why, with its stderr tail."""


class InnerQemuUnavailable(InnerQemuError):
    """The QEMU in the guest cannot run under qtest (a capability, not a failure)."""


def trace_events(qemu: str = QEMU) -> frozenset[str]:
    """The trace event names ``qemu`` knows (``-trace help``): probe before asking for one."""
    out = subprocess.run([qemu, "-trace", "help"], capture_output=True, text=True, timeout=120)
    return frozenset(line.strip() for line in out.stdout.splitlines()
                     if line.strip() and " " not in line.strip())


def dma_bufs(pid: int) -> list[dict]:
    """Every dma-buf process ``pid`` holds: fd, ``size`` and ``exp_name`` from its fdinfo."""
    found = []
    fd_dir = f"/proc/{pid}/fdinfo"
    for name in sorted(os.listdir(fd_dir), key=int):
        try:
            with open(os.path.join(fd_dir, name)) as f:
                info = parse_fdinfo(f.read())
        except OSError:
            continue  # closed meanwhile
        except ValueError:
            continue  # not a dma-buf
        found.append({"fd": int(name), "size": info.size, "exp_name": info.exp_name})
    return found


class InnerQemu:
    """QEMU under qtest in this machine with ``devices`` (``-device`` values), ``traces``
    (``-trace`` event names) and ``display`` (``egl-headless,rendernode=...`` renders on this
    machine's GPU); a context manager.  ``qtest`` is the connection, ``pid`` the
    process, :meth:`stderr` what it printed so far."""

    def __init__(self, devices: Sequence[str], *, traces: Sequence[str] = (),
                 memory_mib: int = 64, ram_mib: int | None = None, display: str = "none",
                 options: Sequence[str] = (), monitor: bool = False, qemu: str = QEMU,
                 start_timeout: float = 300.0,
                 denied_ioctls: dict[int, int] | None = None) -> None:
        machine = "q35,accel=qtest" + (",memory-backend=mem" if ram_mib else "")
        self.ram_mib = ram_mib
        self.argv = [qemu, "-machine", machine, "-display", display, "-nodefaults",
                     "-m", f"{ram_mib or memory_mib}M", "-d", "guest_errors"]
        if ram_mib:
            self.argv += ["-object", f"memory-backend-memfd,id=mem,size={ram_mib}M,share=on"]
        for event in traces:
            self.argv += ["-trace", event]
        for device in devices:
            self.argv += ["-device", device]
        self.argv += list(options)
        self.start_timeout = start_timeout
        #: ioctl request -> errno the inner QEMU gets instead of the kernel's answer
        self.denied_ioctls = dict(denied_ioctls or {})
        self.run_dir = tempfile.mkdtemp(prefix="gpuhil-inner-")
        self.monitor: Hmp | None = None
        self._monitor_path = os.path.join(self.run_dir, "hmp.sock") if monitor else None
        if self._monitor_path:
            self.argv += ["-monitor", f"unix:{self._monitor_path},server=on,wait=off"]
        self._stderr_path = os.path.join(self.run_dir, "stderr")
        self.process: subprocess.Popen | None = None
        self.qtest: QtestClient | None = None
        self.ram: GuestRam | None = None
        self.start_seconds: float | None = None
        self._functions: list[pci.PciFunction] | None = None
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        path = os.path.join(self.run_dir, "qtest.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(0.1)
            started = time.monotonic()
            with open(self._stderr_path, "wb") as err:
                self.process = subprocess.Popen(
                    [*self.argv, "-qtest", f"unix:{path}", "-qtest-log", "/dev/null"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                    start_new_session=True,
                    preexec_fn=deny_ioctls(self.denied_ioctls) if self.denied_ioctls else None)
            while True:
                try:
                    conn, _ = listener.accept()
                    break
                except socket.timeout:
                    pass
                if self.process.poll() is not None:
                    tail = self.stderr()[-2000:]
                    kind = InnerQemuUnavailable if _NO_QTEST in tail else InnerQemuError
                    raise kind(f"inner QEMU exited ({self.process.returncode}) before connecting "
                               f"its qtest socket: {tail.strip() or 'no stderr'}")
                if time.monotonic() - started > self.start_timeout:
                    raise InnerQemuError(f"inner QEMU did not connect its qtest socket within "
                                         f"{self.start_timeout:g} s: {self.stderr()[-2000:]}")
        finally:
            listener.close()
        self.qtest = QtestClient(conn, name="inner-qtest", on_death=self._death)
        self.qtest.endianness()  # answers: the machine is up
        if self.ram_mib:
            self.ram = self._map_ram(self.ram_mib << 20)
        if self._monitor_path:
            self.monitor = Hmp(self._monitor_path)
        self.start_seconds = time.monotonic() - started

    def _map_ram(self, size: int) -> GuestRam:
        """QEMU's RAM memfd, opened again through /proc and mapped here."""
        fd_dir = f"/proc/{self.pid}/fd"
        for name in os.listdir(fd_dir):
            path = os.path.join(fd_dir, name)
            try:
                if not os.readlink(path).startswith("/memfd:mem"):
                    continue
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                continue
            if os.fstat(fd).st_size >= size:
                try:
                    return GuestRam(Mapping.map(fd, size, op="mmap inner guest RAM",
                                                label="inner QEMU RAM"), fd)
                except BaseException:
                    os.close(fd)
                    raise
            os.close(fd)
        raise InnerQemuError(f"inner QEMU (pid {self.pid}) holds no RAM memfd of {size:#x} bytes")

    def functions(self) -> list[pci.PciFunction]:
        """The PCI functions on the inner machine's bus, BARs assigned by gpuhil (once)."""
        assert self.qtest is not None
        if self._functions is None:
            self._functions = pci.bring_up(self.qtest)
        return self._functions

    def gpu(self) -> QtestGpu:
        """The virtio-gpu function, for ``RawGpu.open`` (needs ``ram_mib``)."""
        found = [f for f in self.functions() if (f.vendor, f.device) == VIRTIO_GPU]
        if not found or self.ram is None:
            raise InnerQemuError(f"inner QEMU: no virtio-gpu with mapped RAM (functions: "
                                 f"{[f.name for f in self.functions()]}, ram_mib={self.ram_mib})")
        return QtestGpu(found[0], self.ram)

    def _death(self) -> tuple[str, str]:
        status = "" if self.process is None else str(self.process.poll())
        return status, self.stderr()[-2000:]

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stderr(self) -> str:
        """QEMU's stderr so far (warnings, trace lines)."""
        try:
            with open(self._stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def close(self) -> str:
        """Kill QEMU (its session), wait for it, remove the run directory; its stderr."""
        text = self.stderr()
        if self.ram is not None:
            self.ram.close()
            self.ram = None
        if self.qtest is not None:
            self.qtest.close()
        if self.monitor is not None:
            self.monitor.close()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait(timeout=60)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return text

    def __enter__(self) -> InnerQemu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
