"""virtio-gpu protocol: round trips against an independent layout, malformed messages, errors."""
from __future__ import annotations

import mmap
import pickle
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpuhil.protocol as P
from gpuhil import _protocol
from gpuhil.errors import GpuhilError
from tests.test_protocol_strategies import (REF_SIZES, REF_TYPES, STRATEGIES,
                                            reference_encode, u32)

ALL_CLASSES = sorted(STRATEGIES, key=lambda c: REF_TYPES[c])


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_round_trip_matches_reference_layout(cls, data):
    """encode(m) equals the struct.pack layout of ABI.md and decode(encode(m)) == m; the
    message survives pickling (the lab agent returns them)."""
    msg = data.draw(STRATEGIES[cls])
    wire = P.encode(msg)
    assert wire == reference_encode(msg)
    assert P.decode(wire) == msg
    assert type(P.decode(wire)) is cls
    assert msg.encode() == wire and P.encoded_size(msg) == len(wire)
    assert pickle.loads(pickle.dumps(msg)) == msg


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_fixed_sizes_match_abi_md(cls):
    """The empty message of each type is exactly the struct size ABI.md gives."""
    msg = cls()
    assert len(P.encode(msg)) == REF_SIZES[cls]
    assert P.layout(msg.TYPE).size == REF_SIZES[cls]


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
def test_wire_fields_match_layout(cls):
    """Each dataclass produces as many scalar fields as its C layout has columns."""
    fields, _ = cls().wire()
    assert len(fields) == len(P.layout(cls.TYPE).fields)


@settings(max_examples=50, deadline=None)
@given(msg=STRATEGIES[P.ResourceCreateBlob], offset=st.integers(0, 64))
def test_encode_into_any_writable_buffer(msg, offset):
    """The same bytes land in a bytearray, a memoryview slice, an mmap and an array."""
    ref = reference_encode(msg)
    size = offset + len(ref)
    ba = bytearray(size + 3)
    assert P.encode_into(msg, ba, offset) == len(ref)
    assert ba[offset:size] == ref and ba[:offset] == bytes(offset)
    backing = bytearray(size + 10)
    assert P.encode_into(msg, memoryview(backing)[5:], offset) == len(ref)
    assert backing[5 + offset:5 + size] == ref
    with mmap.mmap(-1, max(size, 1)) as mm:
        P.encode_into(msg, mm, offset)
        assert mm[offset:size] == ref
        assert P.decode(mm, offset, len(ref)) == msg


def test_header_fields_are_settable_on_every_command():
    """flags/fence_id/ctx_id/ring_idx reach the header bytes of every message type."""
    hdr = P.CtrlHdr.fenced(0x1122334455667788, ctx_id=0xDEADBEEF, ring_idx=0xAB)
    assert hdr.flags == P.HdrFlag.FENCE | P.HdrFlag.INFO_RING_IDX == 3
    for cls in ALL_CLASSES:
        wire = P.encode(cls(hdr=hdr))
        assert struct.unpack_from("<IIQIB", wire) == (
            REF_TYPES[cls], 3, 0x1122334455667788, 0xDEADBEEF, 0xAB)
        assert wire[21:24] == b"\0\0\0"
    assert P.CtrlHdr.fenced(5).flags == P.HdrFlag.FENCE


def test_display_info_pads_to_16_scanouts():
    """A short pmodes list is zero-padded; decode returns all 16 with the first as given."""
    one = P.DisplayOne(P.Rect(0, 0, 1280, 800), enabled=1)
    wire = P.encode(P.RespOkDisplayInfo((one,)))
    assert len(wire) == 408
    assert wire[24:48] == struct.pack("<6I", 0, 0, 1280, 800, 1, 0)
    decoded = P.decode(wire)
    assert decoded.pmodes[0] == one and decoded.pmodes[1:] == (P.DisplayOne(),) * 15


def test_display_info_from_raw_path_capture():
    """The GET_DISPLAY_INFO response bytes RAW-PATH.md captured from QEMU decode as 1280x800."""
    wire = bytearray(408)
    wire[0:2] = b"\x01\x11"
    wire[0x20:0x2c] = bytes.fromhex("0005000020030000" "01000000")
    msg = P.decode(bytes(wire))
    assert isinstance(msg, P.RespOkDisplayInfo)
    assert msg.pmodes[0] == P.DisplayOne(P.Rect(0, 0, 1280, 800), 1, 0)


