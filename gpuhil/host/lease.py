"""Leases on host resources (a physical GPU, a device for VFIO) shared by workers and sessions.

A lease is an exclusive ``flock`` on ``<dir>/<resource>.lock`` (through :mod:`filelock`) plus an
owner record ``<dir>/<resource>.owner`` (pid, boot id, when).  The kernel drops the flock when
its owner dies, so a killed worker frees its resources at once.  A lock can outlive its owner
when a child inherited the descriptor (a QEMU it forked) or after a reboot on a shared
directory; when the recorded owner is dead (pid gone, or another boot id) the lease is taken
over: the stale lock file is unlinked and a fresh one is locked.

::

    with acquire_any(["0000:03:00.0", "0000:04:00.0"], lease_dir, timeout=60) as lease:
        use(lease.resource)
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from filelock import FileLock, Timeout

from gpuhil.errors import GpuhilError
from gpuhil.pids import boot_id, pid_alive

__all__ = ["Lease", "LeaseBusy", "Owner", "acquire", "acquire_any", "read_owner"]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Owner:
    """Who holds a lease."""

    pid: int
    boot_id: str
    since: float
    holder: str = ""  # free text: worker id, test session

    def alive(self) -> bool:
        """Whether the owner process still exists in this boot."""
        return self.boot_id == boot_id() and pid_alive(self.pid)

    def __str__(self) -> str:
        who = f"pid {self.pid}" + (f" ({self.holder})" if self.holder else "")
        return f"{who} since {time.strftime('%H:%M:%S', time.localtime(self.since))}"


class LeaseBusy(GpuhilError):
    """No resource could be leased within the timeout; names who holds them."""

    def __init__(self, resources: Sequence[str], owners: dict[str, Owner | None],
                 timeout: float) -> None:
        self.resources = list(resources)
        self.owners = owners
        held = ", ".join(f"{r} held by {o if o else 'an unknown owner'}" for r, o in owners.items())
        super().__init__(f"no free lease on {', '.join(resources)} within {timeout:g} s ({held})")


def _paths(directory: Path, resource: str) -> tuple[Path, Path]:
    stem = _SAFE.sub("_", resource)
    return directory / f"{stem}.lock", directory / f"{stem}.owner"


def read_owner(directory: Path, resource: str) -> Owner | None:
    """The recorded owner of ``resource``'s lease, or None when there is no readable record."""
    try:
        data = json.loads(_paths(directory, resource)[1].read_text())
        return Owner(int(data["pid"]), str(data["boot_id"]), float(data["since"]),
                     str(data.get("holder", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Lease:
    """An exclusive lease on one resource; :meth:`release` (or ``with``) gives it back."""

    def __init__(self, resource: str, directory: Path, lock: FileLock, taken_over: Owner | None) -> None:
        self.resource = resource
        self.directory = directory
        #: the owner that died holding this lease (its record was left behind), if any
        self.taken_over = taken_over
        self._lock: FileLock | None = lock

    @property
    def held(self) -> bool:
        return self._lock is not None

    def release(self) -> None:
        """Drop the lease (the owner record first, so no one sees a stale record); idempotent."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        owner_path = _paths(self.directory, self.resource)[1]
        owner = read_owner(self.directory, self.resource)
        if owner is not None and owner.pid == os.getpid():
            owner_path.unlink(missing_ok=True)
        lock.release(force=True)

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<Lease {self.resource} {'held' if self.held else 'released'}>"


def _try_once(resource: str, directory: Path, holder: str) -> Lease | None:
    lock_path, owner_path = _paths(directory, resource)
    lock = FileLock(str(lock_path), thread_local=False, is_singleton=False)
    taken_over: Owner | None = None
    try:
        lock.acquire(timeout=0)
        # A record left behind means its owner died holding the lease (the kernel dropped the lock).
        taken_over = read_owner(directory, resource)
    except Timeout:
        owner = read_owner(directory, resource)
        if owner is None or owner.alive():
            return None
        # The recorded owner is dead but its lock survives (an inherited descriptor): take over.
        # Only one contender may do it: the guard serialises the unlink-and-relock.
        with FileLock(str(directory / ".takeover.lock"), is_singleton=False):
            if read_owner(directory, resource) != owner:
                return None  # someone else took it over first
            lock_path.unlink(missing_ok=True)
            lock = FileLock(str(lock_path), thread_local=False, is_singleton=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                return None
            taken_over = owner
    record = {"pid": os.getpid(), "boot_id": boot_id(), "since": time.time(), "holder": holder}
    tmp = owner_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, owner_path)
    return Lease(resource, directory, lock, taken_over)


def acquire_any(resources: Sequence[str], directory: Path, timeout: float = 0.0,
                holder: str = "", poll: float = 0.1) -> Lease:
    """Lease the first free resource of ``resources``, waiting up to ``timeout`` seconds.

    Raises :class:`LeaseBusy` (naming the owners) when none frees up in time.
    """
    if not resources:
        raise ValueError("no resources to lease")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for resource in resources:
            lease = _try_once(resource, directory, holder)
            if lease is not None:
                return lease
        if time.monotonic() >= deadline:
            raise LeaseBusy(resources, {r: read_owner(directory, r) for r in resources}, timeout)
        time.sleep(poll)


def acquire(resource: str, directory: Path, timeout: float = 0.0, holder: str = "") -> Lease:
    """Lease one resource (see :func:`acquire_any`)."""
    return acquire_any([resource], directory, timeout, holder)
