"""The responses of virtio-gpu (RESP_OK_* and RESP_ERR_*) and which one a command gets on
success (:func:`ok_response`, :func:`response_size`).  Import them from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

import dataclasses

from gpuhil.protocol.constants import MAP_CACHE_MASK, CtrlType, ProtocolError, ctrl_name
from gpuhil.protocol.layouts import DISPLAY_ONE, LAYOUTS, DisplayOne, Rect, layout
from gpuhil.protocol.message import Message, message

__all__ = ["RespErr", "RespErrInvalidContextId", "RespErrInvalidParameter",
           "RespErrInvalidResourceId", "RespErrInvalidScanoutId", "RespErrOutOfMemory",
           "RespErrUnspec", "RespOkCapset", "RespOkCapsetInfo", "RespOkDisplayInfo",
           "RespOkEdid", "RespOkMapInfo", "RespOkNodata", "RespOkResourceUuid", "ok_response",
           "response_size"]


@message
class RespOkNodata(Message):
    """VIRTIO_GPU_RESP_OK_NODATA."""
    TYPE = CtrlType.RESP_OK_NODATA


@message
class RespOkDisplayInfo(Message):
    """VIRTIO_GPU_RESP_OK_DISPLAY_INFO: up to 16 scanouts; decoding always yields 16."""
    TYPE = CtrlType.RESP_OK_DISPLAY_INFO
    pmodes: tuple[DisplayOne, ...] = ()

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (), b"".join(DISPLAY_ONE.pack(*dataclasses.astuple(m.r), m.enabled, m.flags)
                            for m in self.pmodes)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        return cls(tuple(DisplayOne(Rect(x, y, w, h), en, fl)
                         for x, y, w, h, en, fl in DISPLAY_ONE.iter_unpack(tail)), hdr=hdr)


@message
class RespOkCapsetInfo(Message):
    """VIRTIO_GPU_RESP_OK_CAPSET_INFO."""
    TYPE = CtrlType.RESP_OK_CAPSET_INFO
    capset_id: int = 0
    capset_max_version: int = 0
    capset_max_size: int = 0


@message
class RespOkCapset(Message):
    """VIRTIO_GPU_RESP_OK_CAPSET: the header followed by the capset data."""
    TYPE = CtrlType.RESP_OK_CAPSET
    capset_data: bytes = b""

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (), bytes(self.capset_data)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        return cls(bytes(tail), hdr=hdr)


@message
class RespOkEdid(Message):
    """VIRTIO_GPU_RESP_OK_EDID: edid holds the first ``size`` bytes of the 1024-byte block.

    size None means len(edid); decoding returns size only when it exceeds the block.
    """
    TYPE = CtrlType.RESP_OK_EDID
    edid: bytes = b""
    size: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (len(self.edid) if self.size is None else self.size,), bytes(self.edid)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        edid = bytes(tail[:min(fields[0], len(tail))])
        return cls(edid, None if fields[0] == len(edid) else fields[0], hdr=hdr)


@message
class RespOkResourceUuid(Message):
    """VIRTIO_GPU_RESP_OK_RESOURCE_UUID (16 bytes; shorter input is zero padded)."""
    TYPE = CtrlType.RESP_OK_RESOURCE_UUID
    uuid: bytes = bytes(16)

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (), bytes(self.uuid)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        return cls(bytes(tail), hdr=hdr)


@message
class RespOkMapInfo(Message):
    """VIRTIO_GPU_RESP_OK_MAP_INFO (map_info & MAP_CACHE_MASK is a MapCache)."""
    TYPE = CtrlType.RESP_OK_MAP_INFO
    map_info: int = 0

    @property
    def cache(self) -> int:
        """The caching type of the mapping (a MapCache value when the device is sane)."""
        return self.map_info & MAP_CACHE_MASK


@message
class RespErr(Message):
    """Base of the VIRTIO_GPU_RESP_ERR_* responses (header only)."""


@message
class RespErrUnspec(RespErr):
    """VIRTIO_GPU_RESP_ERR_UNSPEC."""
    TYPE = CtrlType.RESP_ERR_UNSPEC


@message
class RespErrOutOfMemory(RespErr):
    """VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY."""
    TYPE = CtrlType.RESP_ERR_OUT_OF_MEMORY


@message
class RespErrInvalidScanoutId(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID."""
    TYPE = CtrlType.RESP_ERR_INVALID_SCANOUT_ID


@message
class RespErrInvalidResourceId(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID."""
    TYPE = CtrlType.RESP_ERR_INVALID_RESOURCE_ID


@message
class RespErrInvalidContextId(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID."""
    TYPE = CtrlType.RESP_ERR_INVALID_CONTEXT_ID


@message
class RespErrInvalidParameter(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER."""
    TYPE = CtrlType.RESP_ERR_INVALID_PARAMETER


# ------------------------------------------------------------------ which response a command gets

_OK_RESPONSES = {
    CtrlType.CMD_GET_DISPLAY_INFO: CtrlType.RESP_OK_DISPLAY_INFO,
    CtrlType.CMD_GET_CAPSET_INFO: CtrlType.RESP_OK_CAPSET_INFO,
    CtrlType.CMD_GET_CAPSET: CtrlType.RESP_OK_CAPSET,
    CtrlType.CMD_GET_EDID: CtrlType.RESP_OK_EDID,
    CtrlType.CMD_RESOURCE_ASSIGN_UUID: CtrlType.RESP_OK_RESOURCE_UUID,
    CtrlType.CMD_RESOURCE_MAP_BLOB: CtrlType.RESP_OK_MAP_INFO,
}
_CURSOR_COMMANDS = (CtrlType.CMD_UPDATE_CURSOR, CtrlType.CMD_MOVE_CURSOR)


def ok_response(type: int) -> CtrlType | None:
    """The response type a device sends when the command succeeds (RESP_OK_NODATA for
    most), None for the cursor queue's commands, which get no response."""
    layout(type)  # unknown types raise
    if type in _CURSOR_COMMANDS:
        return None
    if type >= CtrlType.RESP_OK_NODATA:
        raise ProtocolError(f"{ctrl_name(type)} is a response, not a command", type=type)
    return _OK_RESPONSES.get(type, CtrlType.RESP_OK_NODATA)


def response_size(type: int, capset_size: int = 0) -> int:
    """Bytes to reserve for the success response of a command (0 for cursor commands);
    GET_CAPSET's response carries capset_size bytes of data (the capset's max_size)."""
    resp = ok_response(type)
    if resp is None:
        return 0
    return LAYOUTS[resp].size + (capset_size if resp == CtrlType.RESP_OK_CAPSET else 0)
