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
from array import array
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import ClassVar, Iterator

from gpuhil import _protocol
from gpuhil.errors import GpuhilError

ABI: dict[str, int] = _protocol.ABI
ROW_WIDTH: int = _protocol.ROW_WIDTH

__all__ = [
    "ABI", "ROW_WIDTH", "ProtocolError", "CtrlType", "Feature", "HdrFlag", "CapsetId", "BlobMem",
    "BlobFlag", "MapCache", "Format", "ShmId", "Column", "Layout", "layout", "CtrlHdr", "Rect",
    "Box", "CursorPos", "MemEntry", "DisplayOne", "Message", "RawMessage", "RespErr",
    "VirtioGpuConfig", "encode", "encode_into", "decode", "malformed", "message_class",
    "CommandBatch", "BatchLayout", "DecodedBatch", "encode_batch", "decode_batch",
]


class ProtocolError(GpuhilError, ValueError):
    """A virtio-gpu message could not be encoded or decoded.

    ``type`` is the control type involved (None if not even a header was there), ``size`` the
    byte count seen, ``expected`` the size the layout needs, ``index`` the message's position
    in a batch.
    """

    def __init__(self, message: str, *, type: int | None = None, size: int | None = None,
                 expected: int | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.type = type
        self.size = size
        self.expected = expected
        self.index = index

    def __reduce__(self):
        return (_rebuild_protocol_error,
                (str(self), self.type, self.size, self.expected, self.index))


def _rebuild_protocol_error(message, type, size, expected, index) -> ProtocolError:
    return ProtocolError(message, type=type, size=size, expected=expected, index=index)


def _consts(prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in ABI.items() if k.startswith(prefix)}


CtrlType = IntEnum("CtrlType", {
    k[len("VIRTIO_GPU_"):]: v for k, v in ABI.items()
    if k.startswith(("VIRTIO_GPU_CMD_", "VIRTIO_GPU_RESP_")) or k == "VIRTIO_GPU_UNDEFINED"},
    module=__name__)
CtrlType.__doc__ = "enum virtio_gpu_ctrl_type: commands (CMD_*) and responses (RESP_*)."
Feature = IntEnum("Feature", _consts("VIRTIO_GPU_F_"), module=__name__)
Feature.__doc__ = "VIRTIO_GPU_F_* feature bit numbers."
HdrFlag = IntFlag("HdrFlag", _consts("VIRTIO_GPU_FLAG_"), module=__name__)
HdrFlag.__doc__ = "virtio_gpu_ctrl_hdr.flags bits (VIRTIO_GPU_FLAG_*)."
CapsetId = IntEnum("CapsetId", _consts("VIRTIO_GPU_CAPSET_"), module=__name__)
CapsetId.__doc__ = "VIRTIO_GPU_CAPSET_* capability set ids."
BlobMem = IntEnum("BlobMem", _consts("VIRTIO_GPU_BLOB_MEM_"), module=__name__)
BlobMem.__doc__ = "resource_create_blob.blob_mem (VIRTIO_GPU_BLOB_MEM_*; 0 is invalid)."
BlobFlag = IntFlag("BlobFlag", _consts("VIRTIO_GPU_BLOB_FLAG_"), module=__name__)
BlobFlag.__doc__ = "resource_create_blob.blob_flags (VIRTIO_GPU_BLOB_FLAG_*)."
MapCache = IntEnum("MapCache", {k: v for k, v in _consts("VIRTIO_GPU_MAP_CACHE_").items()
                                if k != "MASK"}, module=__name__)
MapCache.__doc__ = "resp_map_info.map_info & VIRTIO_GPU_MAP_CACHE_MASK."
Format = IntEnum("Format", _consts("VIRTIO_GPU_FORMAT_"), module=__name__)
Format.__doc__ = "enum virtio_gpu_formats."
ShmId = IntEnum("ShmId", _consts("VIRTIO_GPU_SHM_ID_"), module=__name__)
ShmId.__doc__ = "enum virtio_gpu_shm_id (the host-visible shared memory region of MAP_BLOB)."

MAP_CACHE_MASK: int = ABI["VIRTIO_GPU_MAP_CACHE_MASK"]
MAX_SCANOUTS: int = ABI["VIRTIO_GPU_MAX_SCANOUTS"]
RESOURCE_FLAG_Y_0_TOP: int = ABI["VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP"]
CONTEXT_INIT_CAPSET_ID_MASK: int = ABI["VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK"]
EVENT_DISPLAY: int = ABI["VIRTIO_GPU_EVENT_DISPLAY"]


class Column(IntEnum):
    """Columns of a batch row (ROW_WIDTH uint64 per message); FIELDS is the first scalar field."""
    TYPE = 0
    FLAGS = 1
    FENCE_ID = 2
    CTX_ID = 3
    RING_IDX = 4
    TAIL_OFF = 5
    TAIL_LEN = 6
    FIELDS = _protocol.FIRST_FIELD_COLUMN


@dataclass(frozen=True)
class Layout:
    """The wire layout of one control type, as compiled into gpuhil._protocol.

    ``fields`` are the scalar fields in row order (uapi member designators such as "r.x" or
    "strides[2]"); ``tail`` names the variable part: bytes inside the struct ("inline":
    debug_name, edid, uuid, pmodes) or after it ("trailing": entries, command_stream,
    capset_data), whose element count is the field ``count`` times ``unit`` bytes.
    """
    type: CtrlType
    struct: str
    size: int
    fields: tuple[str, ...]
    tail_kind: str | None
    tail: str | None
    tail_offset: int
    tail_max: int
    count: str | None
    unit: int


_TAIL_KINDS = {_protocol.TAIL_NONE: None, _protocol.TAIL_INLINE: "inline",
               _protocol.TAIL_TRAILING: "trailing"}
_LAYOUTS: dict[int, Layout] = {
    t: Layout(CtrlType(t), s, size, tuple(f[0] for f in fields), _TAIL_KINDS[kind], tail,
              toff, tmax, count, unit)
    for t, (s, size, fields, kind, tail, toff, tmax, count, unit) in _protocol.LAYOUTS.items()}


def layout(type: int) -> Layout:
    """The :class:`Layout` of a control type; ProtocolError for an unknown one."""
    try:
        return _LAYOUTS[type]
    except KeyError:
        raise ProtocolError(f"unknown virtio-gpu control type {type:#06x}", type=type) from None


# ------------------------------------------------------------------ building blocks

@dataclass(frozen=True)
class CtrlHdr:
    """struct virtio_gpu_ctrl_hdr minus ``type`` (the message class gives it)."""
    flags: int = 0
    fence_id: int = 0
    ctx_id: int = 0
    ring_idx: int = 0

    @classmethod
    def fenced(cls, fence_id: int, ctx_id: int = 0, ring_idx: int | None = None) -> CtrlHdr:
        """A header asking for a fence (FLAG_FENCE), on timeline ring_idx if given."""
        flags = HdrFlag.FENCE | (HdrFlag.INFO_RING_IDX if ring_idx is not None else 0)
        return cls(int(flags), fence_id, ctx_id, ring_idx or 0)


@dataclass(frozen=True)
class Rect:
    """struct virtio_gpu_rect."""
    x: int = 0
    y: int = 0
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Box:
    """struct virtio_gpu_box."""
    x: int = 0
    y: int = 0
    z: int = 0
    w: int = 0
    h: int = 0
    d: int = 0


@dataclass(frozen=True)
class CursorPos:
    """struct virtio_gpu_cursor_pos (padding omitted)."""
    scanout_id: int = 0
    x: int = 0
    y: int = 0


@dataclass(frozen=True)
class MemEntry:
    """struct virtio_gpu_mem_entry: one guest memory range of a backing or blob."""
    addr: int
    length: int


@dataclass(frozen=True)
class DisplayOne:
    """struct virtio_gpu_display_one: one scanout of RESP_OK_DISPLAY_INFO."""
    r: Rect = Rect()
    enabled: int = 0
    flags: int = 0


_MEM_ENTRY = struct.Struct("<QII")
_DISPLAY_ONE = struct.Struct("<IIIIII")
_COMPOSITES = {"Rect": (Rect, 4), "Box": (Box, 6), "CursorPos": (CursorPos, 3)}


def _pack_entries(entries: tuple[MemEntry, ...]) -> bytes:
    return b"".join(_MEM_ENTRY.pack(e.addr, e.length, 0) for e in entries)


def _unpack_entries(tail: bytes) -> tuple[MemEntry, ...]:
    return tuple(MemEntry(a, n) for a, n, _ in _MEM_ENTRY.iter_unpack(tail))


# ------------------------------------------------------------------ messages

_CLASSES: dict[int, type[Message]] = {}


@dataclass
class Message:
    """Base of every virtio-gpu command and response.

    Subclasses list the struct's fields in wire order (nested rects/boxes as dataclasses);
    ``hdr`` (keyword only) carries flags / fence_id / ctx_id / ring_idx.
    """
    TYPE: ClassVar[CtrlType]
    hdr: CtrlHdr = field(default_factory=CtrlHdr, kw_only=True)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "TYPE" in cls.__dict__:
            _CLASSES[int(cls.TYPE)] = cls

    @property
    def type(self) -> int:
        """The control type written in hdr.type."""
        return int(self.TYPE)

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        """(scalar fields in layout order, tail bytes) as the C encoder takes them."""
        values: list[int] = []
        for f in dataclasses.fields(self):
            if f.name == "hdr":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                values.extend(value)
            elif dataclasses.is_dataclass(value):
                values.extend(dataclasses.astuple(value))
            else:
                values.append(value)
        return tuple(values), b""

    @classmethod
    def from_wire(cls, hdr: CtrlHdr, fields: tuple[int, ...], tail: bytes) -> Message:
        """Build the message from what the C decoder returned."""
        kwargs = {}
        i = 0
        for f in dataclasses.fields(cls):
            if f.name == "hdr":
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind in _COMPOSITES:
                ctor, n = _COMPOSITES[kind]
                kwargs[f.name] = ctor(*fields[i:i + n])
                i += n
            elif kind.startswith("tuple[int"):
                n = kind.count("int")
                kwargs[f.name] = tuple(fields[i:i + n])
                i += n
            else:
                kwargs[f.name] = fields[i]
                i += 1
        return cls(**kwargs, hdr=hdr)

    def encode(self) -> bytes:
        """This message as little-endian wire bytes."""
        return encode(self)


# --- 2D control commands

@dataclass
class GetDisplayInfo(Message):
    """VIRTIO_GPU_CMD_GET_DISPLAY_INFO (header only)."""
    TYPE = CtrlType.CMD_GET_DISPLAY_INFO


@dataclass
class ResourceCreate2D(Message):
    """VIRTIO_GPU_CMD_RESOURCE_CREATE_2D."""
    TYPE = CtrlType.CMD_RESOURCE_CREATE_2D
    resource_id: int = 0
    format: int = 0
    width: int = 0
    height: int = 0


@dataclass
class ResourceUnref(Message):
    """VIRTIO_GPU_CMD_RESOURCE_UNREF."""
    TYPE = CtrlType.CMD_RESOURCE_UNREF
    resource_id: int = 0


@dataclass
class SetScanout(Message):
    """VIRTIO_GPU_CMD_SET_SCANOUT."""
    TYPE = CtrlType.CMD_SET_SCANOUT
    r: Rect = Rect()
    scanout_id: int = 0
    resource_id: int = 0


@dataclass
class ResourceFlush(Message):
    """VIRTIO_GPU_CMD_RESOURCE_FLUSH."""
    TYPE = CtrlType.CMD_RESOURCE_FLUSH
    r: Rect = Rect()
    resource_id: int = 0


@dataclass
class TransferToHost2D(Message):
    """VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D."""
    TYPE = CtrlType.CMD_TRANSFER_TO_HOST_2D
    r: Rect = Rect()
    offset: int = 0
    resource_id: int = 0


@dataclass
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
        return (self.resource_id, count), _pack_entries(self.entries)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        entries = _unpack_entries(tail)
        return cls(fields[0], entries, None if fields[1] == len(entries) else fields[1], hdr=hdr)


@dataclass
class ResourceDetachBacking(Message):
    """VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING."""
    TYPE = CtrlType.CMD_RESOURCE_DETACH_BACKING
    resource_id: int = 0


@dataclass
class GetCapsetInfo(Message):
    """VIRTIO_GPU_CMD_GET_CAPSET_INFO."""
    TYPE = CtrlType.CMD_GET_CAPSET_INFO
    capset_index: int = 0


@dataclass
class GetCapset(Message):
    """VIRTIO_GPU_CMD_GET_CAPSET."""
    TYPE = CtrlType.CMD_GET_CAPSET
    capset_id: int = 0
    capset_version: int = 0


@dataclass
class GetEdid(Message):
    """VIRTIO_GPU_CMD_GET_EDID (needs VIRTIO_GPU_F_EDID)."""
    TYPE = CtrlType.CMD_GET_EDID
    scanout: int = 0


@dataclass
class ResourceAssignUuid(Message):
    """VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID (needs VIRTIO_GPU_F_RESOURCE_UUID)."""
    TYPE = CtrlType.CMD_RESOURCE_ASSIGN_UUID
    resource_id: int = 0


@dataclass
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
                 self.size), _pack_entries(self.entries))

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        rid, mem, flags, count, blob_id, size = fields
        entries = _unpack_entries(tail)
        return cls(rid, mem, flags, blob_id, size, entries,
                   None if count == len(entries) else count, hdr=hdr)


