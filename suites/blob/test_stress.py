"""Blob stress: many cycles without leaks, a full hostmem window and recovery, closing while
mapped, several contexts at once, and a guest reboot with blobs mapped.

Leaks are measured three ways: in the guest (/proc/meminfo Shmem, open fds, the driver's
hostmem allocator in debugfs), in QEMU's trace (every CREATE_BLOB answered by one UNREF, every
MAP_BLOB by one completed UNMAP_BLOB) and on the host (QEMU's VmRSS).  Loops are bounded in
count so the area stays within its time budget on one TCG worker.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from gpuhil.lab.spec import VENUS_GPU, GuestSpec
from gpuhil.bringup import prepare_gpu
from gpuhil.devices.virtgpu import BlobMem
from suites.blob import HOST3D_NEEDS, payloads
from gpuhil.blob_traces import (CREATE, MAP, REQUIRES as TRACES, UNREF, TraceCapture,
                                unmap_sequences, well_formed)

MiB = 1 << 20
#: The guest's Shmem may stay this far above where it was (page caches); a leak of the cycled
#: blobs would be far above it.
SHMEM_GROWTH_LIMIT_KIB = 4096
#: QEMU may keep allocator caches; a leak of the cycled blobs would be far above this
RSS_GROWTH_LIMIT = 48 * MiB


def qemu_rss(guest) -> int:
    """QEMU's resident set size in bytes, read on the host."""
    for line in Path(f"/proc/{guest.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for QEMU pid {guest.pid}")


def _shmem_growth_once_freed(guest, before_kib: int) -> int:
    """The guest's Shmem growth once it has freed what it can: the driver frees a blob's pages
    when it processes the host's UNREF answer, after the cycles returned (later on a loaded
    host), so it is read until it is back under the limit; a leak stays above it (60 s is a
    safety net, not a verdict on speed)."""
    deadline = time.monotonic() + 60
    while True:
        growth = guest.call(payloads.meminfo)["Shmem"] - before_kib
        if growth < SHMEM_GROWTH_LIMIT_KIB or time.monotonic() > deadline:
            return growth
        time.sleep(0.5)


def _settle(traces: TraceCapture) -> None:
    """Wait until QEMU released and unmapped every blob created during the capture."""
    traces.settle({e.res for e in traces.events_seen() if e.event == CREATE})


def _assert_mappings_balanced(events, ids) -> None:
    sequences = unmap_sequences(events)
    for res in ids:
        maps = sequences.get(res, [])
        assert maps and all(well_formed(states) for states in maps), \
            f"res {res}: unmap mapping_state sequences {maps} (each map needs one 0 -> 2)"


@pytest.mark.requires(TRACES)
@pytest.mark.parametrize("blob_mem, size, count", [
    pytest.param(BlobMem.GUEST, 256 << 10, 200, id="guest",
                 marks=pytest.mark.requires("param.resource_blob")),
    pytest.param(BlobMem.HOST3D, MiB, 60, id="host3d", marks=pytest.mark.requires(HOST3D_NEEDS)),
])
def test_create_map_close_cycles_leak_nothing(request, guest, virtgpu, blob_mem, size, count):
    """Hundreds of create, mmap, export, dma-buf mmap, close cycles leave the guest's shmem,
    fds and hostmem where they were, get one UNREF per CREATE_BLOB from QEMU and grow QEMU's
    RSS by far less than the cycled memory, so long-running guests do not leak blobs."""
    virtgpu.call(payloads.cycles, int(blob_mem), size, 5)   # warm QEMU's and the guest's caches
    rss_before = qemu_rss(guest)
    with TraceCapture(guest) as traces:
        stats = virtgpu.call(payloads.cycles, int(blob_mem), size, count)
        _settle(traces)   # the host answers the last UNMAP/UNREF after the call returned
    rss_after = qemu_rss(guest)
    assert not stats.failures, stats.failures
    assert stats.fds_after <= stats.fds_before
    growth_kib = _shmem_growth_once_freed(guest, stats.shmem_kib_before)
    assert growth_kib < SHMEM_GROWTH_LIMIT_KIB, \
        f"guest Shmem grew {growth_kib} KiB over {count} cycles (and stayed so for 60 s)"
    events = traces.events_seen()
    created = {e.res for e in events if e.event == CREATE}
    unreffed = {e.res for e in events if e.event == UNREF}
    assert len(created) >= count and created <= unreffed, \
        f"{len(created - unreffed)} of {len(created)} created blobs got no UNREF: " \
        f"{sorted(created - unreffed)[:10]}"
    if blob_mem == BlobMem.HOST3D:
        _assert_mappings_balanced(events, created)
        window = request.getfixturevalue("hostmem_window")
        assert virtgpu.call(payloads.whole_window_fits, window), "hostmem held after the cycles"
    growth = rss_after - rss_before
    assert growth < RSS_GROWTH_LIMIT, \
        f"QEMU RSS grew {growth / MiB:.1f} MiB over {count} cycles of {size / MiB:.2f} MiB blobs"


