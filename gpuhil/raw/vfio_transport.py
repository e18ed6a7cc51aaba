"""The VFIO transport of the raw path: a PCI function bound to vfio-pci behind an IOMMU.

:meth:`VfioTransport.open` puts the function's IOMMU group in a fresh type-1 v2 container and
opens the device; config space goes through the VFIO CONFIG region, BAR windows are mmaps of
the BAR regions, DMA memory is locked anonymous memory mapped into the container at the
chosen IOVA.  It satisfies :class:`gpuhil.raw.transport.Transport`.
"""
from __future__ import annotations

from gpuhil._mapping import Mapping
from gpuhil.devices.vfio import Container, Device, DmaBuffer, Extension, Group

__all__ = ["VfioTransport"]


class VfioTransport:
    """A vfio-pci function: its container, group and device fds (closed together)."""

    def __init__(self, address: str, container: Container, group: Group,
                 device: Device) -> None:
        self.name = address
        self.spin_us = 0  # in a guest the poller's CPU is emulated: spinning steals from QEMU
        self.container = container
        self.group = group
        self.device = device

    @classmethod
    def open(cls, address: str) -> VfioTransport:
        """The function at ``address`` (bound to vfio-pci) in a container of its own."""
        container = Container()
        group = None
        try:
            group = Group.of(address)
            group.set_container(container)
            container.set_iommu(Extension.TYPE1v2)
            return cls(address, container, group, group.device(address))
        except BaseException:
            if group is not None:
                group.close()
            container.close()
            raise

    @property
    def closed(self) -> bool:
        return self.device.closed

    def config_read(self, offset: int, size: int) -> int:
        return self.device.config_read(offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        self.device.config_write(offset, size, value)

    def mmap(self, bar: int, offset: int = 0, length: int | None = None) -> Mapping:
        return self.device.mmap(bar, offset, length)

    def dma(self, size: int, iova: int) -> DmaBuffer:
        return self.container.dma_buffer(size, iova)

    def close(self) -> None:
        """Close the device, the group and the container (unmapping every DMA buffer)."""
        try:
            self.group.close()
        finally:
            self.container.close()

    def __repr__(self) -> str:
        return f"<VfioTransport {self.name}{' closed' if self.closed else ''}>"
