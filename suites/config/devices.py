"""Host side of the config suite: hand QEMU a raw ``-device`` value and record how it ends.

:class:`DeviceOptions` stands in for :class:`~gpuhil.lab.spec.GpuSpec` in a
:class:`~gpuhil.lab.spec.GuestSpec`: GpuSpec refuses invalid combinations before QEMU sees them,
while this suite tests QEMU's own validation.  :func:`launch` starts the lab's QEMU from that
spec (the lab's argv, chroot wrapper and run directory, through :class:`~gpuhil.lab.guest.Guest`)
without waiting for the guest, and returns a :class:`Launch`: QEMU's exit status and output, and
whatever the attempt left behind (a live QEMU, its run directory, file descriptors of ours).
"""
from __future__ import annotations

import errno
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuhil.lab.errors import QemuLaunchError, describe_status
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup
from gpuhil.lab.spec import GuestSpec
from gpuhil.pids import pid_alive

#: What a QEMU that started is given before it is stopped: a device QEMU accepts at startup
#: can still fail its realize-time checks only before this point.
STARTED_GRACE = 0.5
UDMABUF = "/dev/udmabuf"


@dataclass(frozen=True)
class DeviceOptions:
    """A virtio-gpu ``-device`` value passed to QEMU unvalidated.

    ``gl_display`` gives QEMU the lab's egl-headless display (an OpenGL display) instead of
    ``-display none``.  :func:`~gpuhil.lab.spec.qemu_argv` needs only ``needs_gl`` and
    ``device_arg()`` of a GPU, which this provides.
    """

    value: str
    gl_display: bool

    @classmethod
    def from_json(cls, properties: dict[str, Any], gl_display: bool) -> "DeviceOptions":
        """The JSON ``-device`` form, needed for list properties such as ``outputs``."""
        return cls(json.dumps(properties, separators=(",", ":")), gl_display)

    @property
    def needs_gl(self) -> bool:
        """Whether QEMU gets an OpenGL display backend."""
        return self.gl_display

    def device_arg(self) -> str:
        """The ``-device`` value, verbatim."""
        return self.value

    @property
    def driver(self) -> str:
        """The device type (``virtio-gpu-gl-pci``)."""
        if self.value.startswith("{"):
            return str(json.loads(self.value)["driver"])
        return self.value.split(",", 1)[0]

    def properties(self) -> tuple[str, ...]:
        """The properties the value sets (what the QEMU must have for it to mean anything)."""
        if self.value.startswith("{"):
            return tuple(k for k in json.loads(self.value) if k != "driver")
        return tuple(p.split("=", 1)[0] for p in self.value.split(",")[1:] if p)


def memfd_ram_args(spec: GuestSpec, backend_id: str = "gpuhil-ram") -> tuple[str, ...]:
    """QEMU arguments that back the guest's RAM with a memfd (what udmabuf needs)."""
    return ("-object", f"memory-backend-memfd,id={backend_id},size={spec.memory_mib}M,share=on",
            "-machine", f"memory-backend={backend_id}")


def host_udmabuf() -> str | None:
    """None when QEMU can open the host's /dev/udmabuf (the lab's chroot binds the host's /dev),
    else why not (errno name)."""
    try:
        fd = os.open(UDMABUF, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"open {UDMABUF}: {errno.errorcode.get(exc.errno, exc.errno)}"
    os.close(fd)
    return None


@dataclass(frozen=True)
class Launch:
    """How one QEMU start ended.

    ``returncode`` is QEMU's exit status (negative: killed by that signal; None: it was still
    running after :data:`STARTED_GRACE` and was stopped); ``output`` is what it printed;
    ``leftovers`` lists what the attempt left behind (empty when everything was released).
    """

    program: str
    returncode: int | None
    output: str
    leftovers: tuple[str, ...]

    @property
    def started(self) -> bool:
        """Whether QEMU got past device realize and kept running."""
        return self.returncode is None

    @property
    def status(self) -> str:
        """'exit code 1', 'killed by SIGABRT' or 'still running'."""
        return describe_status(self.returncode)

    @property
    def lines(self) -> list[str]:
        return self.output.splitlines()

    def error_line(self, device: str, message: str) -> str:
        """The line QEMU prints for an error in ``-device <device>``."""
        return f"{self.program}: -device {device}: {message}"

    def device_errors(self, device: str) -> list[str]:
        """The messages QEMU printed against ``-device <device>`` (warnings excluded)."""
        prefix = self.error_line(device, "")
        return [line[len(prefix):] for line in self.lines
                if line.startswith(prefix) and not line[len(prefix):].startswith("warning:")]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def launch(spec: GuestSpec, setup: LabSetup, name: str = "config") -> Launch:
    """Start QEMU from ``spec`` as a lab guest would be started, without waiting for the guest,
    and stop it again; see :class:`Launch`."""
    fds_before = _open_fds()
    guest = Guest(spec, setup=setup, name=name, kill_grace=0)
    returncode: int | None
    try:
        guest.launch()
    except QemuLaunchError as exc:
        returncode, output = exc.returncode, exc.stderr
    else:
        time.sleep(STARTED_GRACE)
        returncode = guest.returncode
        output = guest.qemu_stderr()
    finally:
        guest.close()
    leftovers = []
    if guest.pid is not None and pid_alive(guest.pid):
        leftovers.append(f"QEMU pid {guest.pid} is still alive")
    if guest.run_dir is not None and guest.run_dir.exists():
        leftovers.append(f"run directory {guest.run_dir} still exists")
    leaked = _open_fds() - fds_before
    if leaked:
        targets = sorted(f"{fd}->{_readlink(fd)}" for fd in leaked)
        leftovers.append(f"file descriptors left open: {', '.join(targets)}")
    return Launch(Path(setup.qemu).name, returncode, output, tuple(leftovers))


def _readlink(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"
