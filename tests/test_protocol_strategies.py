"""Hypothesis strategies for every virtio-gpu message, and an independent reference encoder.

The reference layouts below are written from /work/shared/reference/ABI.md §1.6 with plain
`struct` format strings; they share no code with gpuhil._protocol.
"""
from __future__ import annotations

import struct

from hypothesis import strategies as st

import gpuhil.protocol as P

u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)

hdrs = st.builds(P.CtrlHdr, u32, u64, u32, u8)
rects = st.builds(P.Rect, u32, u32, u32, u32)
boxes = st.builds(P.Box, u32, u32, u32, u32, u32, u32)
cursor_positions = st.builds(P.CursorPos, u32, u32, u32)
mem_entries = st.lists(st.builds(P.MemEntry, u64, u32), max_size=8).map(tuple)
quads = st.tuples(u32, u32, u32, u32)


def _m(cls, *args):
    return st.builds(cls, *args, hdr=hdrs)


STRATEGIES = {
    P.GetDisplayInfo: _m(P.GetDisplayInfo),
    P.ResourceCreate2D: _m(P.ResourceCreate2D, u32, u32, u32, u32),
    P.ResourceUnref: _m(P.ResourceUnref, u32),
    P.SetScanout: _m(P.SetScanout, rects, u32, u32),
    P.ResourceFlush: _m(P.ResourceFlush, rects, u32),
    P.TransferToHost2D: _m(P.TransferToHost2D, rects, u64, u32),
    P.ResourceAttachBacking: _m(P.ResourceAttachBacking, u32, mem_entries),
    P.ResourceDetachBacking: _m(P.ResourceDetachBacking, u32),
    P.GetCapsetInfo: _m(P.GetCapsetInfo, u32),
    P.GetCapset: _m(P.GetCapset, u32, u32),
    P.GetEdid: _m(P.GetEdid, u32),
    P.ResourceAssignUuid: _m(P.ResourceAssignUuid, u32),
    P.ResourceCreateBlob: _m(P.ResourceCreateBlob, u32, u32, u32, u64, u64, mem_entries),
    P.SetScanoutBlob: _m(P.SetScanoutBlob, rects, u32, u32, u32, u32, u32, quads, quads),
    P.CtxCreate: _m(P.CtxCreate, st.binary(max_size=64), u32),
    P.CtxDestroy: _m(P.CtxDestroy),
    P.CtxAttachResource: _m(P.CtxAttachResource, u32),
    P.CtxDetachResource: _m(P.CtxDetachResource, u32),
    P.ResourceCreate3D: _m(P.ResourceCreate3D, *[u32] * 11),
    P.TransferToHost3D: _m(P.TransferToHost3D, boxes, u64, u32, u32, u32, u32),
    P.TransferFromHost3D: _m(P.TransferFromHost3D, boxes, u64, u32, u32, u32, u32),
    P.Submit3D: _m(P.Submit3D, st.binary(max_size=256)),
    P.ResourceMapBlob: _m(P.ResourceMapBlob, u32, u64),
    P.ResourceUnmapBlob: _m(P.ResourceUnmapBlob, u32),
    P.UpdateCursor: _m(P.UpdateCursor, cursor_positions, u32, u32, u32),
    P.MoveCursor: _m(P.MoveCursor, cursor_positions, u32, u32, u32),
    P.RespOkNodata: _m(P.RespOkNodata),
    P.RespOkDisplayInfo: _m(P.RespOkDisplayInfo, st.lists(
        st.builds(P.DisplayOne, rects, u32, u32), min_size=16, max_size=16).map(tuple)),
    P.RespOkCapsetInfo: _m(P.RespOkCapsetInfo, u32, u32, u32),
    P.RespOkCapset: _m(P.RespOkCapset, st.binary(max_size=512)),
    P.RespOkEdid: _m(P.RespOkEdid, st.binary(max_size=1024)),
    P.RespOkResourceUuid: _m(P.RespOkResourceUuid, st.binary(min_size=16, max_size=16)),
    P.RespOkMapInfo: _m(P.RespOkMapInfo, u32),
    P.RespErrUnspec: _m(P.RespErrUnspec),
    P.RespErrOutOfMemory: _m(P.RespErrOutOfMemory),
    P.RespErrInvalidScanoutId: _m(P.RespErrInvalidScanoutId),
    P.RespErrInvalidResourceId: _m(P.RespErrInvalidResourceId),
    P.RespErrInvalidContextId: _m(P.RespErrInvalidContextId),
    P.RespErrInvalidParameter: _m(P.RespErrInvalidParameter),
}