@dataclass
class SetScanoutBlob(Message):
    """VIRTIO_GPU_CMD_SET_SCANOUT_BLOB."""
    TYPE = CtrlType.CMD_SET_SCANOUT_BLOB
    r: Rect = Rect()
    scanout_id: int = 0
    resource_id: int = 0
    width: int = 0
    height: int = 0
    format: int = 0
    strides: tuple[int, int, int, int] = (0, 0, 0, 0)
    offsets: tuple[int, int, int, int] = (0, 0, 0, 0)


# --- 3D control commands

@dataclass
class CtxCreate(Message):
    """VIRTIO_GPU_CMD_CTX_CREATE; context_init's low 8 bits are the capset id.

    nlen None means len(debug_name) (at most 64 bytes); set it to lie about the length.
    """
    TYPE = CtrlType.CMD_CTX_CREATE
    debug_name: bytes = b""
    context_init: int = 0
    nlen: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        nlen = len(self.debug_name) if self.nlen is None else self.nlen
        return (nlen, self.context_init), bytes(self.debug_name)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        nlen, context_init = fields
        name = bytes(tail[:min(nlen, len(tail))])
        return cls(name, context_init, None if nlen == len(name) else nlen, hdr=hdr)


@dataclass
class CtxDestroy(Message):
    """VIRTIO_GPU_CMD_CTX_DESTROY (header only; hdr.ctx_id names the context)."""
    TYPE = CtrlType.CMD_CTX_DESTROY


