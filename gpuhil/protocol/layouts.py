"""Wire layouts of the virtio-gpu messages: the C core's table per control type, and how a
message dataclass declares the shape of its fields.

:func:`layout` gives the :class:`Layout` the C core (``gpuhil._protocol``) was compiled with.
A message dataclass declares its wire shape field by field: a plain ``int`` field is one wire
field, :func:`nested` holds a nested struct (:class:`Rect`, :class:`Box`, :class:`CursorPos`)
whose fields follow in order, :func:`words` a fixed array (``strides[4]``).
:func:`wire_plan` reads those declarations (dataclass field metadata, never the annotations).
Import the public names from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any

from gpuhil import _protocol
from gpuhil.protocol.constants import CtrlType, ProtocolError

__all__ = ["Box", "CursorPos", "DisplayOne", "Layout", "MemEntry", "Rect", "layout", "nested",
           "wire_plan", "words"]


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
#: every control type's Layout, by type
LAYOUTS: dict[int, Layout] = {
    t: Layout(CtrlType(t), s, size, tuple(f[0] for f in fields), _TAIL_KINDS[kind], tail,
              toff, tmax, count, unit)
    for t, (s, size, fields, kind, tail, toff, tmax, count, unit) in _protocol.LAYOUTS.items()}


def layout(type: int) -> Layout:
    """The :class:`Layout` of a control type; ProtocolError for an unknown one."""
    try:
        return LAYOUTS[type]
    except KeyError:
        raise ProtocolError(f"unknown virtio-gpu control type {type:#06x}", type=type) from None


# ------------------------------------------------------------------ nested structs

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


#: struct virtio_gpu_ctrl_hdr, for RawMessage (which bypasses the C layouts)
HDR = struct.Struct("<IIQIB3x")
MEM_ENTRY = struct.Struct("<QII")
DISPLAY_ONE = struct.Struct("<IIIIII")


def pack_entries(entries: tuple[MemEntry, ...]) -> bytes:
    """The mem entries as the bytes that follow ATTACH_BACKING / CREATE_BLOB."""
    return b"".join(MEM_ENTRY.pack(e.addr, e.length, 0) for e in entries)


def unpack_entries(tail: bytes) -> tuple[MemEntry, ...]:
    """The mem entries in a trailing tail."""
    return tuple(MemEntry(a, n) for a, n, _ in MEM_ENTRY.iter_unpack(tail))


# ------------------------------------------------------------------ field declarations

_WIRE = "gpuhil.wire"


def nested(struct_type: type) -> Any:
    """A message field holding a nested struct (Rect, Box, CursorPos): its fields are wire
    fields in order.  The default is ``struct_type()``."""
    return field(default=struct_type(), metadata={_WIRE: struct_type})


def words(count: int) -> Any:
    """A message field holding a fixed array of ``count`` wire fields (``strides[4]``) as a
    tuple; the default is all zero."""
    return field(default=(0,) * count, metadata={_WIRE: count})


#: one step of a wire plan: (attribute, nested struct type / word count / None for a scalar,
#: number of wire fields, field names of the nested struct or None)
Step = tuple[str, Any, int, "tuple[str, ...] | None"]


def wire_plan(cls: type) -> tuple[Step, ...]:
    """How the dataclass ``cls`` maps to scalar wire fields, from its field declarations
    (every field but ``hdr``; :func:`nested` and :func:`words` fields span several)."""
    steps: list[Step] = []
    for f in dataclasses.fields(cls):
        if f.name == "hdr":
            continue
        shape = f.metadata.get(_WIRE)
        if shape is None:
            steps.append((f.name, None, 1, None))
        elif isinstance(shape, int):
            steps.append((f.name, shape, shape, None))
        else:
            parts = tuple(x.name for x in dataclasses.fields(shape))
            steps.append((f.name, shape, len(parts), parts))
    return tuple(steps)