def test_capset_info_from_raw_path_capture():
    """RESP_OK_CAPSET_INFO idx0 from RAW-PATH.md: VIRGL, max_version 1, max_size 308."""
    wire = bytes.fromhex("021100000000000000000000000000000000000000000000"
                         "0100000001000000" "3401000000000000")
    assert P.decode(wire) == P.RespOkCapsetInfo(capset_id=P.Capset.VIRGL,
                                                capset_max_version=1, capset_max_size=308)


def test_map_info_cache_bits():
    """map_info & VIRTIO_GPU_MAP_CACHE_MASK gives the caching type."""
    assert P.RespOkMapInfo(map_info=0x33).cache == P.MapCache.WC


def test_response_sizes_for_commands():
    """Each command's success response and the room it needs (RAW-PATH.md: GET_CAPSET of
    VIRGL v1 came back with used.len 332 = 24 + 308)."""
    T = P.CtrlType
    assert P.response_size(T.CMD_GET_DISPLAY_INFO) == 408
    assert P.response_size(T.CMD_GET_CAPSET_INFO) == 40
    assert P.response_size(T.CMD_GET_CAPSET, capset_size=308) == 332
    assert P.response_size(T.CMD_GET_EDID) == 1056
    assert P.response_size(T.CMD_RESOURCE_ASSIGN_UUID) == 40
    assert P.response_size(T.CMD_RESOURCE_MAP_BLOB) == 32
    assert P.ok_response(T.CMD_SUBMIT_3D) == T.RESP_OK_NODATA
    assert P.response_size(T.CMD_RESOURCE_CREATE_BLOB) == 24
    assert P.ok_response(T.CMD_MOVE_CURSOR) is None and P.response_size(T.CMD_UPDATE_CURSOR) == 0
    with pytest.raises(P.ProtocolError, match="response"):
        P.ok_response(T.RESP_OK_NODATA)
    with pytest.raises(P.ProtocolError):
        P.ok_response(0x01FF)


# ---------------------------------------------------------------- malformed input

@settings(max_examples=40, deadline=None)
@given(msg=st.one_of(*STRATEGIES.values()), data=st.data())
def test_truncated_message_is_rejected_with_type_and_sizes(msg, data):
    """Any cut below the fixed size raises ProtocolError naming type and both sizes."""
    wire = P.encode(msg)
    fixed = P.layout(msg.TYPE).size
    cut = data.draw(st.integers(0, fixed - 1))
    with pytest.raises(P.ProtocolError) as info:
        P.decode(wire[:cut])
    err = info.value
    assert err.size == cut
    if cut >= 24:
        assert err.type == msg.TYPE and err.expected == fixed
        assert P.CtrlType(msg.TYPE).name in str(err) and str(fixed) in str(err)
    else:
        assert err.expected == 24 and "virtio_gpu_ctrl_hdr" in str(err)


@pytest.mark.parametrize("cls", [c for c in ALL_CLASSES
                                 if P.layout(c.TYPE).tail_kind != "trailing"],
                         ids=lambda c: c.__name__)
def test_trailing_bytes_rejected_when_strict(cls):
    """Extra bytes after a fixed-size message are an error, or ignored with strict=False."""
    wire = P.malformed(cls(), trailing=b"\xAA" * 8)
    assert len(wire) == REF_SIZES[cls] + 8
    with pytest.raises(P.ProtocolError, match="trailing bytes") as info:
        P.decode(wire)
    assert info.value.size == REF_SIZES[cls] + 8 and info.value.expected == REF_SIZES[cls]
    assert P.decode(wire, strict=False) == P.decode(P.encode(cls()))


def test_unknown_type_rejected_or_raw():
    """An unknown control type raises naming it; allow_unknown gives a RawMessage back."""
    wire = P.encode(P.RawMessage(0x01FF, b"\x01\x02", hdr=P.CtrlHdr(ctx_id=4)))
    assert wire == struct.pack("<IIQIB3x", 0x01FF, 0, 0, 4, 0) + b"\x01\x02"
    with pytest.raises(P.ProtocolError, match="0x01ff") as info:
        P.decode(wire)
    assert info.value.type == 0x01FF
    raw = P.decode(wire, allow_unknown=True)
    assert raw == P.RawMessage(0x01FF, b"\x01\x02", hdr=P.CtrlHdr(ctx_id=4))
    with pytest.raises(P.ProtocolError):
        P.layout(0x01FF)
    with pytest.raises(P.ProtocolError):
        P.message_class(0x1300)