@pytest.mark.requires(TRACES)
@pytest.mark.requires(HOST3D_NEEDS)
def test_filling_the_hostmem_window_then_recovering(guest, virtgpu, hostmem_window):
    """Mappable HOST3D blobs fill the probed hostmem window exactly, the next one fails with
    ENOSPC, freeing one lets the same range be allocated again and freeing all lets one blob
    take the whole window, so exhaustion is clean and recoverable."""
    window = hostmem_window
    with TraceCapture(guest) as traces:
        result = virtgpu.call(payloads.fill_window, window, 8)
        _settle(traces)
    assert (result.created, result.error) == (8, "ENOSPC"), result
    assert result.used_when_full == window and result.readback_all, result
    assert result.after_free_one == "ok" and result.same_ranges_again, result
    assert virtgpu.call(payloads.whole_window_fits, window), "hostmem held after freeing all"
    events = traces.events_seen()
    _assert_mappings_balanced(events, {e.res for e in events if e.event == MAP})


@pytest.mark.requires(TRACES)
@pytest.mark.parametrize("blob_mem", [
    pytest.param(BlobMem.HOST3D, id="host3d", marks=pytest.mark.requires(HOST3D_NEEDS)),
    pytest.param(BlobMem.GUEST, id="guest", marks=pytest.mark.requires("param.resource_blob")),
])
def test_closing_while_mapped_keeps_the_mapping_until_munmap(request, guest, virtgpu, blob_mem):
    """GEM_CLOSE and closing the render node while a blob is mmapped keep its memory (and for
    HOST3D its hostmem range and host mapping) alive until munmap, which then releases it
    once, so a process may drop handles before mappings."""
    with TraceCapture(guest) as traces:
        closed = virtgpu.call(payloads.map_and_close, int(blob_mem), MiB)
        time.sleep(0.2)
        res = closed["res_handle"]
        early = [e for e in traces.events_seen() if e.res == res and e.event != CREATE
                 and e.event != MAP]
        after = guest.call(payloads.use_and_unmap, MiB)
        traces.settle({res})
    assert early == [], f"res {res} was unmapped or released while still mmapped: {early}"
    assert after["still_there"] and after["writable"]
    events = [e for e in traces.events_seen() if e.res == res]
    assert [e.event for e in events].count(UNREF) == 1, events
    if blob_mem == BlobMem.HOST3D:
        _assert_mappings_balanced(events, {res})
        window = request.getfixturevalue("hostmem_window")
        assert virtgpu.call(payloads.whole_window_fits, window), "hostmem held after munmap"


