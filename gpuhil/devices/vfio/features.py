"""VFIO_DEVICE_FEATURE on a device fd: PROBE, GET and SET of any feature, and DMA_BUF typed.

DMA_BUF (``struct vfio_device_feature_dma_buf``: region index, open flags, flags and a list of
``(offset, length)`` ranges) is the one feature with a typed request here: :meth:`dma_buf_feature`
sends it with any op, :meth:`export_dma_buf` is the usual GET that returns the dma-buf.
"""
from __future__ import annotations

import os
from typing import Iterable

from gpuhil import _vfio
from gpuhil._vfio import Feature, FeatureOp, RegionIndex
from gpuhil.devices.dmabuf import DmaBuf
from gpuhil.devices.vfio.info import DmaRange
from gpuhil.errors import Unsupported

__all__ = ["DeviceFeatures", "DEFAULT_OPEN_FLAGS"]

#: The dma-buf's file flags unless a caller asks otherwise.
DEFAULT_OPEN_FLAGS = os.O_RDWR | os.O_CLOEXEC


class DeviceFeatures:
    """The VFIO_DEVICE_FEATURE methods of :class:`~gpuhil.devices.vfio.Device` (needs ``fd``)."""

    __slots__ = ()

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

    def dma_buf_feature(self, region: RegionIndex | int,
                        ranges: Iterable[DmaRange | tuple[int, int]],
                        op: FeatureOp | int = FeatureOp.GET, *,
                        open_flags: int = DEFAULT_OPEN_FLAGS, flags: int = 0) -> DmaBuf | int:
        """VFIO_DEVICE_FEATURE(``op``|DMA_BUF) over ``ranges`` of ``region``.

        A plain GET returns the new dma-buf (owned by the returned :class:`DmaBuf`); any other
        op (PROBE|GET, SET, GET|SET, ...) returns the ioctl's return value.  ``flags`` must be 0
        for the kernel and ``open_flags`` are the dma-buf's file flags: both are sent as given,
        for negative tests.  A refusal raises IoctlError naming op, region and ranges.
        """
        op = int(op)
        if op & ~int(FeatureOp.GET | FeatureOp.SET | FeatureOp.PROBE):
            raise ValueError(f"DMA_BUF op must combine GET, SET and PROBE, not {op:#x}")
        pairs = [(r.offset, r.length) for r in map(DmaRange.of, ranges)]
        ret = _vfio.device_feature_dma_buf(self.fd, int(region), pairs, open_flags, flags, op)
        if op != FeatureOp.GET:
            return ret
        try:
            return DmaBuf(ret)
        except BaseException:
            os.close(ret)
            raise

    def export_dma_buf(self, region: RegionIndex | int,
                       ranges: Iterable[DmaRange | tuple[int, int]],
                       open_flags: int = DEFAULT_OPEN_FLAGS) -> DmaBuf:
        """Exports ``ranges`` of a BAR as one dma-buf (DMA_BUF GET), owned by the returned DmaBuf.

        The exporter (vfio_pci_core) has no mmap: the dma-buf is for peer-to-peer importers.
        It is revoked when the device is reset, loses memory decode, or is closed.
        """
        return self.dma_buf_feature(region, ranges, FeatureOp.GET, open_flags=open_flags)
