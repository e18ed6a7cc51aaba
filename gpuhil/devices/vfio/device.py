"""A VFIO device fd: its info, regions (mmap, pread/pwrite, PCI config space), IRQs and reset.

The VFIO_DEVICE_FEATURE methods (DMA_BUF export among them) come from
:class:`~gpuhil.devices.vfio.features.DeviceFeatures`.
"""
from __future__ import annotations

import errno
import os

from gpuhil import _vfio
from gpuhil._mapping import Mapping
from gpuhil._vfio import DeviceFlag, IrqFlag, IrqIndex, RegionFlag, RegionIndex
from gpuhil.devices.vfio.features import DeviceFeatures
from gpuhil.devices.vfio.info import (
    DeviceInfo, IrqInfo, RegionCaps, RegionInfo, cap_headers, decode_region_caps,
)
from gpuhil.devices.vfio.owner import FdOwner
from gpuhil.errors import ioctl_error

__all__ = ["Device"]


class Device(FdOwner, DeviceFeatures):
    """A VFIO device fd: info, regions (mmap, pread/pwrite, config space), IRQs, features."""

    _kind = "VFIO device"

    def __init__(self, fd: int, name: str) -> None:
        super().__init__(fd)
        self.name = name
        self._mappings: list[Mapping] = []
        self._regions: dict[int, RegionInfo] = {}

    # ---- info ----

    def info(self) -> DeviceInfo:
        """VFIO_DEVICE_GET_INFO."""
        flags, num_regions, num_irqs, cap_offset, raw = _vfio.device_get_info(self.fd)
        caps = cap_headers(raw, cap_offset, _vfio.DEVICE_INFO_SIZE) if flags & DeviceFlag.CAPS else ()
        return DeviceInfo(DeviceFlag(flags), num_regions, num_irqs, caps)

    def region_info(self, region: RegionIndex | int) -> RegionInfo:
        """VFIO_DEVICE_GET_REGION_INFO with its capability chain decoded."""
        index = int(region)
        flags, cap_offset, size, offset, raw = _vfio.device_get_region_info(self.fd, index)
        caps = decode_region_caps(raw, cap_offset) if flags & RegionFlag.CAPS else RegionCaps()
        info = RegionInfo(index, RegionFlag(flags), size, offset, caps)
        self._regions[index] = info
        return info

    def _region(self, region: RegionIndex | int) -> RegionInfo:
        index = int(region)
        self.fd  # noqa: B018 - ClosedError before the cache is consulted
        return self._regions.get(index) or self.region_info(index)

    def irq_info(self, irq: IrqIndex | int) -> IrqInfo:
        """VFIO_DEVICE_GET_IRQ_INFO."""
        flags, count = _vfio.device_get_irq_info(self.fd, int(irq))
        return IrqInfo(int(irq), IrqFlag(flags), count)

    def reset(self) -> None:
        """VFIO_DEVICE_RESET (only when info().resettable; revokes exported dma-bufs)."""
        _vfio.device_reset(self.fd)

    # ---- regions ----

    def mmap(self, region: RegionIndex | int, offset: int = 0, length: int | None = None,
             writable: bool | None = None) -> Mapping:
        """Maps (part of) a region; closed with the device at the latest."""
        info = self._region(region)
        if length is None:
            length = info.size - offset
        if writable is None:
            writable = info.writable
        label = info.name if not offset else f"{info.name}+{offset:#x}"
        mapping = Mapping.map(self.fd, length, info.offset + offset, writable, "MMAP",
                              {"region": label}, label)
        self._mappings.append(mapping)
        return mapping

    def read_region(self, region: RegionIndex | int, offset: int, size: int) -> bytes:
        """pread of ``size`` bytes at ``offset`` of a region (not a mapping: goes via the kernel)."""
        info = self._region(region)
        args = {"region": info.name, "offset": offset, "size": size}
        try:
            data = os.pread(self.fd, size, info.offset + offset)
        except OSError as exc:
            raise ioctl_error("REGION_READ", args, exc.errno or errno.EIO) from exc
        if len(data) != size:
            raise ioctl_error("REGION_READ", args, errno.EIO, f"short read: {len(data)} bytes")
        return data

    def write_region(self, region: RegionIndex | int, offset: int, data: bytes) -> None:
        """pwrite of ``data`` at ``offset`` of a region."""
        info = self._region(region)
        args = {"region": info.name, "offset": offset, "size": len(data)}
        try:
            done = os.pwrite(self.fd, data, info.offset + offset)
        except OSError as exc:
            raise ioctl_error("REGION_WRITE", args, exc.errno or errno.EIO) from exc
        if done != len(data):
            raise ioctl_error("REGION_WRITE", args, errno.EIO, f"short write: {done} bytes")

    def config_read(self, offset: int, size: int) -> int:
        """A little-endian 1/2/4-byte read of PCI config space (through the CONFIG region)."""
        if size not in (1, 2, 4):
            raise ValueError(f"config space accesses are 1, 2 or 4 bytes, not {size}")
        return int.from_bytes(self.read_region(RegionIndex.CONFIG, offset, size), "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        """A little-endian 1/2/4-byte write of PCI config space."""
        if size not in (1, 2, 4):
            raise ValueError(f"config space accesses are 1, 2 or 4 bytes, not {size}")
        self.write_region(RegionIndex.CONFIG, offset, value.to_bytes(size, "little"))

    def _close_children(self) -> None:
        for mapping in self._mappings:
            if mapping.closed:
                continue
            mapping.close()
        self._mappings.clear()

    def __repr__(self) -> str:
        return f"<Device {self.name}{' closed' if self.closed else ''}>"