@pytest.mark.requires(TRACES)
@pytest.mark.requires(HOST3D_NEEDS)
def test_blobs_from_several_contexts_at_once(guest, virtgpu, hostmem_window):
    """Four contexts on four render-node fds each hold a HOST3D and a GUEST blob at the same
    time with distinct resource ids and their own bytes; PRIME carries one into another context
    and closing one context leaves the others' blobs intact."""
    with TraceCapture(guest) as traces:
        out = virtgpu.call(payloads.several_contexts, 4, MiB)
        _settle(traces)
    ids = out["res_handles"]
    assert len(ids) == 8 and len(set(ids)) == 8, ids
    assert out["each_keeps_its_bytes"] and out["others_intact"]
    assert out["import_res_handle"] == ids[0] and out["import_sees_bytes"]
    assert virtgpu.call(payloads.whole_window_fits, hostmem_window), "hostmem held after close"
    events = traces.events_seen()
    assert {e.res for e in events if e.event == UNREF} >= set(ids)
    _assert_mappings_balanced(events, set(ids[0::2]))   # the HOST3D ones


#: its own guest, so that the blobs it holds are the first ones of a boot: the fresh boot after
#: the reset hands out the same ids again (the venus configuration with less memory)
REBOOT_GUEST = GuestSpec(gpu=VENUS_GPU, memory_mib=1536)


def _carry_test_markers(guest, nodeid: str) -> list[str]:
    """The report plugin's kernel-log markers of this test (they vanish with the old kernel).

    A record written without a newline is only readable once the next one arrives, hence the
    extra mark first."""
    guest.kmsg_mark("gpuhil-blob: rebooting with blobs mapped")
    return [line for line in guest.kernel_log("") if nodeid in line]


@pytest.mark.requires(TRACES)
@pytest.mark.guest(spec=REBOOT_GUEST)
@pytest.mark.requires(HOST3D_NEEDS)
@pytest.mark.gpuhil_timeout(300)
def test_reboot_with_blobs_mapped_then_same_ids_and_offsets(request, guest, virtgpu,
                                                           hostmem_window):
    """A guest that reboots (sysrq b, QEMU resets the machine) while HOST3D blobs are mapped
    gets them unmapped by the device reset (each mapping's async unmap completes), and the
    fresh guest gets the same resource ids, MAP offsets and hostmem ranges again and can use
    them, so a hot reboot leaks no host mappings and reuses ids safely."""
    count, size = 4, MiB
    markers = _carry_test_markers(guest, request.node.nodeid)
    guest.qmp("set-action", reboot="reset")   # the lab runs QEMU with -no-reboot
    try:
        with TraceCapture(guest) as traces:
            guest.qmp_events()
            held = virtgpu.call(payloads.hold_mapped_blobs, count, size, 0.5)
            deadline = time.monotonic() + 300  # the gpuhil_timeout's: a safety net, not a verdict
            events: list = []
            while not any(e.get("event") == "RESET" for e in events):
                assert time.monotonic() < deadline, "QEMU sent no RESET event for the reboot"
                assert guest.returncode is None, "QEMU exited instead of resetting"
                time.sleep(0.2)
                events += guest.qmp_events()
            # the agent of the fresh guest answers this once it is up
            boot_id = guest.run(["cat", "/proc/sys/kernel/random/boot_id"], check=True)
            for line in markers:
                guest.call(payloads.write_kmsg, line)
            prepare_gpu(guest, 60)
            again = virtgpu.call(payloads.remap_after_reboot, count, size)
            traces.settle(held["res_handles"])
    finally:
        if guest.returncode is None:
            guest.qmp("set-action", reboot="shutdown")
    assert boot_id.stdout.decode().strip() == again["boot_id"] != held["boot_id"]
    assert again["res_handles"] == held["res_handles"]
    assert again["map_offsets"] == held["map_offsets"]
    assert [tuple(r) for r in again["ranges"]] == [tuple(r) for r in held["ranges"]]
    assert all(again["readback"])
    assert virtgpu.call(payloads.whole_window_fits, hostmem_window), "hostmem held after close"
    sequences = unmap_sequences(traces.events_seen())
    for res in held["res_handles"]:
        maps = sequences.get(res, [])
        assert len(maps) == 2 and all(well_formed(s) for s in maps), \
            f"res {res}: mapping_state sequences {maps} (want the reset's unmap, then the " \
            f"fresh guest's, each 0 [-> 1] -> 2)"
    assert guest.status() == "running"
