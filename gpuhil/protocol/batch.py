"""Batches of virtio-gpu messages encoded and decoded in C, for the raw virtqueue driver.

A batch is rows of ROW_WIDTH uint64 (see :class:`~gpuhil.protocol.Column`) plus a payload the
tails point into; :class:`CommandBatch` fills rows from typed messages or from (type,
fields), :func:`encode_batch` writes them all into one buffer, :func:`decode_batch` reads
many responses back.  Import them from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Iterator

from gpuhil import _protocol
from gpuhil.protocol import decoding  # noqa: F401 - every message class registered
from gpuhil.protocol.constants import ROW_WIDTH, Column, ProtocolError, bytes_view
from gpuhil.protocol.layouts import LAYOUTS
from gpuhil.protocol.message import MESSAGE_CLASSES, CtrlHdr, Message, RawMessage

__all__ = ["BatchLayout", "CommandBatch", "DecodedBatch", "decode_batch", "encode_batch"]


_NO_HDR = CtrlHdr()


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
    end = _protocol.encode_batch(bytes_view(out), rows, payload, offsets, lengths, start, align)
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
        """Forget every message (the rows keep their allocation)."""
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
        h = hdr or _NO_HDR
        try:
            _protocol.set_row(self.rows, self.count, type, h.flags, h.fence_id, h.ctx_id,
                              h.ring_idx, len(self.payload), len(tail), fields)
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
        return self.row(i)[Column.TYPE]

    def row(self, i: int) -> tuple[int, ...]:
        """The ROW_WIDTH values of message i."""
        if not 0 <= i < self.count:
            raise IndexError(f"message {i} of a batch of {self.count}")
        return tuple(self.rows[i * ROW_WIDTH:(i + 1) * ROW_WIDTH])

    def message(self, i: int) -> Message:
        """Message i as its dataclass."""
        r = self.row(i)
        t = r[Column.TYPE]
        nfields = len(LAYOUTS[t].fields)
        toff, tlen = r[Column.TAIL_OFF], r[Column.TAIL_LEN]
        tail = bytes(bytes_view(self.src)[toff:toff + tlen]) if tlen else b""
        return MESSAGE_CLASSES[t].from_wire(
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
    count = _protocol.decode_batch(bytes_view(src), offsets, lengths, rows, strict)
    return DecodedBatch(src, rows, count)