@dataclass
class CtxAttachResource(Message):
    """VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE."""
    TYPE = CtrlType.CMD_CTX_ATTACH_RESOURCE
    resource_id: int = 0


@dataclass
class CtxDetachResource(Message):
    """VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE."""
    TYPE = CtrlType.CMD_CTX_DETACH_RESOURCE
    resource_id: int = 0


@dataclass
class ResourceCreate3D(Message):
    """VIRTIO_GPU_CMD_RESOURCE_CREATE_3D (flags: VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP)."""
    TYPE = CtrlType.CMD_RESOURCE_CREATE_3D
    resource_id: int = 0
    target: int = 0
    format: int = 0
    bind: int = 0
    width: int = 0
    height: int = 0
    depth: int = 0
    array_size: int = 0
    last_level: int = 0
    nr_samples: int = 0
    flags: int = 0


@dataclass
class TransferToHost3D(Message):
    """VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D (struct virtio_gpu_transfer_host_3d)."""
    TYPE = CtrlType.CMD_TRANSFER_TO_HOST_3D
    box: Box = Box()
    offset: int = 0
    resource_id: int = 0
    level: int = 0
    stride: int = 0
    layer_stride: int = 0


@dataclass
class TransferFromHost3D(TransferToHost3D):
    """VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D (struct virtio_gpu_transfer_host_3d)."""
    TYPE = CtrlType.CMD_TRANSFER_FROM_HOST_3D


