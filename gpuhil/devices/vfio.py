"""VFIO: containers, groups and devices, their regions and IRQs, DMA mappings, dma-buf export.

The usual flow (legacy container/group interface)::

    with Container() as container, Group.of(address) as group:
        group.set_container(container)
        container.set_iommu(Extension.TYPE1v2)
        with group.device(address) as device:
            bar2 = device.mmap(RegionIndex.BAR2)
            buf = container.dma_buffer(1 << 20, iova=0x1000_0000)
            dmabuf = device.export_dma_buf(RegionIndex.BAR2, [(0, 1 << 20)])

The iommufd variant (``/dev/iommu`` + ``/dev/vfio/devices/vfioN``) is :class:`IommuFd` and
:meth:`Device.open_cdev`; on kernels without it they raise :class:`~gpuhil.errors.Unsupported`
saying what is missing.  Every object closes deterministically (``close()`` or ``with``),
closing twice is harmless and using a closed object raises :class:`~gpuhil.errors.ClosedError`.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from gpuhil import _vfio
from gpuhil._mapping import Mapping
from gpuhil._vfio import (
    ABI, DeviceFlag, DmaFlag, Extension, Feature, FeatureOp, GroupFlag, IoasMapFlag,
    IommuInfoFlag, IrqFlag, IrqIndex, RegionCap, RegionFlag, RegionIndex, RegionType,
)
from gpuhil.devices.dmabuf import DmaBuf, OwnedFd
from gpuhil.errors import ClosedError, IoctlError, Unsupported, ioctl_error
from gpuhil.devices.pci import PciDevice

__all__ = [
    "ABI", "CapHeader", "ClosedError", "Container", "Device", "DeviceFlag", "DeviceInfo",
    "DmaBuffer", "DmaFlag", "DmaRange", "Extension", "Feature", "FeatureOp", "Group",
    "GroupFlag", "GroupStatus", "IoasMapFlag", "IommuFd", "IommuInfo", "IrqFlag", "IrqIndex",
    "IrqInfo", "Mapping", "RegionCap", "RegionCaps", "RegionFlag", "RegionIndex", "RegionInfo",
    "RegionType", "RegionTypeCap", "SparseArea", "decode_iova_ranges", "decode_region_caps",
]

CONTAINER_PATH = "/dev/vfio/vfio"
IOMMUFD_PATH = "/dev/iommu"
CDEV_DIR = Path("/dev/vfio/devices")


# ---------------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroupStatus:
    """What VFIO_GROUP_GET_STATUS says about a group."""

    flags: GroupFlag

    @property
    def viable(self) -> bool:
        """Every device of the group is bound to a VFIO driver (or none)."""
        return bool(self.flags & GroupFlag.VIABLE)

    @property
    def container_set(self) -> bool:
        """The group is attached to a container."""
        return bool(self.flags & GroupFlag.CONTAINER_SET)


@dataclass(frozen=True)
class CapHeader:
    """One capability of an info chain: its id, version and offset in the info buffer."""

    id: int
    version: int
    offset: int


@dataclass(frozen=True)
class SparseArea:
    """An mmap-able window of a region (SPARSE_MMAP capability)."""

    offset: int
    size: int


@dataclass(frozen=True)
class RegionTypeCap:
    """A region's TYPE capability: ``type`` (RegionType, or vendor | PCI_VENDOR) and subtype."""

    type: int
    subtype: int

    @property
    def pci_vendor(self) -> int | None:
        """The PCI vendor id for vendor-specific types, else None."""
        if self.type & _vfio.REGION_TYPE_PCI_VENDOR:
            return self.type & 0xFFFF
        return None


@dataclass(frozen=True)
class RegionCaps:
    """The decoded capability chain of a region."""

    headers: tuple[CapHeader, ...] = ()
    sparse_mmap: tuple[SparseArea, ...] | None = None
    type: RegionTypeCap | None = None
    msix_mappable: bool = False


