"""Guest RAM of a qtest machine: the shared ``memory-backend-file`` QEMU maps, mapped here too.

Guest-physical address ``gpa`` is offset ``gpa`` of :attr:`GuestRam.mapping` (q35 with at most
2 GiB of RAM puts all of it below 4 GiB, from 0).  What the device reads by DMA is what was
stored here, with no qtest command.  The first MiB is left out of :meth:`GuestRam.alloc`
(legacy VGA and BIOS windows shadow parts of it for the device).  With the RAM file's ``fd``,
:meth:`GuestRam.map` maps a page-aligned range again on its own (DMA memory of the raw
driver: a :class:`~gpuhil._mapping.Mapping` whose offset 0 is that guest-physical address).
"""
from __future__ import annotations

import os

from gpuhil._mapping import Mapping
from gpuhil.errors import GpuhilError

__all__ = ["GuestRam", "RamExhausted"]

LOW_RESERVED = 1 << 20


class RamExhausted(GpuhilError):
    """:meth:`GuestRam.alloc` ran past the end of guest RAM."""


class GuestRam:
    """``size`` bytes of guest RAM at guest-physical 0, with a bump allocator above 1 MiB."""

    def __init__(self, mapping: Mapping, fd: int | None = None) -> None:
        self.mapping = mapping
        self.size = mapping.length
        self._fd = fd  # owned: closed by close()
        self._next = LOW_RESERVED

    def alloc(self, size: int, align: int = 4096) -> int:
        """The guest-physical address of ``size`` fresh bytes aligned to ``align`` (zeroed)."""
        if size <= 0 or align <= 0 or align & (align - 1):
            raise ValueError(f"alloc({size}, align={align}): size > 0 and a power-of-two align")
        gpa = (self._next + align - 1) & ~(align - 1)
        if gpa + size > self.size:
            raise RamExhausted(f"guest RAM: {size:#x} bytes at {gpa:#x} do not fit in "
                               f"{self.size:#x} (reset() frees everything)")
        self._next = gpa + size
        self.mapping.write(bytes(size), gpa)
        return gpa

    def reset(self) -> None:
        """Forget every allocation (the memory keeps its contents)."""
        self._next = LOW_RESERVED

    def mark(self) -> int:
        """Where the next allocation starts: :meth:`release` frees everything allocated since."""
        return self._next

    def release(self, mark: int) -> None:
        """Free every allocation made after :meth:`mark` returned ``mark``."""
        if not LOW_RESERVED <= mark <= self._next:
            raise ValueError(f"release({mark:#x}): not a mark of this RAM (next {self._next:#x})")
        self._next = mark

    def map(self, gpa: int, size: int, label: str = "") -> Mapping:
        """``size`` bytes at page-aligned ``gpa`` as a mapping of their own (offset 0 = ``gpa``),
        sharing the pages QEMU and :attr:`mapping` see; RamExhausted past the end."""
        if self._fd is None:
            raise RamExhausted("guest RAM was mapped without its file: map() needs the fd")
        if gpa % 4096 or size <= 0 or gpa + size > self.size:
            raise RamExhausted(f"guest RAM: cannot map {size:#x} bytes at {gpa:#x} "
                               f"(page-aligned, within {self.size:#x})")
        return Mapping.map(self._fd, size, gpa, op="mmap guest RAM", label=label or f"RAM@{gpa:#x}")

    def read(self, gpa: int, size: int) -> bytes:
        return self.mapping.read(gpa, size)

    def write(self, gpa: int, data: bytes) -> None:
        self.mapping.write(data, gpa)

    def view(self, gpa: int, size: int) -> memoryview:
        """A writable memoryview of ``size`` bytes at ``gpa`` (release it before close)."""
        return memoryview(self.mapping)[gpa:gpa + size]

    def close(self) -> None:
        self.mapping.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
