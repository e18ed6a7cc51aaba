"""/dev/udmabuf: turn ranges of sealed memfds into dma-bufs (UDMABUF_CREATE / _CREATE_LIST)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gpuhil import _dmabuf
from gpuhil.devices.dmabuf import DmaBuf, OwnedFd
from gpuhil.errors import IoctlError
from gpuhil.devices.memfd import Memfd

__all__ = ["Udmabuf", "UdmabufLimits", "UdmabufRange", "DEFAULT_PATH", "limits"]

DEFAULT_PATH = "/dev/udmabuf"
PARAMETERS = Path("/sys/module/udmabuf/parameters")


@dataclass(frozen=True)
class UdmabufRange:
    """One item of UDMABUF_CREATE_LIST: ``size`` bytes of ``memfd`` at ``offset``."""

    memfd: Memfd | int
    offset: int
    size: int

    def raw(self) -> tuple[int, int, int]:
        """``(memfd fd, offset, size)`` as the ioctl takes it."""
        fd = self.memfd.fd if isinstance(self.memfd, Memfd) else int(self.memfd)
        return (fd, self.offset, self.size)


@dataclass(frozen=True)
class UdmabufLimits:
    """The udmabuf module parameters (None where the kernel does not expose them)."""

    size_limit_mb: int | None
    list_limit: int | None


def limits(parameters: Path = PARAMETERS) -> UdmabufLimits:
    """Read size_limit_mb and list_limit from /sys/module/udmabuf/parameters when present."""

    def read(name: str) -> int | None:
        try:
            return int((parameters / name).read_text().strip())
        except (OSError, ValueError):
            return None

    return UdmabufLimits(read("size_limit_mb"), read("list_limit"))


class Udmabuf(OwnedFd):
    """The open udmabuf device.  Use as a context manager; close() is idempotent and leaves
    the dma-bufs made from it valid."""

    def __init__(self, path: str = DEFAULT_PATH) -> None:
        self.path = path
        self._kind = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            detail = "no udmabuf device (CONFIG_UDMABUF)" if exc.errno == 2 else ""
            raise IoctlError("open", {"path": path}, exc.errno, detail) from None
        super().__init__(fd)

    @staticmethod
    def limits() -> UdmabufLimits:
        """The module's size_limit_mb and list_limit."""
        return limits()

    def create(self, memfd: Memfd | int, offset: int = 0, size: int | None = None,
               cloexec: bool = True) -> DmaBuf:
        """UDMABUF_CREATE: a dma-buf over ``size`` bytes (default: the rest) of ``memfd``.

        The memfd needs Seal.SHRINK and must not have Seal.WRITE (else EINVAL); offset and size
        must be page aligned (EINVAL); a non-memfd gives EBADFD.
        """
        fd = memfd.fd if isinstance(memfd, Memfd) else int(memfd)
        if size is None:
            size = os.fstat(fd).st_size - offset
        flags = _dmabuf.UDMABUF_CLOEXEC if cloexec else 0
        return DmaBuf(_dmabuf.create_udmabuf(self.fd, fd, offset, size, flags))

    def create_list(self, ranges: Iterable[UdmabufRange | tuple[Memfd | int, int, int]],
                    cloexec: bool = True) -> DmaBuf:
        """UDMABUF_CREATE_LIST: one dma-buf concatenating the ranges, in order."""
        items = [r.raw() if isinstance(r, UdmabufRange) else UdmabufRange(*r).raw() for r in ranges]
        flags = _dmabuf.UDMABUF_CLOEXEC if cloexec else 0
        return DmaBuf(_dmabuf.create_udmabuf_list(self.fd, items, flags))

    def __repr__(self) -> str:
        return f"<Udmabuf {self.path} fd={self._fd}>"
