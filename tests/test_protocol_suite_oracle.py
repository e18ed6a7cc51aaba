"""The protocol suite's host-side logic alone: the fuzz oracle's replay, request sanitizing, and
the QEMU stderr scraper."""
from __future__ import annotations

import struct

from gpuhil import protocol as P
from gpuhil.raw import qemu_log
from suites.protocol import fuzz

OK = "RESP_OK_NODATA"
BAD_ID = "RESP_ERR_INVALID_RESOURCE_ID"


def _create(rid: int) -> bytes:
    return P.encode(P.ResourceCreate2D(rid, 2, 16, 16))


def _unref(rid: int) -> bytes:
    return P.encode(P.ResourceUnref(rid))


def test_replay_tracks_creations_and_unrefs():
    requests = [_create(1), _create(2), _unref(1), _create(3), _create(4)]
    responses = [OK, OK, OK, "RESP_ERR_UNSPEC", OK]
    assert fuzz.expected_live_resources(requests, responses) == {2, 4}


def test_replay_ignores_truncated_creations_and_forgets_everything_after_a_timeout():
    truncated = _create(5)[:30]
    assert fuzz.expected_live_resources([truncated], [OK]) == set()
    assert fuzz.expected_live_resources([P.encode(P.CtxDestroy())], [OK]) == set()
    requests = [_create(1), P.encode(P.Submit3D(b"")), _create(2)]
    assert fuzz.expected_live_resources(requests, [OK, fuzz.TIMEOUT, OK]) == {2}


def test_judge_flags_unanswered_state_and_health():
    requests = [_create(1), _create(2)]
    result = {"responses": [OK, "UNWRITTEN"], "unref": {1: OK, 2: OK, 3: BAD_ID},
              "health": [OK, "RESP_OK_DISPLAY_INFO", "RESP_ERR_UNSPEC"]}
    verdict = fuzz.judge(requests, result)
    assert verdict.unanswered == [(1, "UNWRITTEN")]
    assert verdict.state == [f"UNREF {2:#x}: {OK}, expected {BAD_ID}"]
    assert verdict.health == ["RESP_ERR_UNSPEC"]
    clean = {"responses": [OK, OK], "unref": {1: OK, 2: OK, 3: BAD_ID},
             "health": [OK, "RESP_OK_DISPLAY_INFO"]}
    assert not fuzz.judge(requests, clean)


def test_sanitize_pads_short_requests_and_drops_ring_idx_and_wide_fence_ids():
    assert len(fuzz.sanitize(b"\x00\x01")) == fuzz.HDR_SIZE
    hdr = P.CtrlHdr.fenced((1 << 40) + 9, 3, ring_idx=1)
    wire = fuzz.sanitize(P.encode(P.Submit3D(b"", hdr=hdr)))
    flags, fence_id = struct.unpack_from("<IQ", wire, 4)
    assert flags == int(P.HdrFlag.FENCE) and fence_id == 9


def test_qemu_log_parse():
    text = ("noise\nvtd_iommu_translate: detected translation failure (dev=00:03:00, "
            "iova=0x10100000)\nvirtio_gpu_virgl_process_cmd: ctrl 0x1ff, error 0x1200\n"
            "virtio_gpu_virgl_process_cmd: ctrl 0x102, error 0x1203\n")
    log = qemu_log.parse(text)
    assert log.vtd_faults == ("vtd_iommu_translate: detected translation failure "
                              "(dev=00:03:00, iova=0x10100000)",)
    assert log.cmd_errors == ((0x1FF, 0x1200), (0x102, 0x1203))
    assert "ctrl 0x102 -> 0x1203" in log.summary()
    assert qemu_log.parse("").summary().startswith("(no vtd_")


def test_decoded_commands_cover_every_kind_and_shrink_to_get_display_info():
    """The fuzzer's byte decoder: an all-zero draw is a plain GET_DISPLAY_INFO (where
    hypothesis shrinks to), any draw decodes to a header-sized request at least, and draws
    reach every command kind, mutated or not."""
    import random

    assert fuzz.decode(bytes(fuzz.DRAW_SIZE)) == P.encode(P.GetDisplayInfo())
    rng = random.Random(7)
    seen = set()
    for _ in range(20000):
        wire = fuzz.decode(rng.randbytes(fuzz.DRAW_SIZE))
        assert len(wire) >= fuzz.HDR_SIZE
        flags, fence_id = struct.unpack_from("<IQ", wire, 4)
        assert not flags & int(P.HdrFlag.INFO_RING_IDX) and fence_id < 1 << 32
        seen.add(P.ctrl_name(wire))
    kinds = {P.ctrl_name(P.encode(build(bytes(12), P.CtrlHdr()))) for build in fuzz.BUILDERS}
    assert kinds <= seen and len(kinds) == len(fuzz.BUILDERS)
    assert {"UNDEFINED", "0xffffffff"} & seen  # retyped ones too


def test_long_batches_decode_one_draw_per_command_and_span_1_to_128():
    """The device tier's batches come from one byte draw: command i is decode() of its
    DRAW_SIZE bytes, and generated batches keep to 1..128 commands."""
    from hypothesis import HealthCheck, Phase, given, settings

    draws = bytes(range(3 * fuzz.DRAW_SIZE))
    assert fuzz.decode_all(draws) == [fuzz.decode(draws[i * fuzz.DRAW_SIZE:][:fuzz.DRAW_SIZE])
                                      for i in range(3)]
    lengths = []

    @settings(max_examples=50, derandomize=True, database=None, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(fuzz.long_batches)
    def collect(batch: list[bytes]) -> None:
        lengths.append(len(batch))

    collect()
    assert 1 <= min(lengths) and max(lengths) <= 128 and len(set(lengths)) > 5, lengths


def test_sanitize_keeps_2d_creates_and_map_blob_on_disjoint_pool_ids():
    """2D creates get pool ids with bit 1 set and MAP_BLOB ids with it clear (a refused 2D
    create then MAP_BLOB of its id crashes QEMU and has its own test); a poked create id goes
    back into the pool; id 0 stays 0 (its refusal is tested)."""
    def rid_after(type_: int, rid: int) -> int:
        return struct.unpack_from("<I", fuzz.sanitize(struct.pack("<I20xI", type_, rid)),
                                  fuzz.HDR_SIZE)[0]

    create_2d = int(P.CtrlType.CMD_RESOURCE_CREATE_2D)
    map_blob = int(P.CtrlType.CMD_RESOURCE_MAP_BLOB)
    create_blob = int(P.CtrlType.CMD_RESOURCE_CREATE_BLOB)
    assert {rid_after(create_2d, r) for r in fuzz.RESOURCE_IDS} == {0x302, 0x303}
    assert {rid_after(map_blob, r) for r in fuzz.RESOURCE_IDS} == {0x300, 0x301}
    assert [rid_after(create_blob, r) for r in fuzz.RESOURCE_IDS] == list(fuzz.RESOURCE_IDS)
    assert rid_after(create_blob, 0x12345) in fuzz.RESOURCE_IDS
    assert rid_after(create_2d, 0) == 0 and rid_after(map_blob, 0) == 0
