"""The base of every virtio-gpu message, its header, the class registry and encoding.

:func:`message` is the class decorator every command and response uses: it makes the class a
dataclass, reads its declared wire plan (:func:`gpuhil.protocol.layouts.wire_plan`), checks the
plan's field count against the C core's layout of ``TYPE`` and registers the class by type.
:func:`encode` / :func:`encode_into` / :func:`encoded_size` / :func:`malformed` turn one message
into bytes (decoding needs every class, so it lives in :mod:`gpuhil.protocol.decoding`).
Import the public names from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import ClassVar

from gpuhil import _protocol
from gpuhil.protocol.constants import CtrlType, HdrFlag, ProtocolError, bytes_view, ctrl_name
from gpuhil.protocol.layouts import HDR, LAYOUTS, Step, wire_plan

__all__ = ["CtrlHdr", "MESSAGE_CLASSES", "Message", "RawMessage", "encode", "encode_into",
           "encoded_size", "malformed", "message", "message_class"]


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


#: every class that has a control type, by type (filled by :func:`message`)
MESSAGE_CLASSES: dict[int, type[Message]] = {}


def message(cls: type) -> type:
    """Class decorator of a message: dataclass, wire plan, registry (see the module doc)."""
    cls = dataclass(cls)
    cls._WIRE_PLAN = wire_plan(cls)
    if "TYPE" in cls.__dict__:
        if cls.wire is Message.wire:  # the default encoding: the plan must match the C layout
            have = sum(step[2] for step in cls._WIRE_PLAN)
            want = len(LAYOUTS[cls.TYPE].fields)
            if have != want:
                raise TypeError(f"{cls.__name__} declares {have} wire fields, "
                                f"{LAYOUTS[cls.TYPE].struct} has {want}")
        MESSAGE_CLASSES[int(cls.TYPE)] = cls
    return cls


@dataclass
class Message:
    """Base of every virtio-gpu command and response.

    Subclasses list the struct's fields in wire order (nested structs declared with
    ``nested(Rect)``, arrays with ``words(4)``); ``hdr`` (keyword only) carries flags /
    fence_id / ctx_id / ring_idx.
    """
    TYPE: ClassVar[CtrlType]
    _WIRE_PLAN: ClassVar[tuple[Step, ...]] = ()
    hdr: CtrlHdr = field(default_factory=CtrlHdr, kw_only=True)

    @property
    def type(self) -> int:
        """The control type written in hdr.type."""
        return int(self.TYPE)

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        """(scalar fields in layout order, tail bytes) as the C encoder takes them."""
        values: list[int] = []
        for name, shape, _, parts in self._WIRE_PLAN:
            value = getattr(self, name)
            if shape is None:
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
        for name, shape, n, parts in cls._WIRE_PLAN:
            if shape is None:
                kwargs[name] = fields[i]
            elif parts is None:
                kwargs[name] = tuple(fields[i:i + n])
            else:
                kwargs[name] = shape(*fields[i:i + n])
            i += n
        return cls(**kwargs, hdr=hdr)

    def encode(self) -> bytes:
        """This message as little-endian wire bytes (:func:`encode`)."""
        return encode(self)


@message
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


def message_class(type: int) -> type[Message]:
    """The dataclass of a control type; ProtocolError for an unknown one."""
    try:
        return MESSAGE_CLASSES[type]
    except KeyError:
        raise ProtocolError(f"unknown virtio-gpu control type {type:#06x}", type=type) from None


# ------------------------------------------------------------------ encoding

def _encode_parts(msg: Message, view: memoryview, offset: int, fields, tail: bytes) -> int:
    h = msg.hdr
    try:
        return _protocol.encode_one(view, offset, msg.TYPE, h.flags, h.fence_id, h.ctx_id,
                                    h.ring_idx, fields, tail)
    except OverflowError as e:
        raise ProtocolError(f"{ctrl_name(msg)}: a value does not fit its field ({e})",
                            type=msg.type) from None


def _encode_raw(msg: RawMessage, view: memoryview, offset: int) -> int:
    h = msg.hdr
    end = offset + HDR.size + len(msg.body)
    if offset < 0 or end > len(view):
        raise ProtocolError(f"{ctrl_name(msg)}: needs {end - offset} bytes, "
                            f"{len(view) - offset} left", type=msg.type,
                            size=len(view) - offset, expected=end - offset)
    try:
        HDR.pack_into(view, offset, msg.ctrl_type, h.flags, h.fence_id, h.ctx_id, h.ring_idx)
    except struct.error as e:
        raise ProtocolError(f"{ctrl_name(msg)}: header value out of range ({e})",
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
    lay = LAYOUTS[msg.TYPE]
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
