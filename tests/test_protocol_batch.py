"""virtio-gpu protocol batch API: C encode/decode of many messages in one buffer."""
from __future__ import annotations

import mmap
import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhil.protocol as P
from gpuhil import _protocol
from tests.test_protocol_strategies import any_message, reference_encode

messages = st.lists(any_message, min_size=1, max_size=40)


@settings(max_examples=80, deadline=None)
@given(msgs=messages, align=st.sampled_from([1, 4, 8, 64]), start=st.integers(0, 100))
def test_batch_encode_matches_per_message_encoding(msgs, align, start):
    """Each span of the batch buffer is the reference encoding of its message, aligned,
    in order, without overlap; decode_batch gives the messages back."""
    batch = P.CommandBatch(len(msgs))
    for i, m in enumerate(msgs):
        assert batch.append(m) == i
    buf = bytearray(start + sum(len(reference_encode(m)) + align for m in msgs))
    lay = batch.encode_into(buf, start=start, align=align)
    assert len(lay) == len(msgs)
    prev_end = start
    for m, (off, n) in zip(msgs, lay.spans()):
        assert off % align == 0 and off >= prev_end and off - prev_end < align
        assert bytes(buf[off:off + n]) == reference_encode(m)
        prev_end = off + n
    assert lay.end == prev_end
    decoded = P.decode_batch(buf, lay.offsets, lay.lengths)
    assert len(decoded) == len(msgs)
    assert list(decoded.messages()) == msgs
    assert [decoded.type(i) for i in range(len(msgs))] == [m.TYPE for m in msgs]


@settings(max_examples=30, deadline=None)
@given(msgs=messages)
def test_rows_are_the_documented_columns(msgs):
    """A decoded row holds type, header, tail location in src and the layout's fields."""
    batch = P.CommandBatch(len(msgs))
    for m in msgs:
        batch.append(m)
    buf = bytearray(sum(len(reference_encode(m)) + 8 for m in msgs))
    lay = batch.encode_into(buf)
    decoded = P.decode_batch(buf, lay.offsets, lay.lengths)
    for i, m in enumerate(msgs):
        row = decoded.row(i)
        lay_t = P.layout(m.TYPE)
        h = m.hdr
        assert row[:5] == (m.TYPE, h.flags, h.fence_id, h.ctx_id, h.ring_idx)
        fields, tail = m.wire()
        n = len(lay_t.fields)
        assert row[P.Column.FIELDS:P.Column.FIELDS + n] == fields
        assert set(row[P.Column.FIELDS + n:]) <= {0}
        toff, tlen = row[P.Column.TAIL_OFF], row[P.Column.TAIL_LEN]
        if lay_t.tail_kind == "trailing":
            assert bytes(buf[toff:toff + tlen]) == tail
            assert toff == lay.offsets[i] + lay_t.size
        elif lay_t.tail_kind == "inline":
            assert tlen == lay_t.tail_max
            assert bytes(buf[toff:toff + tlen]) == tail + bytes(tlen - len(tail))
        else:
            assert tlen == 0


def test_bulk_rows_without_dataclasses_into_mmap():
    """Rows written directly (the raw driver's path) encode into an mmap."""
    n = 1000
    rows = array("Q", bytes(8 * P.ROW_WIDTH * n))
    payload = bytearray()
    for i in range(n):
        base = i * P.ROW_WIDTH
        if i % 2:
            rows[base] = P.CtrlType.CMD_RESOURCE_CREATE_2D
            rows[base + P.Column.FIELDS:base + P.Column.FIELDS + 4] = array("Q", [i, 1, 64, 32])
        else:
            rows[base] = P.CtrlType.CMD_SUBMIT_3D
            rows[base + P.Column.TAIL_OFF] = len(payload)
            rows[base + P.Column.TAIL_LEN] = 4
            rows[base + P.Column.FIELDS] = 4
            payload += struct.pack("<I", i)
        rows[base + P.Column.FLAGS] = P.HdrFlag.FENCE
        rows[base + P.Column.FENCE_ID] = i
    with mmap.mmap(-1, n * 48) as mm:
        lay = P.encode_batch(mm, rows, payload)
        assert lay.end == 500 * 40 + 500 * 40  # submit: 32 + 4 -> aligned 40
        for i in (0, 1, 998, 999):
            msg = P.decode(mm, lay.offsets[i], lay.lengths[i])
            assert msg.hdr == P.CtrlHdr(flags=1, fence_id=i)
            if i % 2:
                assert msg == P.ResourceCreate2D(i, 1, 64, 32, hdr=msg.hdr)
            else:
                assert msg == P.Submit3D(struct.pack("<I", i), hdr=msg.hdr)


