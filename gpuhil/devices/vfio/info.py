"""What VFIO's info ioctls answer, as frozen dataclasses, and the decoding of their capability chains.

GROUP_GET_STATUS, DEVICE_GET_INFO, DEVICE_GET_REGION_INFO (with SPARSE_MMAP, TYPE and
MSIX_MAPPABLE capabilities), DEVICE_GET_IRQ_INFO and IOMMU_GET_INFO (with its IOVA ranges);
:class:`DmaRange` is one slice of a BAR for dma-buf export.
"""
from __future__ import annotations

from dataclasses import dataclass

from gpuhil import _vfio
from gpuhil._vfio import DeviceFlag, GroupFlag, IommuInfoFlag, IrqFlag, RegionCap, RegionFlag, RegionIndex

__all__ = [
    "CapHeader", "DeviceInfo", "DmaRange", "GroupStatus", "IommuInfo", "IrqInfo", "RegionCaps",
    "RegionInfo", "RegionTypeCap", "SparseArea", "cap_headers", "decode_iova_ranges",
    "decode_region_caps",
]


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

    @classmethod
    def of(cls, value: DmaRange | tuple[int, int]) -> DmaRange:
        """``value`` as a DmaRange (from an ``(offset, length)`` pair); TypeError otherwise."""
        if isinstance(value, DmaRange):
            return value
        try:
            offset, length = value
            return cls(int(offset), int(length))
        except (TypeError, ValueError):
            raise TypeError(f"a dma-buf range is DmaRange or (offset, length), not {value!r}") from None


def cap_headers(raw: bytes, cap_offset: int, struct_size: int) -> tuple[CapHeader, ...]:
    """The capability headers of an info buffer whose fixed struct is ``struct_size`` bytes."""
    return tuple(CapHeader(*c) for c in _vfio.cap_chain(raw, cap_offset, struct_size))


def decode_region_caps(raw: bytes, cap_offset: int) -> RegionCaps:
    """Decodes the capability chain of a region info buffer (struct + caps, as the kernel wrote).

    Raises ValueError for a malformed chain (out of bounds, looping, truncated payloads).
    Unknown capability ids are listed in ``headers`` and otherwise ignored.
    """
    headers = cap_headers(raw, cap_offset, _vfio.REGION_INFO_SIZE)
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
    for cap in cap_headers(raw, cap_offset, _vfio.IOMMU_INFO_SIZE):
        if cap.id == _vfio.IOMMU_CAP_IOVA_RANGE:
            return tuple(_vfio.decode_iova_ranges(raw, cap.offset))
    return ()
