"""The virtio-gpu messages as dataclasses: every control and cursor command and response.

Each class lists its struct's fields in wire order (nested rect/box/cursor_pos as frozen
dataclasses) and converts to and from the (scalar fields, tail bytes) pair the C core
encodes (:meth:`Message.wire` / :meth:`Message.from_wire`).  Import them from
:mod:`gpuhil.protocol`.
"""
from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import ClassVar

from gpuhil.protocol.constants import MAP_CACHE_MASK, CtrlType, HdrFlag, ProtocolError

__all__ = [
    "CtrlHdr",
    "Rect",
    "Box",
    "CursorPos",
    "MemEntry",
    "DisplayOne",
    "Message",
    "GetDisplayInfo",
    "ResourceCreate2D",
    "ResourceUnref",
    "SetScanout",
    "ResourceFlush",
    "TransferToHost2D",
    "ResourceAttachBacking",
    "ResourceDetachBacking",
    "GetCapsetInfo",
    "GetCapset",
    "GetEdid",
    "ResourceAssignUuid",
    "ResourceCreateBlob",
    "SetScanoutBlob",
    "CtxCreate",
    "CtxDestroy",
    "CtxAttachResource",
    "CtxDetachResource",
    "ResourceCreate3D",
    "TransferToHost3D",
    "TransferFromHost3D",
    "Submit3D",
    "ResourceMapBlob",
    "ResourceUnmapBlob",
    "UpdateCursor",
    "MoveCursor",
    "RespOkNodata",
    "RespOkDisplayInfo",
    "RespOkCapsetInfo",
    "RespOkCapset",
    "RespOkEdid",
    "RespOkResourceUuid",
    "RespOkMapInfo",
    "RespErr",
    "RespErrUnspec",
    "RespErrOutOfMemory",
    "RespErrInvalidScanoutId",
    "RespErrInvalidResourceId",
    "RespErrInvalidContextId",
    "RespErrInvalidParameter",
    "RawMessage",
    "MESSAGE_CLASSES",
    "message_class",
]


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
_COMPOSITES = {c.__name__: c for c in (Rect, Box, CursorPos)}
_PLANS: dict[type, tuple] = {}


def _plan(cls: type) -> tuple[tuple[str, type | None, int, tuple[str, ...] | None], ...]:
    """How a message class maps to scalar wire fields: (attribute, constructor or None for
    an int, number of wire fields, sub-field names of a nested struct or None), cached."""
    plan = _PLANS.get(cls)
    if plan is None:
        steps = []
        for f in dataclasses.fields(cls):
            if f.name == "hdr":
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind in _COMPOSITES:
                parts = tuple(x.name for x in dataclasses.fields(_COMPOSITES[kind]))
                steps.append((f.name, _COMPOSITES[kind], len(parts), parts))
            elif kind.startswith("tuple[int"):
                steps.append((f.name, tuple, kind.count("int"), None))
            else:
                steps.append((f.name, None, 1, None))
        plan = _PLANS[cls] = tuple(steps)
    return plan


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
        for name, ctor, _, parts in _plan(type(self)):
            value = getattr(self, name)
            if ctor is None:
                values.append(value)
            elif parts is None:
                values.extend(value)
            else:
                values.extend([getattr(value, p) for p in parts])
        return tuple(values), b""

    @classmethod
    def from_wire(cls, hdr: CtrlHdr, fields: tuple[int, ...], tail: bytes) -> Message:
        """Build the message from what the C decoder returned."""
        kwargs = {}
        i = 0
        for name, ctor, n, parts in _plan(cls):
            if ctor is None:
                kwargs[name] = fields[i]
            elif parts is None:
                kwargs[name] = tuple(fields[i:i + n])
            else:
                kwargs[name] = ctor(*fields[i:i + n])
            i += n
        return cls(**kwargs, hdr=hdr)

    def encode(self) -> bytes:
        """This message as little-endian wire bytes (gpuhil.protocol.encode)."""
        from gpuhil.protocol import encode
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
        """The control type written in hdr.type (any u32)."""
        return self.ctrl_type


#: struct virtio_gpu_ctrl_hdr, for RawMessage (which bypasses the C layouts)
HDR = struct.Struct("<IIQIB3x")

#: every class that has a control type, by type
MESSAGE_CLASSES: dict[int, type[Message]] = _CLASSES


def message_class(type: int) -> type[Message]:
    """The dataclass of a control type; ProtocolError for an unknown one."""
    try:
        return _CLASSES[type]
    except KeyError:
        raise ProtocolError(f"unknown virtio-gpu control type {type:#06x}", type=type) from None