any_message = st.one_of(*STRATEGIES.values())

# ---- reference encoder, from ABI.md (type values from its §1.2 table)

REF_TYPES = {
    P.GetDisplayInfo: 0x0100, P.ResourceCreate2D: 0x0101, P.ResourceUnref: 0x0102,
    P.SetScanout: 0x0103, P.ResourceFlush: 0x0104, P.TransferToHost2D: 0x0105,
    P.ResourceAttachBacking: 0x0106, P.ResourceDetachBacking: 0x0107,
    P.GetCapsetInfo: 0x0108, P.GetCapset: 0x0109, P.GetEdid: 0x010A,
    P.ResourceAssignUuid: 0x010B, P.ResourceCreateBlob: 0x010C, P.SetScanoutBlob: 0x010D,
    P.CtxCreate: 0x0200, P.CtxDestroy: 0x0201, P.CtxAttachResource: 0x0202,
    P.CtxDetachResource: 0x0203, P.ResourceCreate3D: 0x0204, P.TransferToHost3D: 0x0205,
    P.TransferFromHost3D: 0x0206, P.Submit3D: 0x0207, P.ResourceMapBlob: 0x0208,
    P.ResourceUnmapBlob: 0x0209, P.UpdateCursor: 0x0300, P.MoveCursor: 0x0301,
    P.RespOkNodata: 0x1100, P.RespOkDisplayInfo: 0x1101, P.RespOkCapsetInfo: 0x1102,
    P.RespOkCapset: 0x1103, P.RespOkEdid: 0x1104, P.RespOkResourceUuid: 0x1105,
    P.RespOkMapInfo: 0x1106, P.RespErrUnspec: 0x1200, P.RespErrOutOfMemory: 0x1201,
    P.RespErrInvalidScanoutId: 0x1202, P.RespErrInvalidResourceId: 0x1203,
    P.RespErrInvalidContextId: 0x1204, P.RespErrInvalidParameter: 0x1205,
}

#: fixed struct sizes from ABI.md §1.6
REF_SIZES = {
    P.GetDisplayInfo: 24, P.ResourceCreate2D: 40, P.ResourceUnref: 32, P.SetScanout: 48,
    P.ResourceFlush: 48, P.TransferToHost2D: 56, P.ResourceAttachBacking: 32,
    P.ResourceDetachBacking: 32, P.GetCapsetInfo: 32, P.GetCapset: 32, P.GetEdid: 32,
    P.ResourceAssignUuid: 32, P.ResourceCreateBlob: 56, P.SetScanoutBlob: 96, P.CtxCreate: 96,
    P.CtxDestroy: 24, P.CtxAttachResource: 32, P.CtxDetachResource: 32,
    P.ResourceCreate3D: 72, P.TransferToHost3D: 72, P.TransferFromHost3D: 72, P.Submit3D: 32,
    P.ResourceMapBlob: 40, P.ResourceUnmapBlob: 32, P.UpdateCursor: 56, P.MoveCursor: 56,
    P.RespOkNodata: 24, P.RespOkDisplayInfo: 408, P.RespOkCapsetInfo: 40, P.RespOkCapset: 24,
    P.RespOkEdid: 1056, P.RespOkResourceUuid: 40, P.RespOkMapInfo: 32,
    P.RespErrUnspec: 24, P.RespErrOutOfMemory: 24, P.RespErrInvalidScanoutId: 24,
    P.RespErrInvalidResourceId: 24, P.RespErrInvalidContextId: 24,
    P.RespErrInvalidParameter: 24,
}


def _entries(entries) -> bytes:
    return b"".join(struct.pack("<QI4x", e.addr, e.length) for e in entries)


def _rect(r) -> tuple:
    return (r.x, r.y, r.width, r.height)


