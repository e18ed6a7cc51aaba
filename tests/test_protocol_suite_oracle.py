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
