"""What the raw driver needs from the device: the transport seam of the raw path.

:class:`~gpuhil.raw.virtio_pci.VirtioPci` and :class:`~gpuhil.raw.rawgpu.RawGpu` talk to a
virtio PCI function only through a :class:`Transport` (in the spirit of the driver ops of the
kernel's VFIO selftests): its PCI configuration space, its BARs as register windows, and memory
the device reaches by DMA at addresses the driver chooses.  Notifying the device is a 16-bit
store into the notify window (a :class:`Window` of the BAR the virtio NOTIFY capability names),
so it needs nothing more; completions are read back from the used ring in DMA memory.

Implementations: :class:`gpuhil.raw.vfio_transport.VfioTransport` (vfio-pci behind an IOMMU,
the lab's "raw" guest) and :class:`gpuhil.qtest.transport.QtestTransport` (QEMU under
``-accel qtest``): config space through qtest config cycles, windows whose loads and stores
are qtest MMIO commands, and DMA memory as a range of the shared RAM file.  Drivers use the
``iova`` a :class:`DmaMemory` reports, not the one they asked for: without an IOMMU the
transport places it where guest RAM is free.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["DmaMemory", "Transport", "TransportSource", "Window"]


@runtime_checkable
class Window(Protocol):
    """A register window (a BAR, or part of one) with accesses of exactly the given width.

    Every ``readN``/``writeN`` is a single load or store of N bits at ``offset`` bytes into
    the window; ``read``/``write`` copy bytes (for data windows such as virtio-gpu's
    host-visible shared memory).  :class:`gpuhil._mapping.Mapping` is one.
    """

    def read8(self, offset: int) -> int: ...
    def read16(self, offset: int) -> int: ...
    def read32(self, offset: int) -> int: ...
    def read64(self, offset: int) -> int: ...
    def write8(self, offset: int, value: int) -> None: ...
    def write16(self, offset: int, value: int) -> None: ...
    def write32(self, offset: int, value: int) -> None: ...
    def write64(self, offset: int, value: int) -> None: ...
    def read(self, offset: int = 0, size: int = -1) -> bytes: ...
    def write(self, data: bytes, offset: int = 0) -> None: ...
    def __len__(self) -> int: ...
    @property
    def closed(self) -> bool: ...


@runtime_checkable
class DmaMemory(Protocol):
    """Memory the device reaches by DMA: ``memory`` is a writable buffer (a Window over
    RAM; the split virtqueues live in one) of ``size`` bytes, the device sees its first byte
    at ``iova``.

    ``close()`` makes it unreachable for the device and frees it; a context manager.
    """

    iova: int
    size: int
    memory: Window

    @property
    def closed(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> DmaMemory: ...
    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class Transport(Protocol):
    """One virtio PCI function as the raw driver sees it.

    ``name`` (the PCI address, for messages), ``spin_us``, ``closed``;
    ``config_read``/``config_write`` access PCI configuration space (``size`` 1, 2 or 4 bytes, little endian);
    ``mmap(bar, offset, length)`` gives a :class:`Window` of a BAR (length None: to its end);
    ``dma(size, iova)`` gives :class:`DmaMemory` of ``size`` bytes (page multiple) that the
    device sees at ``iova``; ``close()`` releases everything (DMA memory still open is
    released with it).
    """

    name: str
    #: how long a waiter for a completion polls the used ring before it sleeps (microseconds;
    #: 0 where the poller's CPU is emulated and spinning would slow the device down)
    spin_us: int

    @property
    def closed(self) -> bool: ...
    def config_read(self, offset: int, size: int) -> int: ...
    def config_write(self, offset: int, size: int, value: int) -> None: ...
    def mmap(self, bar: int, offset: int = 0, length: int | None = None) -> Window: ...
    def dma(self, size: int, iova: int) -> DmaMemory: ...
    def close(self) -> None: ...


@runtime_checkable
class TransportSource(Protocol):
    """What names a device for a payload when a PCI address does not (a qtest machine's
    function): ``transport()`` opens a fresh :class:`Transport` to it."""

    name: str

    def transport(self) -> Transport: ...