@dataclass
class Submit3D(Message):
    """VIRTIO_GPU_CMD_SUBMIT_3D followed by its command stream.

    size None means len(command_stream); set it to lie about the length.
    """
    TYPE = CtrlType.CMD_SUBMIT_3D
    command_stream: bytes = b""
    size: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        size = len(self.command_stream) if self.size is None else self.size
        return (size,), bytes(self.command_stream)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        stream = bytes(tail)
        return cls(stream, None if fields[0] == len(stream) else fields[0], hdr=hdr)


@dataclass
class ResourceMapBlob(Message):
    """VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB (offset into the host-visible shm region)."""
    TYPE = CtrlType.CMD_RESOURCE_MAP_BLOB
    resource_id: int = 0
    offset: int = 0


@dataclass
class ResourceUnmapBlob(Message):
    """VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB."""
    TYPE = CtrlType.CMD_RESOURCE_UNMAP_BLOB
    resource_id: int = 0


# --- cursor queue

@dataclass
class UpdateCursor(Message):
    """VIRTIO_GPU_CMD_UPDATE_CURSOR (cursorq, struct virtio_gpu_update_cursor)."""
    TYPE = CtrlType.CMD_UPDATE_CURSOR
    pos: CursorPos = CursorPos()
    resource_id: int = 0
    hot_x: int = 0
    hot_y: int = 0


