"""Processes by pid on this host: whether one still exists, and which boot this is (a pid
recorded under another boot id names nobody)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["boot_id", "pid_alive"]

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """This boot's id ("" where the kernel does not say)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (on this host's pid namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
