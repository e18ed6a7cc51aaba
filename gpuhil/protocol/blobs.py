"""The blob commands of virtio-gpu (VIRTIO_GPU_F_RESOURCE_BLOB): create, scanout from, map
into and unmap from the host-visible window.  Import them from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from gpuhil.protocol.constants import CtrlType
from gpuhil.protocol.layouts import MemEntry, Rect, nested, pack_entries, unpack_entries, words
from gpuhil.protocol.message import Message, message

__all__ = ["ResourceCreateBlob", "ResourceMapBlob", "ResourceUnmapBlob", "SetScanoutBlob"]


@message
class ResourceCreateBlob(Message):
    """VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB followed by its mem entries (GUEST blobs).

    nr_entries None means len(entries); set it to lie about the count.
    """
    TYPE = CtrlType.CMD_RESOURCE_CREATE_BLOB
    resource_id: int = 0
    blob_mem: int = 0
    blob_flags: int = 0
    blob_id: int = 0
    size: int = 0
    entries: tuple[MemEntry, ...] = ()
    nr_entries: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        count = len(self.entries) if self.nr_entries is None else self.nr_entries
        return ((self.resource_id, self.blob_mem, self.blob_flags, count, self.blob_id,
                 self.size), pack_entries(self.entries))

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        rid, mem, flags, count, blob_id, size = fields
        entries = unpack_entries(tail)
        return cls(rid, mem, flags, blob_id, size, entries,
                   None if count == len(entries) else count, hdr=hdr)


@message
class SetScanoutBlob(Message):
    """VIRTIO_GPU_CMD_SET_SCANOUT_BLOB."""
    TYPE = CtrlType.CMD_SET_SCANOUT_BLOB
    r: Rect = nested(Rect)
    scanout_id: int = 0
    resource_id: int = 0
    width: int = 0
    height: int = 0
    format: int = 0
    strides: tuple[int, int, int, int] = words(4)
    offsets: tuple[int, int, int, int] = words(4)


@message
class ResourceMapBlob(Message):
    """VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB (offset into the host-visible shm region)."""
    TYPE = CtrlType.CMD_RESOURCE_MAP_BLOB
    resource_id: int = 0
    offset: int = 0


@message
class ResourceUnmapBlob(Message):
    """VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB."""
    TYPE = CtrlType.CMD_RESOURCE_UNMAP_BLOB
    resource_id: int = 0
