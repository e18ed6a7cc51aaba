"""The virtio-gpu device protocol (linux/virtio_gpu.h, Linux 7.2) as typed Python objects.

Every control and cursor command and every response is a dataclass (``ResourceCreate2D``,
``RespCapsetInfo`` ...) whose ``hdr`` is the :class:`CtrlHdr` (flags, fence_id, ctx_id,
ring_idx, settable on every message).  :func:`encode` / :func:`encode_into` /
:func:`decode` convert one message to and from little-endian bytes in any buffer;
:class:`CommandBatch` and :func:`decode_batch` do many at native speed for the raw virtqueue
driver; :func:`malformed` and :class:`RawMessage` build deliberately wrong messages for
negative tests.  The encoding itself is the table-driven C core in ``gpuhil._protocol``,
whose ``ABI`` dict (re-exported here) records every size, offset and constant it was
compiled with.
"""
from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import ClassVar

from gpuhil import _protocol
from gpuhil.protocol.batch import (BatchLayout, CommandBatch, DecodedBatch, decode_batch,
                                   encode_batch)
from gpuhil.protocol.constants import (ABI, CONTEXT_INIT_CAPSET_ID_MASK, EVENT_DISPLAY,
                                       MAP_CACHE_MASK, MAX_SCANOUTS, RESOURCE_FLAG_Y_0_TOP,
                                       ROW_WIDTH, BlobFlag, BlobMem, CapsetId, Column, CtrlType,
                                       Feature, Format, HdrFlag, Layout, MapCache,
                                       ProtocolError, ShmId, _LAYOUTS, bytes_view, layout)
from gpuhil.protocol.messages import *  # noqa: F401,F403 - the message classes
from gpuhil.protocol.messages import (_CLASSES, HDR, MESSAGE_CLASSES, CtrlHdr, Message,
                                      RawMessage, message_class)
from gpuhil.protocol.messages import __all__ as _MESSAGE_NAMES

__all__ = [
    "ABI", "ROW_WIDTH", "ProtocolError", "CtrlType", "Feature", "HdrFlag", "CapsetId", "BlobMem",
    "BlobFlag", "MapCache", "Format", "ShmId", "Column", "Layout", "layout",
    "MAP_CACHE_MASK", "MAX_SCANOUTS", "RESOURCE_FLAG_Y_0_TOP", "CONTEXT_INIT_CAPSET_ID_MASK",
    "EVENT_DISPLAY", "VirtioGpuConfig",
    "encode", "encode_into", "encoded_size", "decode", "malformed", "ok_response",
    "response_size",
    "CommandBatch", "BatchLayout", "DecodedBatch", "encode_batch", "decode_batch",
    *_MESSAGE_NAMES,
]


def _message_name(msg: Message) -> str:
    try:
        return CtrlType(msg.type).name
    except ValueError:
        return f"{msg.type:#06x}"


def _encode_parts(msg: Message, view: memoryview, offset: int, fields, tail: bytes) -> int:
    h = msg.hdr
    try:
        return _protocol.encode_one(view, offset, msg.TYPE, h.flags, h.fence_id, h.ctx_id,
                                    h.ring_idx, fields, tail)
    except OverflowError as e:
        raise ProtocolError(f"{_message_name(msg)}: a value does not fit its field ({e})",
                            type=msg.type) from None


def _encode_raw(msg: RawMessage, view: memoryview, offset: int) -> int:
    h = msg.hdr
    end = offset + HDR.size + len(msg.body)
    if offset < 0 or end > len(view):
        raise ProtocolError(f"{_message_name(msg)}: needs {end - offset} bytes, "
                            f"{len(view) - offset} left", type=msg.type,
                            size=len(view) - offset, expected=end - offset)
    try:
        HDR.pack_into(view, offset, msg.ctrl_type, h.flags, h.fence_id, h.ctx_id, h.ring_idx)
    except struct.error as e:
        raise ProtocolError(f"{_message_name(msg)}: header value out of range ({e})",
                            type=msg.type) from None
    view[offset + HDR.size:end] = msg.body
    return end - offset


def encode_into(msg: Message, buf, offset: int = 0) -> int:
    """Write msg at buf[offset:] (any writable buffer: bytearray, memoryview, mmap, array);
    return the number of bytes written.  ProtocolError if it does not fit or a value is
    out of range for its field."""
    view = bytes_view(buf)
    if isinstance(msg, RawMessage):
        return _encode_raw(msg, view, offset)
    fields, tail = msg.wire()
    return _encode_parts(msg, view, offset, fields, tail)


def _size(msg: Message, tail: bytes) -> int:
    lay = _LAYOUTS[msg.TYPE]
    return lay.size + (len(tail) if lay.tail_kind == "trailing" else 0)