def test_malformed_type_length_trailing_and_patches():
    """malformed() changes exactly the bytes asked for."""
    msg = P.ResourceCreate2D(7, P.Format.B8G8R8X8_UNORM, 16, 16)
    good = P.encode(msg)
    assert P.malformed(msg) == good
    assert P.malformed(msg, type=0xFFFF_FFFF) == b"\xff\xff\xff\xff" + good[4:]
    assert P.malformed(msg, length=30) == good[:30]
    assert P.malformed(msg, length=44) == good + bytes(4)
    assert P.malformed(msg, trailing=b"xy") == good + b"xy"
    patched = P.malformed(msg, patches={21: b"\x01\x02\x03", 40: b"\xEE"})
    assert patched[21:24] == b"\x01\x02\x03" and patched[40:] == b"\xEE"
    assert patched[:21] == good[:21] and patched[24:40] == good[24:40]
    # a nonzero header padding is not the decoder's business: it still decodes
    assert P.decode(patched[:40]) == msg


def test_lying_counts_are_encoded_as_asked_and_rejected_when_strict():
    """nr_entries / size / nlen overrides reach the wire; strict decode catches them."""
    entries = (P.MemEntry(0x1000, 4096), P.MemEntry(0x5000, 4096))
    lie = P.ResourceAttachBacking(1, entries, nr_entries=3)
    wire = P.encode(lie)
    assert struct.unpack_from("<I", wire, 28) == (3,) and len(wire) == 32 + 32
    with pytest.raises(P.ProtocolError, match="nr_entries=3") as info:
        P.decode(wire)
    assert info.value.expected == 32 + 48 and info.value.size == 64
    assert P.decode(wire, strict=False) == lie

    short = P.ResourceCreateBlob(2, P.BlobMem.GUEST, 0, 0, 8192, entries, nr_entries=1)
    with pytest.raises(P.ProtocolError):
        P.decode(P.encode(short))
    assert P.decode(P.encode(short), strict=False).entries == entries[:1]

    sub = P.Submit3D(b"abcdef", size=100)
    wire = P.encode(sub)
    assert struct.unpack_from("<I", wire, 24) == (100,) and wire[32:] == b"abcdef"
    with pytest.raises(P.ProtocolError, match="size=100"):
        P.decode(wire)
    assert P.decode(wire, strict=False) == sub

    ctx = P.CtxCreate(b"name", 4, nlen=200)
    assert struct.unpack_from("<II", P.encode(ctx), 24) == (200, 4)
    assert P.decode(P.encode(ctx)) == P.CtxCreate(b"name" + bytes(60), 4, nlen=200)


def test_edid_size_override():
    """RespOkEdid.size is written as given; decode keeps it when beyond the 1024 bytes."""
    wire = P.encode(P.RespOkEdid(b"\x00\xff" * 4, size=2000))
    assert struct.unpack_from("<I", wire, 24) == (2000,)
    decoded = P.decode(wire)
    assert decoded.size == 2000 and decoded.edid[:8] == b"\x00\xff" * 4
    assert len(decoded.edid) == 1024


# ---------------------------------------------------------------- encode errors

def test_value_out_of_range_is_a_protocol_error():
    """u32 fields reject 2**32, u8 ring_idx rejects 256, negatives are refused."""
    with pytest.raises(P.ProtocolError, match="RESOURCE_CREATE_2D"):
        P.encode(P.ResourceCreate2D(width=1 << 32))
    with pytest.raises(P.ProtocolError):
        P.encode(P.ResourceCreate2D(hdr=P.CtrlHdr(ring_idx=256)))
    with pytest.raises(P.ProtocolError):
        P.encode(P.ResourceMapBlob(offset=-1))
    with pytest.raises(P.ProtocolError):
        P.encode(P.RawMessage(0x100, hdr=P.CtrlHdr(flags=-1)))
    assert len(P.encode(P.ResourceMapBlob(offset=(1 << 64) - 1))) == 40


def test_inline_tail_too_long():
    """debug_name over 64 bytes, edid over 1024, uuid over 16 cannot be encoded."""
    for msg, room in ((P.CtxCreate(b"x" * 65), 64), (P.RespOkEdid(b"e" * 1025), 1024),
                      (P.RespOkResourceUuid(bytes(17)), 16),
                      (P.RespOkDisplayInfo((P.DisplayOne(),) * 17), 384)):
        with pytest.raises(P.ProtocolError, match=f"room for {room}"):
            P.encode(msg)


def test_buffer_too_small_and_read_only():
    """Encoding into too little room raises with the sizes; bytes are not writable."""
    msg = P.ResourceAttachBacking(1, (P.MemEntry(0, 1),))
    buf = bytearray(47)
    with pytest.raises(P.ProtocolError, match="needs 48 bytes, 47 left") as info:
        P.encode_into(msg, buf)
    assert info.value.expected == 48 and buf == bytearray(47)
    with pytest.raises(P.ProtocolError):
        P.encode_into(P.RawMessage(0x100, b"abc"), bytearray(26))
    with pytest.raises((TypeError, ValueError, BufferError)):
        P.encode_into(msg, bytes(64))
    with pytest.raises(IndexError):
        P.encode_into(msg, bytearray(64), 65)


