"""debugfs (``/sys/kernel/debug``): mounted once, through the mount system call.

The driver's debug files (``dri/N/virtio-gpu-features``, ``virtio-gpu-host-visible-mm``) live
there; payloads call :func:`ensure_mounted` before reading them.
"""
from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from gpuhil.errors import IoctlError

__all__ = ["DEBUGFS", "ensure_mounted", "is_mounted"]

DEBUGFS = Path("/sys/kernel/debug")
MOUNTS = Path("/proc/self/mounts")


def is_mounted(path: Path | str = DEBUGFS, mounts: Path = MOUNTS) -> bool:
    """True when a debugfs is mounted at ``path`` (per /proc/self/mounts)."""
    target = os.path.realpath(path)
    try:
        lines = mounts.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "debugfs" and fields[1] == target:
            return True
    return False


def _mount(target: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    if libc.mount(b"debugfs", target.encode(), b"debugfs", 0, None) != 0:
        return ctypes.get_errno() or errno.EIO
    return 0


def ensure_mounted(path: Path | str = DEBUGFS, *, required: bool = True) -> bool:
    """Mounts debugfs at ``path`` unless one is there already; True when it is mounted.

    When the mount fails (not root, kernel without CONFIG_DEBUG_FS, no such directory):
    IoctlError ``mount(source=debugfs, target=..., fstype=debugfs): EPERM ...`` naming why, or
    False with ``required=False`` (for probes that report "no debugfs" as a value).
    """
    if is_mounted(path):
        return True
    target = os.path.realpath(path)
    err = _mount(target)
    if err == 0:
        return True
    if err == errno.EBUSY and is_mounted(path):  # mounted meanwhile by someone else
        return True
    if not required:
        return False
    hints = {errno.EPERM: "mounting needs root (CAP_SYS_ADMIN)",
             errno.ENODEV: "the kernel has no debugfs (CONFIG_DEBUG_FS)",
             errno.ENOENT: f"{target} does not exist"}
    raise IoctlError("mount", {"source": "debugfs", "target": target, "fstype": "debugfs"}, err,
                     hints.get(err, ""))
