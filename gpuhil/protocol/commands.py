"""The 2D control commands of virtio-gpu: display info, 2D resources, scanout, flush,
transfer, backing, capsets, EDID and resource UUIDs.  Import them from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from gpuhil.protocol.constants import CtrlType
from gpuhil.protocol.layouts import MemEntry, Rect, nested, pack_entries, unpack_entries
from gpuhil.protocol.message import Message, message

__all__ = ["GetCapset", "GetCapsetInfo", "GetDisplayInfo", "GetEdid", "ResourceAssignUuid",
           "ResourceAttachBacking", "ResourceCreate2D", "ResourceDetachBacking",
           "ResourceFlush", "ResourceUnref", "SetScanout", "TransferToHost2D"]


@message
class GetDisplayInfo(Message):
    """VIRTIO_GPU_CMD_GET_DISPLAY_INFO (header only)."""
    TYPE = CtrlType.CMD_GET_DISPLAY_INFO


@message
class ResourceCreate2D(Message):
    """VIRTIO_GPU_CMD_RESOURCE_CREATE_2D."""
    TYPE = CtrlType.CMD_RESOURCE_CREATE_2D
    resource_id: int = 0
    format: int = 0
    width: int = 0
    height: int = 0


@message
class ResourceUnref(Message):
    """VIRTIO_GPU_CMD_RESOURCE_UNREF."""
    TYPE = CtrlType.CMD_RESOURCE_UNREF
    resource_id: int = 0


@message
class SetScanout(Message):
    """VIRTIO_GPU_CMD_SET_SCANOUT."""
    TYPE = CtrlType.CMD_SET_SCANOUT
    r: Rect = nested(Rect)
    scanout_id: int = 0
    resource_id: int = 0


@message
class ResourceFlush(Message):
    """VIRTIO_GPU_CMD_RESOURCE_FLUSH."""
    TYPE = CtrlType.CMD_RESOURCE_FLUSH
    r: Rect = nested(Rect)
    resource_id: int = 0


@message
class TransferToHost2D(Message):
    """VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D."""
    TYPE = CtrlType.CMD_TRANSFER_TO_HOST_2D
    r: Rect = nested(Rect)
    offset: int = 0
    resource_id: int = 0


@message
class ResourceAttachBacking(Message):
    """VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING followed by its mem entries.

    nr_entries None means len(entries); set it to lie about the count.
    """
    TYPE = CtrlType.CMD_RESOURCE_ATTACH_BACKING
    resource_id: int = 0
    entries: tuple[MemEntry, ...] = ()
    nr_entries: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        count = len(self.entries) if self.nr_entries is None else self.nr_entries
        return (self.resource_id, count), pack_entries(self.entries)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        entries = unpack_entries(tail)
        return cls(fields[0], entries, None if fields[1] == len(entries) else fields[1], hdr=hdr)


@message
class ResourceDetachBacking(Message):
    """VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING."""
    TYPE = CtrlType.CMD_RESOURCE_DETACH_BACKING
    resource_id: int = 0


@message
class GetCapsetInfo(Message):
    """VIRTIO_GPU_CMD_GET_CAPSET_INFO."""
    TYPE = CtrlType.CMD_GET_CAPSET_INFO
    capset_index: int = 0


@message
class GetCapset(Message):
    """VIRTIO_GPU_CMD_GET_CAPSET."""
    TYPE = CtrlType.CMD_GET_CAPSET
    capset_id: int = 0
    capset_version: int = 0


@message
class GetEdid(Message):
    """VIRTIO_GPU_CMD_GET_EDID (needs VIRTIO_GPU_F_EDID)."""
    TYPE = CtrlType.CMD_GET_EDID
    scanout: int = 0


@message
class ResourceAssignUuid(Message):
    """VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID (needs VIRTIO_GPU_F_RESOURCE_UUID)."""
    TYPE = CtrlType.CMD_RESOURCE_ASSIGN_UUID
    resource_id: int = 0