@dataclass
class MoveCursor(UpdateCursor):
    """VIRTIO_GPU_CMD_MOVE_CURSOR (cursorq; only pos matters to the device)."""
    TYPE = CtrlType.CMD_MOVE_CURSOR


# --- responses

@dataclass
class RespOkNodata(Message):
    """VIRTIO_GPU_RESP_OK_NODATA."""
    TYPE = CtrlType.RESP_OK_NODATA


@dataclass
class RespOkDisplayInfo(Message):
    """VIRTIO_GPU_RESP_OK_DISPLAY_INFO: up to 16 scanouts; decoding always yields 16."""
    TYPE = CtrlType.RESP_OK_DISPLAY_INFO
    pmodes: tuple[DisplayOne, ...] = ()

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (), b"".join(_DISPLAY_ONE.pack(*dataclasses.astuple(m.r), m.enabled, m.flags)
                            for m in self.pmodes)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        return cls(tuple(DisplayOne(Rect(x, y, w, h), en, fl)
                         for x, y, w, h, en, fl in _DISPLAY_ONE.iter_unpack(tail)), hdr=hdr)


@dataclass
class RespOkCapsetInfo(Message):
    """VIRTIO_GPU_RESP_OK_CAPSET_INFO."""
    TYPE = CtrlType.RESP_OK_CAPSET_INFO
    capset_id: int = 0
    capset_max_version: int = 0
    capset_max_size: int = 0


@dataclass
class RespOkCapset(Message):
    """VIRTIO_GPU_RESP_OK_CAPSET: the header followed by the capset data."""
    TYPE = CtrlType.RESP_OK_CAPSET
    capset_data: bytes = b""

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (), bytes(self.capset_data)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        return cls(bytes(tail), hdr=hdr)


@dataclass
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


@dataclass
class RespOkResourceUuid(Message):
    """VIRTIO_GPU_RESP_OK_RESOURCE_UUID (16 bytes; shorter input is zero padded)."""
    TYPE = CtrlType.RESP_OK_RESOURCE_UUID
    uuid: bytes = bytes(16)

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        return (), bytes(self.uuid)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        return cls(bytes(tail), hdr=hdr)


