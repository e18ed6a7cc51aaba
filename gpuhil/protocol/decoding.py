"""Decoding one virtio-gpu message: bytes to the dataclass of its type.

Decoding needs every message class registered, so this module imports all of them (commands,
blobs, contexts, cursor, responses) and sits above them.  Import :func:`decode` from
:mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from gpuhil import _protocol
from gpuhil.protocol import blobs, commands, contexts, cursor, responses  # noqa: F401 - register
from gpuhil.protocol.constants import ProtocolError, bytes_view
from gpuhil.protocol.layouts import HDR
from gpuhil.protocol.message import MESSAGE_CLASSES, CtrlHdr, Message, RawMessage

__all__ = ["decode"]


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
        if not (allow_unknown and e.type is not None and e.type not in MESSAGE_CLASSES
                and (e.size or 0) >= HDR.size):
            raise
        end = len(view) if length < 0 else offset + length
        t, flags, fence_id, ctx_id, ring_idx = HDR.unpack_from(view, offset)
        return RawMessage(t, bytes(view[offset + HDR.size:end]),
                          hdr=CtrlHdr(flags, fence_id, ctx_id, ring_idx))
    tail = bytes(view[toff:toff + tlen]) if tlen else b""
    return MESSAGE_CLASSES[t].from_wire(CtrlHdr(flags, fence_id, ctx_id, ring_idx), fields, tail)
