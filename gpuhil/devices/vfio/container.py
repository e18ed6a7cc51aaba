"""The VFIO container (``/dev/vfio/vfio``, legacy type1 interface) and the DMA buffers mapped in it."""
from __future__ import annotations

from gpuhil import _vfio
from gpuhil._mapping import Mapping
from gpuhil._vfio import DmaFlag, Extension, IommuInfoFlag
from gpuhil.devices.vfio.info import IommuInfo, decode_iova_ranges
from gpuhil.devices.vfio.owner import FdOwner, open_node
from gpuhil.errors import ClosedError, IoctlError

__all__ = ["CONTAINER_PATH", "Container", "DmaBuffer"]

CONTAINER_PATH = "/dev/vfio/vfio"


class Container(FdOwner):
    """A VFIO container (``/dev/vfio/vfio``): the IOMMU context groups are attached to."""

    _kind = "VFIO container"

    def __init__(self, path: str = CONTAINER_PATH) -> None:
        super().__init__(open_node(path, "no VFIO container node: is the vfio module loaded?",
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
