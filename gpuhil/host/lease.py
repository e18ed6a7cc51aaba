"""Leases on host resources (a physical GPU, a device for VFIO) shared by workers, sessions and
the users of one host.

A lease is an exclusive ``flock`` on ``<dir>/<resource>.lock`` (through :mod:`filelock`) plus an
owner record ``<dir>/<resource>.owner`` (pid, boot id, when).  The kernel drops the flock when
its owner dies, so a killed worker frees its resources at once.  A lock can outlive its owner
when a child inherited the descriptor (a QEMU it forked) or after a reboot on a shared
directory; when the recorded owner is dead (pid gone, or another boot id) the lease is taken
over: the stale lock file is unlinked and a fresh one is locked.  Attempts are serialised by a
guard lock in the directory, and every acquisition checks that the descriptor it locked is still
the file at the path, so a takeover never hands one resource to two holders (a contender that
opened the old file before the unlink, and got its lock when the leaked descriptor closed, does
not win).

The default directory, :data:`DEFAULT_DIRECTORY`, is host-wide, so every user of the host
excludes every other; :func:`prepare_directory` creates it safely (no symlink followed, the
mode set explicitly) for the members of one group.

::

    with acquire_any(["0000:03:00.0", "0000:04:00.0"], lease_dir, timeout=60) as lease:
        use(lease.resource)
"""
from __future__ import annotations

import grp
import json
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from filelock import FileLock, Timeout

from gpuhil.errors import GpuhilError
from gpuhil.pids import boot_id, pid_alive

__all__ = ["DEFAULT_DIRECTORY", "Lease", "LeaseBusy", "LeaseDirError", "Owner", "acquire",
           "acquire_any", "prepare_directory", "read_owner"]

#: Host-wide, so that every user of the host (a QA engineer, the CI runner) sees every lease.
DEFAULT_DIRECTORY = Path("/run/lock/gpuhil")

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


class LeaseDirError(GpuhilError):
    """The lease directory cannot be created or used; names the path and what is wrong."""


class _StaleInode(Exception):
    """The locked descriptor is no longer the lock file at the path (raised in on_acquired)."""


def prepare_directory(directory: Path, group: str | None = None) -> Path:
    """Create ``directory`` if missing, for the members of ``group`` (default: this user's
    primary group): mode 2770 with that group, set explicitly whatever the umask.  A symlink,
    a non-directory or a directory this user cannot write raises :class:`LeaseDirError`."""
    directory = Path(directory)
    gid = os.getgid()
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise LeaseDirError(f"lease directory {directory}: no group {group!r} on this host") from None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(directory, 0o700)  # nobody else can use it before its mode and group are set
    except FileExistsError:
        pass
    except OSError as exc:
        raise LeaseDirError(f"lease directory {directory}: cannot create it: {exc.strerror}") from None
    else:
        try:
            os.chown(directory, -1, gid)
            os.chmod(directory, 0o2770)
        except OSError as exc:
            raise LeaseDirError(f"lease directory {directory}: cannot give it to group "
                                f"{group or gid}: {exc.strerror}") from None
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise LeaseDirError(f"lease directory {directory}: not a directory (a symlink or a file "
                            f"is in its place)")
    if not os.access(directory, os.W_OK | os.X_OK):
        owner = f"uid {info.st_uid}, gid {info.st_gid}, mode {stat.S_IMODE(info.st_mode):o}"
        raise LeaseDirError(f"lease directory {directory}: not writable by uid {os.getuid()} "
                            f"({owner}): join its group or choose another directory")
    return directory


def _same_file(path: Path):
    """on_acquired hook: refuse a lock whose descriptor is no longer the file at ``path``."""
    def check(fd: int) -> None:
        held = os.fstat(fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            raise _StaleInode(str(path)) from None
        if (held.st_dev, held.st_ino) != (current.st_dev, current.st_ino):
            raise _StaleInode(str(path))
    return check


def _lock(path: Path, mode: int) -> FileLock:
    return FileLock(str(path), mode=mode, thread_local=False, is_singleton=False,
                    preserve_lock_file=True, on_acquired=_same_file(path))


def _file_mode(directory: Path) -> int:
    """Lock and owner files: readable and writable by the directory's group when it is shared."""
    return 0o660 if os.stat(directory).st_mode & stat.S_IWGRP else 0o600


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
    """One attempt, under the directory's guard lock: every lock and every owner record is taken
    and written while holding it, so no contender ever sees a lock whose record is not yet
    written, and "locked, with a dead owner's record" can only mean a leaked descriptor."""
    lock_path, owner_path = _paths(directory, resource)
    mode = _file_mode(directory)
    with _lock(directory / ".guard.lock", mode):
        lock = _lock(lock_path, mode)
        try:
            lock.acquire(timeout=0)
            # A record left behind: its owner died holding the lease (the kernel dropped the lock).
            taken_over = read_owner(directory, resource)
        except _StaleInode:
            return None  # replaced under us (a contender of an older gpuhil): try again
        except Timeout:
            owner = read_owner(directory, resource)
            if owner is None or owner.alive():
                return None
            # The recorded owner is dead but its lock survives (an inherited descriptor):
            # take over on a fresh file.
            lock_path.unlink(missing_ok=True)
            lock = _lock(lock_path, mode)
            try:
                lock.acquire(timeout=0)
            except (Timeout, _StaleInode):
                return None
            taken_over = owner
        record = {"pid": os.getpid(), "boot_id": boot_id(), "since": time.time(), "holder": holder}
        tmp = owner_path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        os.fchmod(fd, mode)  # whatever the umask: the group must read it
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        os.replace(tmp, owner_path)
    return Lease(resource, directory, lock, taken_over)


def acquire_any(resources: Sequence[str], directory: Path = DEFAULT_DIRECTORY,
                timeout: float = 0.0, holder: str = "", poll: float = 0.1,
                group: str | None = None) -> Lease:
    """Lease the first free resource of ``resources``, waiting up to ``timeout`` seconds; the
    directory is made with :func:`prepare_directory` (``group``) when missing.

    Raises :class:`LeaseBusy` (naming the owners) when none frees up in time.
    """
    if not resources:
        raise ValueError("no resources to lease")
    directory = prepare_directory(Path(directory), group)
    deadline = time.monotonic() + timeout
    while True:
        for resource in resources:
            lease = _try_once(resource, directory, holder)
            if lease is not None:
                return lease
        if time.monotonic() >= deadline:
            raise LeaseBusy(resources, {r: read_owner(directory, r) for r in resources}, timeout)
        time.sleep(poll)


def acquire(resource: str, directory: Path = DEFAULT_DIRECTORY, timeout: float = 0.0,
            holder: str = "", poll: float = 0.1, group: str | None = None) -> Lease:
    """Lease one resource (see :func:`acquire_any`)."""
    return acquire_any([resource], directory, timeout, holder, poll, group)
