"""The PCI functions gpuhil knows by vendor:device id: the one table of them."""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["EDU", "IVSHMEM", "PciId", "VIRTIO_GPU", "VIRTIO_VENDOR"]

#: The vendor id of virtio PCI devices (Red Hat, Inc.).
VIRTIO_VENDOR = 0x1AF4


class PciId(NamedTuple):
    """A vendor:device pair (``f"{id}"`` gives ``1af4:1050``)."""

    vendor: int
    device: int

    def __str__(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"


#: virtio-gpu, virtio 1.0 (modern) device id 0x1040 + 16.
VIRTIO_GPU = PciId(VIRTIO_VENDOR, 0x1050)
#: QEMU's ivshmem-plain: shared memory in BAR 2.
IVSHMEM = PciId(VIRTIO_VENDOR, 0x1110)
#: QEMU's edu device: a DMA engine, for DMA through a vIOMMU.
EDU = PciId(0x1234, 0x11E8)
