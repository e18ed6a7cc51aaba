"""memfd files with seals: the backing memory udmabuf turns into dma-bufs."""
from __future__ import annotations

import os

from gpuhil import _dmabuf
from gpuhil._dmabuf import MemfdFlag, Seal
from gpuhil.devices.dmabuf import Mapping, OwnedFd
from gpuhil.errors import IoctlError

__all__ = ["Memfd", "MemfdFlag", "Seal"]


class Memfd(OwnedFd):
    """An anonymous shared-memory file (memfd_create), owning its fd."""

    _kind = "memfd"

    def __init__(self, fd: int, name: str = "") -> None:
        super().__init__(fd)
        self.name = name

    @classmethod
    def create(cls, name: str = "gpuhil", size: int = 0, *, allow_sealing: bool = True,
               cloexec: bool = True, flags: int = 0) -> "Memfd":
        """memfd_create(name, flags) then grow to ``size`` bytes.

        ``flags`` adds raw MFD_* bits (e.g. MemfdFlag.HUGETLB, NOEXEC_SEAL).
        """
        bits = int(flags)
        if allow_sealing:
            bits |= MemfdFlag.ALLOW_SEALING
        if cloexec:
            bits |= MemfdFlag.CLOEXEC
        memfd = cls(_dmabuf.create_memfd(name, bits), name)
        if size:
            try:
                memfd.resize(size)
            except BaseException:
                memfd.close()
                raise
        return memfd

    @property
    def size(self) -> int:
        """Current file size in bytes."""
        return os.fstat(self.fd).st_size

    def resize(self, size: int) -> None:
        """ftruncate to ``size`` (EPERM if a GROW/SHRINK seal forbids it)."""
        try:
            os.ftruncate(self.fd, size)
        except OSError as exc:
            raise IoctlError("ftruncate", {"fd": self._fd, "size": size}, exc.errno) from None

    def add_seals(self, seals: int) -> None:
        """F_ADD_SEALS (EPERM without ALLOW_SEALING or after SEAL; EBUSY for WRITE while a
        writable shared mapping exists)."""
        _dmabuf.add_seals(self.fd, int(seals))

    @property
    def seals(self) -> Seal:
        """F_GET_SEALS."""
        return Seal(_dmabuf.get_seals(self.fd))

    def mmap(self, length: int | None = None, offset: int = 0, writable: bool = True) -> Mapping:
        """Map ``length`` bytes (default: to the end of the file) with MAP_SHARED."""
        if length is None:
            length = self.size - offset
        return Mapping.map(self.fd, length, offset, writable, "mmap", {"memfd": self.name})

    def write_at(self, offset: int, data: bytes) -> None:
        """pwrite ``data`` at ``offset`` (EPERM under a WRITE seal)."""
        try:
            os.pwrite(self.fd, data, offset)
        except OSError as exc:
            raise IoctlError("pwrite", {"fd": self._fd, "offset": offset, "size": len(data)},
                             exc.errno) from None

    def read_at(self, offset: int, size: int) -> bytes:
        """pread ``size`` bytes at ``offset``."""
        return os.pread(self.fd, size, offset)