@dataclass(frozen=True)
class RegionInfo:
    """VFIO_DEVICE_GET_REGION_INFO of one region."""

    index: int
    flags: RegionFlag
    size: int
    offset: int  # of the region within the device fd (for pread/pwrite/mmap)
    caps: RegionCaps

    @property
    def name(self) -> str:
        """``BAR2``, ``CONFIG``, ... or ``region 9`` for device-specific ones."""
        try:
            return RegionIndex(self.index).name
        except ValueError:
            return f"region {self.index}"

    @property
    def readable(self) -> bool:
        return bool(self.flags & RegionFlag.READ)

    @property
    def writable(self) -> bool:
        return bool(self.flags & RegionFlag.WRITE)

    @property
    def mmappable(self) -> bool:
        return bool(self.flags & RegionFlag.MMAP)


@dataclass(frozen=True)
class DeviceInfo:
    """VFIO_DEVICE_GET_INFO."""

    flags: DeviceFlag
    num_regions: int
    num_irqs: int
    caps: tuple[CapHeader, ...]

    @property
    def resettable(self) -> bool:
        """The device supports VFIO_DEVICE_RESET."""
        return bool(self.flags & DeviceFlag.RESET)


@dataclass(frozen=True)
class IrqInfo:
    """VFIO_DEVICE_GET_IRQ_INFO of one interrupt index."""

    index: int
    flags: IrqFlag
    count: int


@dataclass(frozen=True)
class IommuInfo:
    """VFIO_IOMMU_GET_INFO: supported IOMMU page sizes and usable IOVA ranges (end inclusive)."""

    flags: IommuInfoFlag
    iova_pgsizes: int
    iova_ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class DmaRange:
    """A slice of a BAR for dma-buf export (both page aligned)."""

    offset: int
    length: int


def _headers(raw: bytes, cap_offset: int, struct_size: int) -> tuple[CapHeader, ...]:
    return tuple(CapHeader(*c) for c in _vfio.cap_chain(raw, cap_offset, struct_size))


def decode_region_caps(raw: bytes, cap_offset: int) -> RegionCaps:
    """Decodes the capability chain of a region info buffer (struct + caps, as the kernel wrote).

    Raises ValueError for a malformed chain (out of bounds, looping, truncated payloads).
    Unknown capability ids are listed in ``headers`` and otherwise ignored.
    """
    headers = _headers(raw, cap_offset, _vfio.REGION_INFO_SIZE)
    sparse = None
    rtype = None
    msix = False
    for cap in headers:
        if cap.id == RegionCap.SPARSE_MMAP and sparse is None:
            sparse = tuple(SparseArea(o, s) for o, s in _vfio.decode_sparse_mmap(raw, cap.offset))
        elif cap.id == RegionCap.TYPE and rtype is None:
            rtype = RegionTypeCap(*_vfio.decode_region_type(raw, cap.offset))
        elif cap.id == RegionCap.MSIX_MAPPABLE:
            msix = True
    return RegionCaps(headers, sparse, rtype, msix)


def decode_iova_ranges(raw: bytes, cap_offset: int) -> tuple[tuple[int, int], ...]:
    """The usable IOVA ranges ``(start, end)`` (end inclusive) from a VFIO_IOMMU_GET_INFO buffer.

    Empty when the chain has no IOVA_RANGE capability; ValueError for a malformed chain.
    """
    for cap in _headers(raw, cap_offset, _vfio.IOMMU_INFO_SIZE):
        if cap.id == _vfio.IOMMU_CAP_IOVA_RANGE:
            return tuple(_vfio.decode_iova_ranges(raw, cap.offset))
    return ()


def _open(path: str | os.PathLike, missing: str, unsupported_if_missing: bool = False) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        err = exc.errno or errno.EIO
        detail = missing if err == errno.ENOENT else ""
        if err == errno.ENOENT and unsupported_if_missing:
            raise Unsupported("OPEN", {"path": str(path)}, err, detail) from exc
        raise ioctl_error("OPEN", {"path": str(path)}, err, detail, unsupported=frozenset()) from exc


class _FdOwner(OwnedFd):
    """An owned fd that also closes what was opened through it (devices, mappings, DMA
    buffers), and refuses to be entered again once closed."""

    def _close_children(self) -> None:
        """Closes what depends on this fd (subclasses)."""

    def close(self) -> None:
        """Releases everything opened through this object, then the fd; harmless twice."""
        if self.closed:
            return
        try:
            self._close_children()
        finally:
            super().close()

    def __enter__(self):
        self.fd  # noqa: B018 - raises ClosedError when closed
        return self

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nowhere to report from a finalizer
                pass


# ---------------------------------------------------------------------------------------------
# Container (legacy type1 interface) and DMA buffers
# ---------------------------------------------------------------------------------------------