def test_protocol_error_is_a_gpuhil_error_and_pickles():
    """ProtocolError keeps its attributes across pickling (the lab agent pickles errors)."""
    with pytest.raises(P.ProtocolError) as info:
        P.decode(P.encode(P.GetCapset())[:30])
    err = info.value
    assert isinstance(err, GpuhilError) and isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert (str(again), again.type, again.size, again.expected) == (
        str(err), err.type, err.size, err.expected)


# ---------------------------------------------------------------- config

@given(u32, u32, u32, u32, u32)
def test_config_round_trip(a, b, c, d, e):
    """virtio_gpu_config is five le32 in 20 bytes, blob_alignment last."""
    cfg = P.VirtioGpuConfig(a, b, c, d, e)
    wire = cfg.encode()
    assert wire == struct.pack("<5I", a, b, c, d, e)
    assert P.VirtioGpuConfig.decode(wire) == cfg


def test_config_errors():
    """A 6.12-sized (16-byte) config is rejected strictly; room and range are checked."""
    with pytest.raises(P.ProtocolError, match="20 bytes, got 16"):
        P.VirtioGpuConfig.decode(bytes(16))
    assert P.VirtioGpuConfig.decode(bytes(24), strict=False) == P.VirtioGpuConfig()
    with pytest.raises(P.ProtocolError):
        P.VirtioGpuConfig().encode_into(bytearray(19))
    with pytest.raises(P.ProtocolError):
        P.VirtioGpuConfig(blob_alignment=1 << 32).encode()


# ---------------------------------------------------------------- ABI and enums

CANONICAL_KEY = re.compile(
    r"^(VIRTIO_GPU_[A-Z0-9_]+"
    r"|sizeof\(struct virtio_gpu_[a-z0-9_]+\)"
    r"|sizeof\(\(\(struct virtio_gpu_[a-z0-9_]+ \*\)0\)->[a-z_]+\)"
    r"|offsetof\(struct virtio_gpu_[a-z0-9_]+, [a-z_]+(\[\d\])?(\.[a-z_]+)?\))$")


def test_abi_keys_are_canonical_c_expressions():
    """Every ABI key is a C expression over canonical uapi names (test_abi.py compiles them)."""
    assert P.ABI is _protocol.ABI
    bad = [k for k in P.ABI if not CANONICAL_KEY.match(k)]
    assert not bad
    assert all(isinstance(v, int) for v in P.ABI.values())


def test_abi_values_match_abi_md():
    """A sample of ABI.md §1 facts, including the 7.2-only ones."""
    abi = P.ABI
    expect = {
        "sizeof(struct virtio_gpu_config)": 20,
        "offsetof(struct virtio_gpu_config, blob_alignment)": 16,
        "VIRTIO_GPU_F_BLOB_ALIGNMENT": 5, "VIRTIO_GPU_F_CONTEXT_INIT": 4,
        "offsetof(struct virtio_gpu_ctx_create, context_init)": 28,
        "offsetof(struct virtio_gpu_ctx_create, debug_name)": 32,
        "offsetof(struct virtio_gpu_resource_create_blob, blob_id)": 40,
        "offsetof(struct virtio_gpu_resource_create_blob, size)": 48,
        "offsetof(struct virtio_gpu_set_scanout_blob, strides[0])": 64,
        "offsetof(struct virtio_gpu_set_scanout_blob, offsets[0])": 80,
        "offsetof(struct virtio_gpu_resource_map_blob, offset)": 32,
        "offsetof(struct virtio_gpu_ctrl_hdr, ring_idx)": 20,
        "sizeof(struct virtio_gpu_resp_edid)": 1056,
        "sizeof(struct virtio_gpu_mem_entry)": 16,
        "VIRTIO_GPU_CAPSET_CROSS_DOMAIN": 5, "VIRTIO_GPU_CAPSET_DRM": 6,
        "VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN": 3, "VIRTIO_GPU_CAPSET_VENUS": 4,
        "VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE": 4, "VIRTIO_GPU_MAP_CACHE_WC": 3,
        "VIRTIO_GPU_MAP_CACHE_MASK": 0x0F, "VIRTIO_GPU_FLAG_INFO_RING_IDX": 2,
        "VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK": 0xFF, "VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM": 134,
        "VIRTIO_GPU_SHM_ID_HOST_VISIBLE": 1, "VIRTIO_GPU_MAX_SCANOUTS": 16,
        "VIRTIO_GPU_CMD_SET_SCANOUT_BLOB": 0x010D, "VIRTIO_GPU_RESP_OK_MAP_INFO": 0x1106,
        "VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER": 0x1205,
    }
    assert {k: abi[k] for k in expect} == expect