def _body(m) -> bytes:  # noqa: C901 - one branch per struct of ABI.md, on purpose
    c = type(m)
    if c in (P.GetDisplayInfo, P.CtxDestroy, P.RespOkNodata) or isinstance(m, P.RespErr):
        return b""
    if c is P.ResourceCreate2D:
        return struct.pack("<IIII", m.resource_id, m.format, m.width, m.height)
    if c in (P.ResourceUnref, P.ResourceDetachBacking, P.ResourceAssignUuid,
             P.CtxAttachResource, P.CtxDetachResource, P.ResourceUnmapBlob):
        return struct.pack("<I4x", m.resource_id)
    if c is P.SetScanout:
        return struct.pack("<6I", *_rect(m.r), m.scanout_id, m.resource_id)
    if c is P.ResourceFlush:
        return struct.pack("<5I4x", *_rect(m.r), m.resource_id)
    if c is P.TransferToHost2D:
        return struct.pack("<4IQI4x", *_rect(m.r), m.offset, m.resource_id)
    if c is P.ResourceAttachBacking:
        return struct.pack("<II", m.resource_id, len(m.entries)) + _entries(m.entries)
    if c is P.GetCapsetInfo:
        return struct.pack("<I4x", m.capset_index)
    if c is P.GetCapset:
        return struct.pack("<II", m.capset_id, m.capset_version)
    if c is P.GetEdid:
        return struct.pack("<I4x", m.scanout)
    if c is P.ResourceCreateBlob:
        return (struct.pack("<IIIIQQ", m.resource_id, m.blob_mem, m.blob_flags, len(m.entries),
                            m.blob_id, m.size) + _entries(m.entries))
    if c is P.SetScanoutBlob:
        return struct.pack("<4I5I4x4I4I", *_rect(m.r), m.scanout_id, m.resource_id, m.width,
                           m.height, m.format, *m.strides, *m.offsets)
    if c is P.CtxCreate:
        return struct.pack("<II64s", len(m.debug_name), m.context_init, m.debug_name)
    if c is P.ResourceCreate3D:
        return struct.pack("<11I4x", m.resource_id, m.target, m.format, m.bind, m.width,
                           m.height, m.depth, m.array_size, m.last_level, m.nr_samples, m.flags)
    if c in (P.TransferToHost3D, P.TransferFromHost3D):
        b = m.box
        return struct.pack("<6IQ4I", b.x, b.y, b.z, b.w, b.h, b.d, m.offset, m.resource_id,
                           m.level, m.stride, m.layer_stride)
    if c is P.Submit3D:
        return struct.pack("<I4x", len(m.command_stream)) + m.command_stream
    if c is P.ResourceMapBlob:
        return struct.pack("<I4xQ", m.resource_id, m.offset)
    if c in (P.UpdateCursor, P.MoveCursor):
        return struct.pack("<3I4x3I4x", m.pos.scanout_id, m.pos.x, m.pos.y, m.resource_id,
                           m.hot_x, m.hot_y)
    if c is P.RespOkDisplayInfo:
        modes = list(m.pmodes) + [P.DisplayOne()] * (16 - len(m.pmodes))
        return b"".join(struct.pack("<6I", *_rect(d.r), d.enabled, d.flags) for d in modes)
    if c is P.RespOkCapsetInfo:
        return struct.pack("<III4x", m.capset_id, m.capset_max_version, m.capset_max_size)
    if c is P.RespOkCapset:
        return m.capset_data
    if c is P.RespOkEdid:
        return struct.pack("<I4x1024s", len(m.edid), m.edid)
    if c is P.RespOkResourceUuid:
        return struct.pack("<16s", m.uuid)
    if c is P.RespOkMapInfo:
        return struct.pack("<I4x", m.map_info)
    raise AssertionError(f"no reference layout for {c.__name__}")


def reference_encode(m) -> bytes:
    """The wire bytes of m per ABI.md: header <type flags fence_id ctx_id ring_idx pad[3]>."""
    h = m.hdr
    return struct.pack("<IIQIB3x", REF_TYPES[type(m)], h.flags, h.fence_id, h.ctx_id,
                       h.ring_idx) + _body(m)


def test_every_message_class_has_a_strategy_and_a_reference_layout():
    """The strategies and reference tables here cover every control type gpuhil knows."""
    known = set(P.MESSAGE_CLASSES.values())
    assert known == set(STRATEGIES) == set(REF_TYPES) == set(REF_SIZES)
    assert sorted(REF_TYPES.values()) == sorted(P.MESSAGE_CLASSES)