def test_add_by_type_and_fields():
    """add() takes a type, fields in layout order, a header and a tail."""
    batch = P.CommandBatch(2)
    batch.add(P.CtrlType.CMD_CTX_CREATE, (3, 4), hdr=P.CtrlHdr(ctx_id=9), tail=b"abc")
    batch.add(P.CtrlType.CMD_GET_CAPSET, (P.Capset.VENUS, 0))
    buf = bytearray(256)
    lay = batch.encode_into(buf)
    assert P.decode(buf, lay.offsets[0], lay.lengths[0]) == P.CtxCreate(
        b"abc", 4, hdr=P.CtrlHdr(ctx_id=9))
    assert P.decode(buf, lay.offsets[1], lay.lengths[1]) == P.GetCapset(4, 0)
    with pytest.raises(P.ProtocolError, match="full"):
        batch.add(P.CtrlType.CMD_GET_DISPLAY_INFO)
    batch.clear()
    assert len(batch) == 0 and batch.payload == bytearray()


def test_batch_errors_name_the_message_index():
    """The first bad row is reported with its index, type and sizes."""
    batch = P.CommandBatch(4)
    batch.append(P.GetDisplayInfo())
    batch.add(0x01FF)
    with pytest.raises(P.ProtocolError, match="message 1: unknown type 0x01ff") as info:
        batch.encode_into(bytearray(256))
    assert info.value.index == 1 and info.value.type == 0x01FF

    batch = P.CommandBatch(3)
    batch.append(P.GetDisplayInfo())
    batch.append(P.ResourceCreate2D(width=1 << 33))
    with pytest.raises(P.ProtocolError, match="message 1: .*does not fit"):
        batch.encode_into(bytearray(256))

    batch = P.CommandBatch(3)
    for _ in range(3):
        batch.append(P.ResourceCreate2D())
    with pytest.raises(P.ProtocolError, match="message 2: .*needs 40 bytes, 32 left") as info:
        batch.encode_into(bytearray(112))
    assert info.value.index == 2 and info.value.expected == 40

    rows = array("Q", bytes(8 * P.ROW_WIDTH))
    rows[0] = P.CtrlType.CMD_SUBMIT_3D
    rows[P.Column.TAIL_OFF], rows[P.Column.TAIL_LEN] = 10, 8
    with pytest.raises(P.ProtocolError, match="outside the payload"):
        P.encode_batch(bytearray(100), rows, b"0123456789")
    with pytest.raises(P.ProtocolError):
        P.CommandBatch(1).add(P.CtrlType.CMD_GET_CAPSET, (-1,))
    with pytest.raises(P.ProtocolError, match="RawMessage"):
        P.CommandBatch(1).append(P.RawMessage(0x100))
    with pytest.raises(ValueError, match="multiple"):
        P.encode_batch(bytearray(100), array("Q", [0] * (P.ROW_WIDTH + 1)))
    with pytest.raises(ValueError, match="power of two"):
        P.CommandBatch(1).encode_into(bytearray(100), align=3)


def test_decode_batch_errors():
    """Short, unknown and out-of-buffer messages raise naming the index."""
    good = P.encode(P.ResourceUnref(1))
    buf = good + good[:20] + P.encode(P.RawMessage(0x7777)) + good + b"\0"
    with pytest.raises(P.ProtocolError, match="message 1: 20 bytes") as info:
        P.decode_batch(buf, [0, 32], [32, 20])
    assert info.value.index == 1
    with pytest.raises(P.ProtocolError, match="message 0: unknown type 0x7777"):
        P.decode_batch(buf, [52], [24])
    with pytest.raises(P.ProtocolError, match="trailing"):
        P.decode_batch(buf, [76], [33])
    assert P.decode_batch(buf, [76], [33], strict=False).message(0) == P.ResourceUnref(1)
    with pytest.raises(IndexError):
        P.decode_batch(buf, [100], [32])
    with pytest.raises(IndexError):
        P.decode_batch(buf, [0], [32]).message(1)
    with pytest.raises(ValueError):
        P.decode_batch(buf, [0, 1], [32])
    with pytest.raises(ValueError):
        P.decode_batch(buf, [0], [32], rows=array("Q", [0] * 3))


def test_add_rejects_too_many_fields_and_bad_rows():
    """A row holds 17 scalar fields; set_row refuses more and out-of-range rows."""
    with pytest.raises(P.ProtocolError, match="17"):
        P.CommandBatch(1).add(P.CtrlType.CMD_SET_SCANOUT_BLOB, range(18))
    batch = P.CommandBatch(1)
    batch.add(P.CtrlType.CMD_SET_SCANOUT_BLOB, range(17))
    buf = bytearray(96)
    batch.encode_into(buf)
    msg = P.decode(buf)
    assert (msg.r, msg.strides, msg.offsets) == (P.Rect(0, 1, 2, 3), (9, 10, 11, 12),
                                                 (13, 14, 15, 16))
    with pytest.raises(IndexError):
        _protocol.set_row(batch.rows, 1, 0, 0, 0, 0, 0, 0, 0, ())
