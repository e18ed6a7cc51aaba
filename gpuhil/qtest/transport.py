"""The qtest transport of the raw path: a PCI function of a QEMU under ``-accel qtest``.

Config space goes through qtest config cycles, BAR windows are qtest MMIO
(:class:`~gpuhil.qtest.pci.MmioWindow`: the hostmem window is read and written that way, so
MAP_BLOB checks see what the device maps there), and DMA memory is guest RAM: a page range of
the shared RAM file, mapped here on its own.  There is no IOMMU, so the device reaches DMA
memory at its guest-physical address: :meth:`QtestTransport.dma` places the memory where RAM
is free and its ``iova`` says where (the ``iova`` asked for is a hint an IOMMU transport
honours).  It satisfies :class:`gpuhil.raw.transport.Transport`.

:class:`QtestGpu` names such a function for payloads: ``RawGpu.open(target)`` accepts it in
place of a PCI address and calls :meth:`QtestGpu.transport`.
"""
from __future__ import annotations

from dataclasses import dataclass

from gpuhil._mapping import Mapping
from gpuhil.errors import ClosedError
from gpuhil.qtest.pci import MmioWindow, PciFunction
from gpuhil.qtest.ram import GuestRam

__all__ = ["QtestDma", "QtestGpu", "QtestTransport"]

#: QEMU under qtest completes a command in ~30 us, less than one nanosleep's timer slack, on a
#: core of its own: a waiter polls this long (between sched_yield calls) before it sleeps.
SPIN_US = 200


class QtestDma:
    """``size`` bytes of guest RAM at guest-physical ``iova``; ``memory`` maps exactly them."""

    def __init__(self, ram: GuestRam, size: int) -> None:
        self.iova = ram.alloc(size)
        self.size = size
        self.memory: Mapping = ram.map(self.iova, size)

    @property
    def closed(self) -> bool:
        return self.memory.closed

    def close(self) -> None:
        """Unmap it here (the RAM itself is the allocator's again when the transport closes)."""
        self.memory.close()

    def __enter__(self) -> QtestDma:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class QtestTransport:
    """``function`` of a qtest machine, with DMA memory from ``ram``; closing it frees the RAM
    it allocated (the QEMU and its bus stay up for the next driver)."""

    def __init__(self, function: PciFunction, ram: GuestRam) -> None:
        self.name = f"qtest:{function.name}"
        self.spin_us = SPIN_US
        self.function = function
        self.ram = ram
        self._mark = ram.mark()
        self._buffers: list[QtestDma] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"{self.name}: the qtest transport is closed")

    def config_read(self, offset: int, size: int) -> int:
        self._check()
        return self.function.config_read(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        self._check()
        self.function.config_write(offset, size, value)

    def mmap(self, bar: int, offset: int = 0, length: int | None = None) -> MmioWindow:
        """A window of BAR ``bar`` whose stores are posted (a notify costs no round trip)."""
        self._check()
        return self.function.mmap(bar, offset, length, posted=True)

    def dma(self, size: int, iova: int = 0) -> QtestDma:
        """Fresh zeroed guest RAM of ``size`` bytes; ``iova`` is ignored (see the module)."""
        self._check()
        buffer = QtestDma(self.ram, size)
        self._buffers.append(buffer)
        return buffer

    def close(self) -> None:
        """Unmap every DMA buffer and give their RAM back; harmless twice."""
        if self._closed:
            return
        self._closed = True
        for buffer in self._buffers:
            buffer.close()
        self._buffers.clear()
        self.ram.release(self._mark)

    def __repr__(self) -> str:
        return f"<QtestTransport {self.name}{' closed' if self._closed else ''}>"


@dataclass(frozen=True)
class QtestGpu:
    """The virtio-gpu ``function`` of a qtest machine whose guest RAM is ``ram``: what a
    payload gets in place of a PCI address (``RawGpu.open(target)``)."""

    function: PciFunction
    ram: GuestRam

    @property
    def name(self) -> str:
        return f"qtest:{self.function.name}"

    def transport(self) -> QtestTransport:
        return QtestTransport(self.function, self.ram)

    def __str__(self) -> str:
        return self.name