def test_every_control_type_has_a_layout_and_a_class():
    """All 39 command/response types of 7.2 are encodable, each by its own dataclass."""
    types = {v for k, v in P.ABI.items() if k.startswith(("VIRTIO_GPU_CMD_", "VIRTIO_GPU_RESP_"))}
    assert len(types) == 39
    assert types == set(P.MESSAGE_CLASSES) == {int(t) for t in P.LAYOUTS}
    for t in types:
        assert P.message_class(t).TYPE == t


def test_enums_carry_uapi_names():
    """The enums are the uapi constants without their prefix (blob flags also without USE_),
    named as the render node's enums, so both layers read the same."""
    assert P.CtrlType.CMD_RESOURCE_CREATE_BLOB == 0x010C
    assert P.CtrlType.UNDEFINED == 0
    assert [f.name for f in P.Feature] == ["VIRGL", "EDID", "RESOURCE_UUID", "RESOURCE_BLOB",
                                           "CONTEXT_INIT", "BLOB_ALIGNMENT"]
    assert P.BlobMem.HOST3D_GUEST == 3
    assert P.BlobFlag.MAPPABLE | P.BlobFlag.SHAREABLE == 3
    assert P.MapCache.UNCACHED == 2 and "MASK" not in P.MapCache.__members__
    assert P.Format.A8B8G8R8_UNORM == 121
    assert P.Capset(6).name == "DRM"



@settings(max_examples=300, deadline=None)
@given(t=st.sampled_from(sorted(REF_TYPES.values())), body=st.binary(max_size=1200),
       strict=st.booleans())
def test_decoding_arbitrary_bytes_never_fails_otherwise(t, body, strict):
    """Any bytes behind a valid type decode or raise ProtocolError; what decodes re-encodes
    to the same length and decodes to the same message."""
    wire = struct.pack("<I", t) + body
    try:
        msg = P.decode(wire, strict=strict)
    except P.ProtocolError as e:
        assert e.type == t and e.size == len(wire)
        return
    again = P.encode(msg)
    assert P.decode(again, strict=False) == msg
    if strict:
        assert len(again) == len(wire)
        assert P.decode(again) == msg


@settings(max_examples=200, deadline=None)
@given(wire=st.binary(max_size=200))
def test_decoding_random_bytes_raises_only_protocol_error(wire):
    """Random bytes never crash the decoder."""
    try:
        P.decode(wire)
    except P.ProtocolError as e:
        assert e.size == len(wire)


def test_wire_vocabulary_matches_the_render_node():
    """Capset, BlobMem and BlobFlag have the same member names and values on the wire
    (gpuhil.protocol) as on the render node (gpuhil.devices.virtgpu)."""
    from gpuhil.devices import virtgpu

    for wire, node in ((P.Capset, virtgpu.Capset), (P.BlobMem, virtgpu.BlobMem),
                       (P.BlobFlag, virtgpu.BlobFlag)):
        assert {m.name: int(m) for m in wire} == {m.name: int(m) for m in node}


def test_ctrl_name_of_types_messages_and_bytes():
    """ctrl_name names a type, a message or wire bytes the same way, hex for unknown types."""
    assert P.ctrl_name(P.CtrlType.RESP_OK_NODATA) == "RESP_OK_NODATA"
    assert P.ctrl_name(P.GetCapsetInfo(0)) == "CMD_GET_CAPSET_INFO"
    assert P.ctrl_name(P.GetCapsetInfo(0).encode()) == "CMD_GET_CAPSET_INFO"
    assert P.ctrl_name(0x01FF) == P.ctrl_name(P.RawMessage(0x01FF)) == "0x01ff"
    assert P.ctrl_name(b"\x01") == "<1-byte message>"


def test_wire_plans_are_declared_and_match_the_c_layouts():
    """Every message class's declared wire fields add up to its C layout's scalar fields, so a
    field added to a dataclass without its declaration cannot go unnoticed."""
    from gpuhil.protocol.message import Message

    for t, cls in P.MESSAGE_CLASSES.items():
        if cls.wire is Message.wire:
            assert sum(step[2] for step in cls._WIRE_PLAN) == len(P.layout(t).fields), cls
