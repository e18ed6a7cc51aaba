"""VFIO: containers, groups and devices, their regions and IRQs, DMA mappings, dma-buf export.

The usual flow (legacy container/group interface), in one step with :func:`open_device`::

    with open_device(address) as o:          # Container + Group.of + SET_IOMMU + device fd
        bar2 = o.device.mmap(RegionIndex.BAR2)
        buf = o.container.dma_buffer(1 << 20, iova=0x1000_0000)
        dmabuf = o.device.export_dma_buf(RegionIndex.BAR2, [(0, 1 << 20)])

or step by step (for tests of the handshake itself)::

    with Container() as container, Group.of(address) as group:
        group.set_container(container)
        container.set_iommu(Extension.TYPE1v2)
        with group.device(address) as device:
            ...

Every object closes deterministically (``close()`` or ``with``), closing twice is harmless and
using a closed object raises :class:`~gpuhil.errors.ClosedError`.  Each one also has ``ioctl()``
(:mod:`gpuhil.devices.ioctl`) for requests the typed API does not offer.

Modules: ``info`` (what the info ioctls answer), ``owner`` (fd ownership), ``container``
(Container, DmaBuffer), ``group``, ``device`` (info, regions, IRQs, reset), ``features``
(DEVICE_FEATURE, typed DMA_BUF), ``opening`` (open_device).
"""
from __future__ import annotations

from gpuhil._mapping import Mapping
from gpuhil._vfio import (
    ABI, DeviceFlag, DmaFlag, Extension, Feature, FeatureOp, GroupFlag, IommuInfoFlag, IrqFlag,
    IrqIndex, RegionCap, RegionFlag, RegionIndex, RegionType,
)
from gpuhil.devices.vfio.container import CONTAINER_PATH, Container, DmaBuffer
from gpuhil.devices.vfio.device import Device
from gpuhil.devices.vfio.features import DEFAULT_OPEN_FLAGS
from gpuhil.devices.vfio.group import Group
from gpuhil.devices.vfio.info import (
    CapHeader, DeviceInfo, DmaRange, GroupStatus, IommuInfo, IrqInfo, RegionCaps, RegionInfo,
    RegionTypeCap, SparseArea, decode_iova_ranges, decode_region_caps,
)
from gpuhil.devices.vfio.opening import Opened, open_device
from gpuhil.errors import ClosedError

__all__ = [
    "ABI", "CONTAINER_PATH", "CapHeader", "ClosedError", "Container", "DEFAULT_OPEN_FLAGS",
    "Device", "DeviceFlag", "DeviceInfo", "DmaBuffer", "DmaFlag", "DmaRange", "Extension",
    "Feature", "FeatureOp", "Group", "GroupFlag", "GroupStatus", "IommuInfo", "IommuInfoFlag",
    "IrqFlag", "IrqIndex", "IrqInfo", "Mapping", "Opened", "RegionCap", "RegionCaps",
    "RegionFlag", "RegionIndex", "RegionInfo", "RegionType", "RegionTypeCap", "SparseArea",
    "decode_iova_ranges", "decode_region_caps", "open_device",
]