@dataclass
class RespOkMapInfo(Message):
    """VIRTIO_GPU_RESP_OK_MAP_INFO (map_info & MAP_CACHE_MASK is a MapCache)."""
    TYPE = CtrlType.RESP_OK_MAP_INFO
    map_info: int = 0

    @property
    def cache(self) -> int:
        """The caching type of the mapping (a MapCache value when the device is sane)."""
        return self.map_info & MAP_CACHE_MASK


@dataclass
class RespErr(Message):
    """Base of the VIRTIO_GPU_RESP_ERR_* responses (header only)."""


@dataclass
class RespErrUnspec(RespErr):
    """VIRTIO_GPU_RESP_ERR_UNSPEC."""
    TYPE = CtrlType.RESP_ERR_UNSPEC


@dataclass
class RespErrOutOfMemory(RespErr):
    """VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY."""
    TYPE = CtrlType.RESP_ERR_OUT_OF_MEMORY


@dataclass
class RespErrInvalidScanoutId(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID."""
    TYPE = CtrlType.RESP_ERR_INVALID_SCANOUT_ID


@dataclass
class RespErrInvalidResourceId(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID."""
    TYPE = CtrlType.RESP_ERR_INVALID_RESOURCE_ID


@dataclass
class RespErrInvalidContextId(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID."""
    TYPE = CtrlType.RESP_ERR_INVALID_CONTEXT_ID


@dataclass
class RespErrInvalidParameter(RespErr):
    """VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER."""
    TYPE = CtrlType.RESP_ERR_INVALID_PARAMETER


@dataclass
class RawMessage(Message):
    """Any header (type included, known or not) followed by raw body bytes, unchecked.

    For negative tests: unknown types, bodies of the wrong size.  decode(...,
    allow_unknown=True) returns one for a type it does not know.
    """
    ctrl_type: int = 0
    body: bytes = b""

    @property
    def type(self) -> int:
        return self.ctrl_type

    def encode(self) -> bytes:
        return encode(self)


_HDR = struct.Struct("<IIQIB3x")

#: every class that has a control type, by type
MESSAGE_CLASSES: dict[int, type[Message]] = _CLASSES


def message_class(type: int) -> type[Message]:
    """The dataclass of a control type; ProtocolError for an unknown one."""
    try:
        return _CLASSES[type]
    except KeyError:
        raise ProtocolError(f"unknown virtio-gpu control type {type:#06x}", type=type) from None


# ------------------------------------------------------------------ one message

def _message_name(msg: Message) -> str:
    return CtrlType(msg.type).name if msg.type in CtrlType._value2member_map_ else f"{msg.type:#06x}"


def encode_into(msg: Message, buf, offset: int = 0) -> int:
    """Write msg at buf[offset:] (any writable buffer: bytearray, memoryview, mmap);
    return the number of bytes written.  ProtocolError if it does not fit or a value is
    out of range for its field."""
    h = msg.hdr
    if isinstance(msg, RawMessage):
        end = offset + _HDR.size + len(msg.body)
        view = memoryview(buf).cast("B")
        if offset < 0 or end > len(view):
            raise ProtocolError(f"{_message_name(msg)}: needs {end - offset} bytes, "
                                f"{len(view) - offset} left", type=msg.type,
                                size=len(view) - offset, expected=end - offset)
        try:
            _HDR.pack_into(view, offset, msg.ctrl_type, h.flags, h.fence_id, h.ctx_id, h.ring_idx)
        except struct.error as e:
            raise ProtocolError(f"{_message_name(msg)}: header value out of range ({e})",
                                type=msg.type) from None
        view[offset + _HDR.size:end] = msg.body
        return end - offset
    fields, tail = msg.wire()
    try:
        return _protocol.encode_one(buf, offset, msg.TYPE, h.flags, h.fence_id, h.ctx_id,
                                    h.ring_idx, fields, tail)
    except OverflowError as e:
        raise ProtocolError(f"{_message_name(msg)}: a value does not fit its field ({e})",
                            type=msg.type) from None


def encoded_size(msg: Message) -> int:
    """How many bytes encode(msg) produces."""
    if isinstance(msg, RawMessage):
        return _HDR.size + len(msg.body)
    lay = _LAYOUTS[msg.TYPE]
    return lay.size + (len(msg.wire()[1]) if lay.tail_kind == "trailing" else 0)


def encode(msg: Message) -> bytes:
    """msg as little-endian wire bytes."""
    buf = bytearray(encoded_size(msg))
    encode_into(msg, buf)
    return bytes(buf)


def decode(buf, offset: int = 0, length: int = -1, *, strict: bool = True,
           allow_unknown: bool = False) -> Message:
    """Decode the message at buf[offset:offset+length] (length -1: to the end).

    strict: the length must be exactly what the type (and its counts) say; otherwise extra
    bytes are ignored and a count larger than the bytes present keeps what is there.
    An unknown type raises ProtocolError unless allow_unknown, which gives a RawMessage.
    """
    try:
        t, flags, fence_id, ctx_id, ring_idx, toff, tlen, fields = _protocol.decode_one(
            buf, offset, length, strict)
    except ProtocolError as e:
        if not (allow_unknown and e.type is not None and e.type not in _CLASSES
                and (e.size or 0) >= _HDR.size):
            raise
        view = memoryview(buf).cast("B")
        end = len(view) if length < 0 else offset + length
        t, flags, fence_id, ctx_id, ring_idx = _HDR.unpack_from(view, offset)
        return RawMessage(t, bytes(view[offset + _HDR.size:end]),
                          hdr=CtrlHdr(flags, fence_id, ctx_id, ring_idx))
    tail = bytes(memoryview(buf).cast("B")[toff:toff + tlen]) if tlen else b""
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


# ------------------------------------------------------------------ virtio_gpu_config

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
            return _protocol.encode_config(buf, offset, *dataclasses.astuple(self))
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
        return cls(*_protocol.decode_config(buf, offset, strict))


# ------------------------------------------------------------------ batches

@dataclass(frozen=True)
class BatchLayout:
    """Where encode placed each message: buf[offsets[i]:offsets[i]+lengths[i]]; end is the
    first byte after the last one."""
    offsets: array
    lengths: array
    end: int

    def __len__(self) -> int:
        return len(self.offsets)

    def spans(self) -> Iterator[tuple[int, int]]:
        """(offset, length) of each message."""
        return zip(self.offsets, self.lengths)


def encode_batch(out, rows, payload=None, offsets=None, lengths=None, *, start: int = 0,
                 align: int = 8) -> BatchLayout:
    """Encode rows (flat uint64 buffer, ROW_WIDTH columns per message, see Column and
    layout(type).fields) into out, tails taken from payload.  Everything runs in C."""
    n = len(rows) // ROW_WIDTH
    offsets = array("I", bytes(4 * n)) if offsets is None else offsets
    lengths = array("I", bytes(4 * n)) if lengths is None else lengths
    end = _protocol.encode_batch(out, rows, payload, offsets, lengths, start, align)
    return BatchLayout(offsets, lengths, end)


class CommandBatch:
    """Many messages encoded by C into one preallocated buffer.

    Fill it with :meth:`add` (type, scalar fields, header, tail: one row per call, no
    dataclass) or :meth:`append` (a typed message), or write :attr:`rows` / :attr:`payload`
    directly in bulk; then :meth:`encode_into` a buffer.  rows is an ``array('Q')`` of
    capacity * ROW_WIDTH values; tails are slices of the payload bytearray.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.rows = array("Q", bytes(8 * ROW_WIDTH * capacity))
        self.payload = bytearray()
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def clear(self) -> None:
        """Forget every message (keeps the allocation)."""
        self.count = 0
        del self.payload[:]

    def add(self, type: int, fields=(), *, hdr: CtrlHdr | None = None, tail: bytes = b"") -> int:
        """Add one message given as its control type and scalar fields (in layout(type)
        order); return its index."""
        if self.count == self.capacity:
            raise ProtocolError(f"batch is full ({self.capacity} messages)", type=type)
        if len(fields) > _protocol.MAX_SCALAR_FIELDS:
            raise ProtocolError(f"{len(fields)} fields, a row holds "
                                f"{_protocol.MAX_SCALAR_FIELDS}", type=type)
        h = hdr or CtrlHdr()
        base = self.count * ROW_WIDTH
        row = [type, h.flags, h.fence_id, h.ctx_id, h.ring_idx, len(self.payload), len(tail),
               *fields]
        row += [0] * (ROW_WIDTH - len(row))
        try:
            self.rows[base:base + ROW_WIDTH] = array("Q", row)
        except OverflowError as e:
            raise ProtocolError(f"type {type:#06x}: a value is negative or over 64 bits ({e})",
                                type=type) from None
        self.payload += tail
        self.count += 1
        return self.count - 1

    def append(self, msg: Message) -> int:
        """Add a typed message; return its index."""
        if isinstance(msg, RawMessage):
            raise ProtocolError("a RawMessage cannot go through the C batch encoder; "
                                "use encode_into", type=msg.type)
        fields, tail = msg.wire()
        return self.add(msg.TYPE, fields, hdr=msg.hdr, tail=tail)

    def encode_into(self, out, *, start: int = 0, align: int = 8) -> BatchLayout:
        """Encode every message into out from start, each on an align boundary."""
        rows = memoryview(self.rows)[:self.count * ROW_WIDTH]
        return encode_batch(out, rows, self.payload, start=start, align=align)


class DecodedBatch:
    """Messages decoded by C from one buffer: rows (ROW_WIDTH uint64 per message) whose
    tail columns point into the source buffer; :meth:`message` builds the dataclass."""

    def __init__(self, src, rows: array, count: int) -> None:
        self.src = src
        self.rows = rows
        self.count = count

    def __len__(self) -> int:
        return self.count

    def type(self, i: int) -> int:
        """Control type of message i."""
        return self.rows[i * ROW_WIDTH]

    def row(self, i: int) -> tuple[int, ...]:
        """The ROW_WIDTH values of message i."""
        return tuple(self.rows[i * ROW_WIDTH:(i + 1) * ROW_WIDTH])

    def message(self, i: int) -> Message:
        """Message i as its dataclass."""
        r = self.row(i)
        t = r[Column.TYPE]
        nfields = len(_LAYOUTS[t].fields)
        toff, tlen = r[Column.TAIL_OFF], r[Column.TAIL_LEN]
        tail = bytes(memoryview(self.src).cast("B")[toff:toff + tlen]) if tlen else b""
        return _CLASSES[t].from_wire(
            CtrlHdr(r[Column.FLAGS], r[Column.FENCE_ID], r[Column.CTX_ID], r[Column.RING_IDX]),
            r[Column.FIELDS:Column.FIELDS + nfields], tail)

    def messages(self) -> Iterator[Message]:
        """Every message as its dataclass."""
        return (self.message(i) for i in range(self.count))


def decode_batch(src, offsets, lengths, rows: array | None = None, *,
                 strict: bool = True) -> DecodedBatch:
    """Decode src[offsets[i]:+lengths[i]] for every i, in C, into rows (allocated if None;
    an ``array('Q')`` or other uint64 buffer of at least len(offsets) * ROW_WIDTH)."""
    n = len(offsets)
    if rows is None:
        rows = array("Q", bytes(8 * ROW_WIDTH * n))
    if not isinstance(offsets, (array, memoryview)):
        offsets = array("I", offsets)
    if not isinstance(lengths, (array, memoryview)):
        lengths = array("I", lengths)
    count = _protocol.decode_batch(src, offsets, lengths, rows, strict)
    return DecodedBatch(src, rows, count)