class Container(_FdOwner):
    """A VFIO container (``/dev/vfio/vfio``): the IOMMU context groups are attached to."""

    _kind = "VFIO container"

    def __init__(self, path: str = CONTAINER_PATH) -> None:
        super().__init__(_open(path, "no VFIO container node: is the vfio module loaded?",
                               unsupported_if_missing=True))
        self.path = path
        self._buffers: list[DmaBuffer] = []

    def api_version(self) -> int:
        """VFIO_GET_API_VERSION (0 on every kernel so far)."""
        return _vfio.get_api_version(self.fd)

    def check_extension(self, extension: Extension | int) -> int:
        """VFIO_CHECK_EXTENSION: >0 when supported (for IOMMU types: once a group is attached)."""
        return _vfio.check_extension(self.fd, extension)

    def set_iommu(self, iommu_type: Extension | int = Extension.TYPE1v2) -> None:
        """VFIO_SET_IOMMU (after at least one group was attached with Group.set_container)."""
        _vfio.set_iommu(self.fd, iommu_type)

    def iommu_info(self) -> IommuInfo:
        """VFIO_IOMMU_GET_INFO with its IOVA-range capability."""
        flags, pgsizes, cap_offset, raw = _vfio.iommu_get_info(self.fd)
        ranges = decode_iova_ranges(raw, cap_offset) if flags & IommuInfoFlag.CAPS else ()
        return IommuInfo(IommuInfoFlag(flags), pgsizes, ranges)

    def map_dma(self, vaddr: int, iova: int, size: int,
                flags: DmaFlag = DmaFlag.READ | DmaFlag.WRITE) -> None:
        """VFIO_IOMMU_MAP_DMA of caller-owned memory (see :meth:`dma_buffer` for owned memory)."""
        _vfio.iommu_map_dma(self.fd, vaddr, iova, size, flags)

    def unmap_dma(self, iova: int, size: int) -> int:
        """VFIO_IOMMU_UNMAP_DMA; returns the bytes unmapped."""
        return _vfio.iommu_unmap_dma(self.fd, iova, size)

    def unmap_all(self) -> int:
        """VFIO_IOMMU_UNMAP_DMA with the ALL flag (needs the UNMAP_ALL extension)."""
        return _vfio.iommu_unmap_dma(self.fd, 0, 0, _vfio.UNMAP_FLAG_ALL)

    def dma_buffer(self, size: int, iova: int,
                   flags: DmaFlag = DmaFlag.READ | DmaFlag.WRITE) -> DmaBuffer:
        """Locked anonymous memory of ``size`` bytes, mapped for the device at ``iova``."""
        memory = Mapping.anonymous(size, True, f"DMA@{iova:#x}")
        try:
            self.map_dma(memory.address, iova, size, flags)
        except BaseException:
            memory.close()
            raise
        buffer = DmaBuffer(self, memory, iova)
        self._buffers.append(buffer)
        return buffer

    def _forget(self, buffer: DmaBuffer) -> None:
        if buffer in self._buffers:
            self._buffers.remove(buffer)

    def _close_children(self) -> None:
        for buffer in list(self._buffers):
            buffer._release(strict=False)


