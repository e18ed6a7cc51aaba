"""Many mappings: a thousand blobs mapped at once at distinct offsets of the hostmem window
(each a memory subregion of QEMU's), a case the guest path makes too slow to try (about 4
commands and 2 window accesses per blob at 0.7 ms each), so it runs on the qtest transport.

Measured on QEMU 11.1.3 under qtest (2 cores, load about 5): mapping 512, 1,024 and 2,048
blobs took 0.64 s, 3.9 s and 44 s (4,096: over 5 minutes), i.e. each MAP_BLOB costs more the
more mappings are live, far worse than linearly; unmapping 2,048 took 5.3 s.  The suite maps
1,024 (a run stays short); the timings are observations, not a verdict."""
from __future__ import annotations

import pytest

from gpuhil.raw.qemu_log import parse
from suites.protocol import mappings_payload

COUNT, STRIDE = 1024, 256 * 1024  # 1,024 pages 256 KiB apart: the whole 256 MiB window


@pytest.mark.guest("qtest-venus")
@pytest.mark.requires(f"raw.feature.resource_blob and raw.hostmem >= {COUNT * STRIDE:#x}")
def test_thousands_of_concurrent_mappings_each_map_their_own_blob(raw_gpu, qemu_log):
    """1,024 HOST3D blobs mapped at once, 256 KiB apart across the whole hostmem window, each
    hold the tag written into them through the window (no mapping aliases another), and all
    unmap and unreference cleanly with the window usable again, so a guest with many live
    mappings neither exhausts QEMU's memory regions nor sees one blob through another."""
    out = raw_gpu.call(mappings_payload.many_mappings, COUNT, STRIDE)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert raw_gpu.machine.alive, context
    assert out["create"] == {"RESP_OK_NODATA": 2 * COUNT}, context
    assert out["map"] == {"RESP_OK_MAP_INFO": COUNT}, context
    assert out["tags_wrong_count"] == 0, context
    assert out["unmap"] == {"RESP_OK_NODATA": COUNT}, context
    assert out["unref"] == {"RESP_OK_NODATA": COUNT}, context
    assert out["again"] == ["RESP_OK_NODATA"] * 2 + ["RESP_OK_MAP_INFO"] + \
        ["RESP_OK_NODATA"] * 3, context


BEHIND_COUNT, BEHIND_STRIDE = 512, 512 * 1024


@pytest.mark.guest("qtest-venus")
@pytest.mark.requires(f"raw.feature.resource_blob and raw.hostmem >= {BEHIND_COUNT * BEHIND_STRIDE:#x}")
def test_commands_queued_behind_pending_unmaps_are_all_answered_in_order(raw_gpu, qemu_log,
                                                                          record_property):
    """512 mapped blobs unmapped 42 per notify, each UNMAP_BLOB with its UNREF and a
    GET_CAPSET_INFO queued behind it: all 1,536 commands are answered OK and in submission
    order (QEMU holds the queue while an unmap finishes asynchronously, so a lost resume or a
    reorder would drop or misorder guest commands) and the window maps again."""
    out = raw_gpu.call(mappings_payload.unmap_behind_a_queue, BEHIND_COUNT, BEHIND_STRIDE)
    record_property("slowest_unmap_s", out["slowest_unmap_s"])
    record_property("slowest_notify_s", out["slowest_notify_s"])
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert raw_gpu.machine.alive, context
    assert out["map"] == {"RESP_OK_MAP_INFO": BEHIND_COUNT}, context
    assert out["behind"] == {"RESP_OK_NODATA": 2 * BEHIND_COUNT,
                             "RESP_OK_CAPSET_INFO": BEHIND_COUNT}, context
    assert out["reordered"] == [], context
    assert out["again"] == ["RESP_OK_NODATA"] * 2 + ["RESP_OK_MAP_INFO"] + \
        ["RESP_OK_NODATA"] * 3, context
