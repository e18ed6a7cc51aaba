"""dma-buf file descriptors: mmap, CPU-access sync, sync-file export/import, name, fdinfo.

A :class:`DmaBuf` owns one dma-buf fd (from PRIME export, udmabuf or VFIO); a
:class:`SyncFile` owns one sync_file fd (a fence) as produced by EXPORT_SYNC_FILE or an
EXECBUFFER out-fence.
"""
from __future__ import annotations

import contextlib
import errno
import os
import select
from dataclasses import dataclass
from typing import Iterator

from gpuhil import _dmabuf
from gpuhil._dmabuf import SyncFlag
from gpuhil._mapping import Mapping
from gpuhil.devices.ioctl import RawIoctl
from gpuhil.errors import ClosedError, IoctlError

__all__ = ["DmaBuf", "DmaBufInfo", "Mapping", "OwnedFd", "SyncFile", "SyncFlag", "parse_fdinfo"]

#: longest name DMA_BUF_SET_NAME accepts, NUL included
NAME_LEN = _dmabuf.DMA_BUF_NAME_MAX


@dataclass(frozen=True)
class DmaBufInfo:
    """What /proc/self/fdinfo says about a dma-buf fd."""

    size: int
    count: int
    exp_name: str
    name: str | None
    flags: int
    ino: int | None


def parse_fdinfo(text: str) -> DmaBufInfo:
    """Parse the text of ``/proc/<pid>/fdinfo/<fd>`` of a dma-buf.

    Raises ValueError when the text has no ``exp_name`` line (not a dma-buf).
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "exp_name" not in fields or "size" not in fields:
        raise ValueError("not a dma-buf: fdinfo has no exp_name/size")
    return DmaBufInfo(
        size=int(fields["size"]),
        count=int(fields.get("count", "0")),
        exp_name=fields["exp_name"],
        name=fields.get("name"),
        flags=int(fields.get("flags", "0"), 8),
        ino=int(fields["ino"]) if "ino" in fields else None,
    )


class OwnedFd(RawIoctl):
    """A file descriptor owned by one object: closed exactly once, then ClosedError.

    :meth:`~gpuhil.devices.ioctl.RawIoctl.ioctl` sends any request through it.
    """

    _kind = "fd"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def fd(self) -> int:
        """The descriptor (ClosedError once closed)."""
        if self._fd < 0:
            raise ClosedError(f"{self._kind} is closed")
        return self._fd

    def fileno(self) -> int:
        """The descriptor, for APIs that take file-like objects."""
        return self.fd

    @property
    def closed(self) -> bool:
        """True once closed (or detached)."""
        return self._fd < 0

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership and return the descriptor."""
        fd = self.fd
        self._fd = -1
        return fd

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self._fd}>"


class SyncFile(OwnedFd):
    """A sync_file fd: a fence that signals once the work it stands for has finished."""

    _kind = "sync_file"

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until signalled (True) or ``timeout`` seconds passed (False); None = forever."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        ms = None if timeout is None else max(0, int(timeout * 1000))
        return bool(poller.poll(ms))

    @property
    def signaled(self) -> bool:
        """True if the fence has already signalled."""
        return self.wait(0)


class DmaBuf(OwnedFd):
    """One dma-buf fd; takes ownership of ``fd``.  Use as a context manager."""

    _kind = "dma-buf"

    @classmethod
    def from_fd(cls, fd: int) -> "DmaBuf":
        """Wrap a duplicate of ``fd`` (the caller keeps its own)."""
        return cls(os.dup(fd))

    @property
    def size(self) -> int:
        """Size in bytes (dma-bufs report it through lseek(SEEK_END))."""
        try:
            return os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as exc:
            raise IoctlError("lseek", {"fd": self._fd, "whence": "SEEK_END"}, exc.errno) from None

    def mmap(self, length: int | None = None, offset: int = 0, writable: bool = True) -> Mapping:
        """Map ``length`` bytes (default: all) at ``offset`` with MAP_SHARED."""
        if length is None:
            length = self.size - offset
        return Mapping.map(self.fd, length, offset, writable)

    def sync(self, flags: int) -> None:
        """Raw DMA_BUF_IOCTL_SYNC with ``flags`` (SyncFlag.START/END | READ/WRITE)."""
        _dmabuf.buf_sync(self.fd, int(flags))

    @contextlib.contextmanager
    def cpu_access(self, read: bool = True, write: bool = True) -> Iterator["DmaBuf"]:
        """Bracket CPU access with SYNC START ... SYNC END."""
        access = (SyncFlag.READ if read else 0) | (SyncFlag.WRITE if write else 0)
        self.sync(SyncFlag.START | access)
        try:
            yield self
        finally:
            self.sync(SyncFlag.END | access)

    def export_sync_file(self, read: bool = True, write: bool = False) -> SyncFile:
        """DMA_BUF_IOCTL_EXPORT_SYNC_FILE: READ waits on writers, WRITE on all users."""
        flags = (SyncFlag.READ if read else 0) | (SyncFlag.WRITE if write else 0)
        return SyncFile(_dmabuf.export_sync_file(self.fd, int(flags)))

    def import_sync_file(self, sync_file: SyncFile | int, write: bool = True) -> None:
        """DMA_BUF_IOCTL_IMPORT_SYNC_FILE: add the fence as a write (or read) fence."""
        sync_fd = sync_file.fd if isinstance(sync_file, SyncFile) else int(sync_file)
        flags = SyncFlag.WRITE if write else SyncFlag.READ
        _dmabuf.import_sync_file(self.fd, int(flags), sync_fd)

    def set_name(self, name: str | bytes) -> None:
        """DMA_BUF_SET_NAME (the kernel truncates/refuses names >= NAME_LEN bytes)."""
        raw = name.encode() if isinstance(name, str) else bytes(name)
        _dmabuf.set_name(self.fd, raw)

    def fdinfo(self) -> DmaBufInfo:
        """The fd's /proc/self/fdinfo entry, parsed."""
        with open(f"/proc/self/fdinfo/{self.fd}") as f:
            text = f.read()
        try:
            return parse_fdinfo(text)
        except ValueError as exc:
            raise IoctlError("fdinfo", {"fd": self._fd}, errno.EINVAL, str(exc)) from None