class DmaBuffer:
    """Process memory mapped at an IOVA of a container; unmapped from the IOMMU on close.

    ``memory`` is a :class:`Mapping` (typed accesses, buffer protocol) of the pages the
    device sees at ``iova``.
    """

    def __init__(self, container: Container, memory: Mapping, iova: int) -> None:
        self.container = container
        self.memory = memory
        self.iova = iova
        self.size = len(memory)

    @property
    def closed(self) -> bool:
        return self.memory.closed

    def close(self) -> None:
        """UNMAP_DMA, then release the memory; harmless twice."""
        self._release(strict=True)

    def _release(self, strict: bool) -> None:
        if self.memory.closed:
            return
        try:
            if not self.container.closed:
                self.container.unmap_dma(self.iova, self.size)
        except IoctlError:
            # While the container closes, its IOMMU may already be gone with the last group
            # (and the mapping with it); only an explicit close reports the failure.
            if strict:
                raise
        finally:
            self.container._forget(self)
            self.memory.close()

    def __enter__(self) -> DmaBuffer:
        if self.closed:
            raise ClosedError(f"DMA buffer at {self.iova:#x} is closed")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DmaBuffer iova={self.iova:#x} size={self.size:#x}{' closed' if self.closed else ''}>"


# ---------------------------------------------------------------------------------------------
# Group
# ---------------------------------------------------------------------------------------------

class Group(_FdOwner):
    """A VFIO group (``/dev/vfio/N``): the unit of ownership; hands out device fds."""

    _kind = "VFIO group"

    def __init__(self, group: int | str) -> None:
        self.path = f"/dev/vfio/{group}" if isinstance(group, int) else str(group)
        super().__init__(_open(self.path, "no such VFIO group: is the device bound to vfio-pci?"))
        self._devices: list[Device] = []

    @classmethod
    def of(cls, address: str) -> Group:
        """The group of the PCI function at ``address`` (found through sysfs)."""
        return cls(str(PciDevice(address).vfio_group_path))

    def status(self) -> GroupStatus:
        """VFIO_GROUP_GET_STATUS."""
        return GroupStatus(GroupFlag(_vfio.group_get_status(self.fd)))

    def set_container(self, container: Container) -> None:
        """VFIO_GROUP_SET_CONTAINER."""
        _vfio.group_set_container(self.fd, container.fd)

    def unset_container(self) -> None:
        """VFIO_GROUP_UNSET_CONTAINER."""
        _vfio.group_unset_container(self.fd)

    def device(self, address: str) -> Device:
        """VFIO_GROUP_GET_DEVICE_FD: the device ``address`` (after SET_IOMMU)."""
        device = Device(_vfio.group_get_device_fd(self.fd, address), address)
        self._devices.append(device)
        return device

    def _close_children(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()


# ---------------------------------------------------------------------------------------------
# Device
# ---------------------------------------------------------------------------------------------

class Device(_FdOwner):
    """A VFIO device fd: info, regions (mmap, pread/pwrite, config space), IRQs, features."""

    _kind = "VFIO device"

    def __init__(self, fd: int, name: str) -> None:
        super().__init__(fd)
        self.name = name
        self.devid: int | None = None  # iommufd device id (cdev devices)
        self._mappings: list[Mapping] = []
        self._regions: dict[int, RegionInfo] = {}

    @classmethod
    def open_cdev(cls, address: str, iommufd: IommuFd) -> Device:
        """Opens the function's ``/dev/vfio/devices/vfioN`` and binds it to ``iommufd``.

        Unsupported (with the reason) when the kernel has no VFIO device cdev.
        """
        pci = PciDevice(address)
        name = pci.vfio_cdev_name()
        if name is None:
            raise Unsupported("OPEN", {"path": str(pci.path / "vfio-dev")}, errno.ENOENT,
                              "no VFIO device cdev for this function: the kernel lacks "
                              "CONFIG_VFIO_DEVICE_CDEV/IOMMUFD, or it is not bound to vfio-pci")
        device = cls(_open(CDEV_DIR / name, "VFIO cdev node missing from /dev", True), address)
        try:
            device.devid = _vfio.device_bind_iommufd(device.fd, iommufd.fd)
        except BaseException:
            device.close()
            raise
        return device

    def attach_ioas(self, pt_id: int) -> int:
        """VFIO_DEVICE_ATTACH_IOMMUFD_PT (cdev devices); returns the page table id in use."""
        return _vfio.device_attach_iommufd_pt(self.fd, pt_id)

    def detach_ioas(self) -> None:
        """VFIO_DEVICE_DETACH_IOMMUFD_PT."""
        _vfio.device_detach_iommufd_pt(self.fd)

    # ---- info ----

    def info(self) -> DeviceInfo:
        """VFIO_DEVICE_GET_INFO."""
        flags, num_regions, num_irqs, cap_offset, raw = _vfio.device_get_info(self.fd)
        caps = _headers(raw, cap_offset, _vfio.DEVICE_INFO_SIZE) if flags & DeviceFlag.CAPS else ()
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

    # ---- features ----

    def probe_feature(self, feature: Feature | int, op: FeatureOp = FeatureOp.GET) -> None:
        """VFIO_DEVICE_FEATURE with PROBE|op; Unsupported when the device lacks it."""
        _vfio.device_feature(self.fd, FeatureOp.PROBE | op | int(feature), b"")

    def supports_feature(self, feature: Feature | int, op: FeatureOp = FeatureOp.GET) -> bool:
        """True when :meth:`probe_feature` succeeds, False when it says Unsupported."""
        try:
            self.probe_feature(feature, op)
        except Unsupported:
            return False
        return True

    def get_feature(self, feature: Feature | int, data: bytes = b"", out_size: int = 0) -> tuple[int, bytes]:
        """VFIO_DEVICE_FEATURE(GET): returns (ioctl return value, data area after the call)."""
        return _vfio.device_feature(self.fd, FeatureOp.GET | int(feature), data, out_size)

    def set_feature(self, feature: Feature | int, data: bytes = b"") -> int:
        """VFIO_DEVICE_FEATURE(SET); returns the ioctl's return value."""
        return _vfio.device_feature(self.fd, FeatureOp.SET | int(feature), data)[0]

    def export_dma_buf_fd(self, region: RegionIndex | int,
                          ranges: Iterable[DmaRange | tuple[int, int]],
                          open_flags: int = os.O_RDWR | os.O_CLOEXEC, flags: int = 0) -> int:
        """VFIO_DEVICE_FEATURE(GET|DMA_BUF) returning the raw dma-buf fd (the caller owns it)."""
        pairs = [(r.offset, r.length) if isinstance(r, DmaRange) else (int(r[0]), int(r[1]))
                 for r in ranges]
        return _vfio.device_feature_dma_buf(self.fd, int(region), pairs, open_flags, flags)

    def export_dma_buf(self, region: RegionIndex | int,
                       ranges: Iterable[DmaRange | tuple[int, int]],
                       open_flags: int = os.O_RDWR | os.O_CLOEXEC) -> DmaBuf:
        """Exports ``ranges`` of a BAR as one dma-buf, owned by the returned DmaBuf.

        The exporter (vfio_pci_core) has no mmap: the dma-buf is for peer-to-peer importers.
        It is revoked when the device is reset, loses memory decode, or is closed.
        """
        fd = self.export_dma_buf_fd(region, ranges, open_flags)
        try:
            return DmaBuf(fd)
        except BaseException:
            os.close(fd)
            raise

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
        try:
            data = os.pread(self.fd, size, info.offset + offset)
        except OSError as exc:
            raise ioctl_error("REGION_READ", {"region": info.name, "offset": offset, "size": size},
                              exc.errno or errno.EIO) from exc
        if len(data) != size:
            raise ioctl_error("REGION_READ", {"region": info.name, "offset": offset, "size": size},
                              errno.EIO, f"short read: {len(data)} bytes")
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


# ---------------------------------------------------------------------------------------------
# iommufd
# ---------------------------------------------------------------------------------------------

class IommuFd(_FdOwner):
    """``/dev/iommu``: IO address spaces for cdev-opened VFIO devices.

    Unsupported, naming /dev/iommu, on kernels built without CONFIG_IOMMUFD (the lab's).
    """

    _kind = "iommufd"

    def __init__(self, path: str = IOMMUFD_PATH) -> None:
        super().__init__(_open(path, "no iommufd: the kernel lacks CONFIG_IOMMUFD "
                                     "(or the iommufd module is not loaded)",
                               unsupported_if_missing=True))
        self.path = path

    def alloc_ioas(self) -> int:
        """IOMMU_IOAS_ALLOC: a new IO address space id."""
        return _vfio.ioas_alloc(self.fd)

    def destroy(self, object_id: int) -> None:
        """IOMMU_DESTROY of an IOAS (or other iommufd object)."""
        _vfio.iommufd_destroy(self.fd, object_id)

    def map(self, ioas_id: int, vaddr: int, length: int, iova: int | None = None,
            flags: IoasMapFlag = IoasMapFlag.READABLE | IoasMapFlag.WRITEABLE) -> int:
        """IOMMU_IOAS_MAP; a given ``iova`` is used as is (FIXED_IOVA); returns the IOVA."""
        if iova is not None:
            flags |= IoasMapFlag.FIXED_IOVA
        return _vfio.ioas_map(self.fd, ioas_id, vaddr, length, iova or 0, flags)

    def unmap(self, ioas_id: int, iova: int, length: int) -> int:
        """IOMMU_IOAS_UNMAP; returns the bytes unmapped."""
        return _vfio.ioas_unmap(self.fd, ioas_id, iova, length)