def encoded_size(msg: Message) -> int:
    """How many bytes encode(msg) produces."""
    if isinstance(msg, RawMessage):
        return HDR.size + len(msg.body)
    return _size(msg, msg.wire()[1])


def encode(msg: Message) -> bytes:
    """msg as little-endian wire bytes."""
    if isinstance(msg, RawMessage):
        buf = bytearray(HDR.size + len(msg.body))
        _encode_raw(msg, memoryview(buf), 0)
        return bytes(buf)
    fields, tail = msg.wire()
    buf = bytearray(_size(msg, tail))
    _encode_parts(msg, memoryview(buf), 0, fields, tail)
    return bytes(buf)


def decode(buf, offset: int = 0, length: int = -1, *, strict: bool = True,
           allow_unknown: bool = False) -> Message:
    """Decode the message at buf[offset:offset+length] (length -1: to the end).

    strict: the length must be exactly what the type (and its counts) say; otherwise extra
    bytes are ignored and a count larger than the bytes present keeps what is there.
    An unknown type raises ProtocolError unless allow_unknown, which gives a RawMessage.
    """
    view = bytes_view(buf)
    try:
        t, flags, fence_id, ctx_id, ring_idx, toff, tlen, fields = _protocol.decode_one(
            view, offset, length, strict)
    except ProtocolError as e:
        if not (allow_unknown and e.type is not None and e.type not in _CLASSES
                and (e.size or 0) >= HDR.size):
            raise
        end = len(view) if length < 0 else offset + length
        t, flags, fence_id, ctx_id, ring_idx = HDR.unpack_from(view, offset)
        return RawMessage(t, bytes(view[offset + HDR.size:end]),
                          hdr=CtrlHdr(flags, fence_id, ctx_id, ring_idx))
    tail = bytes(view[toff:toff + tlen]) if tlen else b""
    return _CLASSES[t].from_wire(CtrlHdr(flags, fence_id, ctx_id, ring_idx), fields, tail)


def malformed(msg: Message, *, type: int | None = None, length: int | None = None,
              trailing: bytes = b"", patches: dict[int, bytes] | None = None) -> bytes:
    """Encode msg, then break it on purpose, for negative tests.

    type overwrites hdr.type with any u32; length truncates the encoding (or zero-extends
    it); trailing appends bytes; patches ({offset: bytes}) overwrite raw bytes last,
    growing the message if they reach past its end.  Counts (nr_entries, size, nlen) are
    already free fields of the messages that have them.
    """
    out = bytearray(encode(msg))
    if type is not None:
        struct.pack_into("<I", out, 0, type)
    if length is not None:
        out = out[:length] + bytes(max(0, length - len(out)))
    out += trailing
    for off, data in (patches or {}).items():
        if off + len(data) > len(out):
            out += bytes(off + len(data) - len(out))
        out[off:off + len(data)] = data
    return bytes(out)


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
        raise ProtocolError(f"{CtrlType(type).name} is a response, not a command", type=type)
    return _OK_RESPONSES.get(type, CtrlType.RESP_OK_NODATA)


def response_size(type: int, capset_size: int = 0) -> int:
    """Bytes to reserve for the success response of a command (0 for cursor commands);
    GET_CAPSET's response carries capset_size bytes of data (the capset's max_size)."""
    resp = ok_response(type)
    if resp is None:
        return 0
    return _LAYOUTS[resp].size + (capset_size if resp == CtrlType.RESP_OK_CAPSET else 0)


@dataclass
class VirtioGpuConfig:
    """struct virtio_gpu_config (device config space, 20 bytes with blob_alignment)."""
    events_read: int = 0
    events_clear: int = 0
    num_scanouts: int = 0
    num_capsets: int = 0
    blob_alignment: int = 0

    SIZE: ClassVar[int] = ABI["sizeof(struct virtio_gpu_config)"]

    def encode_into(self, buf, offset: int = 0) -> int:
        """Write the 20 bytes at buf[offset:]; return 20."""
        try:
            return _protocol.encode_config(bytes_view(buf), offset, *dataclasses.astuple(self))
        except OverflowError as e:
            raise ProtocolError(f"virtio_gpu_config: a value does not fit its field ({e})") \
                from None

    def encode(self) -> bytes:
        """The 20 little-endian bytes."""
        buf = bytearray(self.SIZE)
        self.encode_into(buf)
        return bytes(buf)

    @classmethod
    def decode(cls, buf, offset: int = 0, *, strict: bool = True) -> VirtioGpuConfig:
        """Read it from buf[offset:]; strict: exactly 20 bytes must be there."""
        return cls(*_protocol.decode_config(bytes_view(buf), offset, strict))
