"""VFIO_DEVICE_FEATURE_DMA_BUF: exporting BAR ranges of a vfio-pci device as a dma-buf.

Gated on the probed ``vfio.dma_buf`` (DEVICE_FEATURE PROBE|GET|DMA_BUF at session start), so a
kernel without CONFIG_VFIO_PCI_DMABUF skips with that probe's answer.  Errnos are those of
drivers/vfio/pci/vfio_pci_dmabuf.c: no ranges, flags, an unaligned or empty range or one past the
BAR are EINVAL, an unimplemented BAR and a region index from ROM up are ENODEV, an offset that wraps the BAR's address is
EOVERFLOW.  The exporter has no mmap (EINVAL) and no CPU access hooks, so SYNC is a no-op; reset,
loss of memory decode and closing the device revoke it for importers but leave the fd intact.
"""
from __future__ import annotations

import os

import pytest

from gpuhil.devices.vfio import RegionIndex
from suites.vfio import payloads
from suites.vfio.configs import EDU, IOMMUS, IVSHMEM_SIZE

pytestmark = [pytest.mark.parametrize("guest", IOMMUS, indirect=True),
              pytest.mark.requires("vfio.dma_buf")]

PAGE = 4096
MIB = 1 << 20
EXPORTED = {"exp_name": "vfio_pci_core", "accmode": os.O_RDWR, "cloexec": True}


def _exported(size: int) -> dict:
    return {"size": size, "fdinfo_size": size, **EXPORTED}


def test_export_one_and_several_ranges(vfio):
    """One range exports a dma-buf of its length; several ranges (also repeated or overlapping
    ones, 64 single pages, the whole BAR) export one dma-buf whose size is the sum."""
    cases = {
        "one-mib": [(0, MIB)],
        "last-page": [(IVSHMEM_SIZE - PAGE, PAGE)],
        "whole-bar": [(0, IVSHMEM_SIZE)],
        "two": [(0, PAGE), (MIB, 2 * PAGE)],
        "overlapping": [(0, 2 * PAGE), (PAGE, 2 * PAGE)],
        "repeated": [(PAGE, PAGE)] * 3,
        "sixty-four": [(i * 2 * PAGE, PAGE) for i in range(64)],
    }
    out = vfio.call(payloads.dma_buf_exports, int(RegionIndex.BAR2), cases)
    assert out == {label: _exported(sum(length for _, length in ranges))
                   for label, ranges in cases.items()}


@pytest.mark.vfio_ids(*EDU)
def test_export_an_mmio_bar(vfio):
    """edu's register BAR exports like RAM does, whole or in part; one page past its end is EINVAL."""
    cases = {"whole": [(0, MIB)], "registers": [(0, PAGE)], "past-the-end": [(0, MIB + PAGE)]}
    out = vfio.call(payloads.dma_buf_exports, int(RegionIndex.BAR0), cases)
    assert out == {"whole": _exported(MIB), "registers": _exported(PAGE), "past-the-end": "EINVAL"}


def test_export_refusals(vfio):
    """Bad ranges are EINVAL (none, unaligned offset or length, zero length, past the BAR, a later
    range past it); a BAR the device does not implement and the ROM, config and VGA regions are
    ENODEV."""
    bar2 = {
        "no-ranges": [], "unaligned-offset": [(0x10, PAGE)], "unaligned-length": [(0, 0x800)],
        "zero-length": [(0, 0)], "zero-length-second": [(0, PAGE), (PAGE, 0)],
        "past-the-bar": [(IVSHMEM_SIZE - PAGE, 2 * PAGE)],
        "second-past-the-bar": [(0, PAGE), (IVSHMEM_SIZE, PAGE)],
    }
    out = vfio.call(payloads.dma_buf_exports, int(RegionIndex.BAR2), bar2)
    assert out == {label: "EINVAL" for label in bar2}
    by_region = {region: vfio.call(payloads.dma_buf_exports, int(region), {"page": [(0, PAGE)]})["page"]
                 for region in (RegionIndex.BAR1, RegionIndex.BAR5, RegionIndex.ROM,
                                RegionIndex.CONFIG, RegionIndex.VGA)}
    assert by_region == {RegionIndex.BAR1: "ENODEV", RegionIndex.BAR5: "ENODEV",
                         RegionIndex.ROM: "ENODEV", RegionIndex.CONFIG: "ENODEV",
                         RegionIndex.VGA: "ENODEV"}


def test_export_flags_and_open_flags(vfio):
    """Non-zero export flags are EINVAL, an offset wrapping the BAR address is EOVERFLOW, a huge
    length EINVAL; the fd's access mode and close-on-exec follow the requested open flags."""
    out = vfio.call(payloads.dma_buf_raw_outcomes)
    assert out == {
        "flags-1": "EINVAL", "wrapping-offset": "EOVERFLOW", "huge-length": "EINVAL",
        "rdonly": {"accmode": os.O_RDONLY, "cloexec": False},
        "rdwr-no-cloexec": {"accmode": os.O_RDWR, "cloexec": False},
    }


def test_dma_buf_mmap_sync_reset_and_close(vfio):
    """A VFIO dma-buf cannot be mmapped (EINVAL), takes SYNC as a no-op (bad flags still EINVAL)
    and has signalled fences; it keeps its size and behaviour while memory decode is off (an
    export then still succeeds, born revoked) and across a DEVICE_RESET (EINVAL on
    these devices, which lack a reset method), the device fd's close and vfio-pci's unbind, which
    must not wait for the dma-buf; and the kernel logs no warning meanwhile."""
    out = vfio.call(payloads.dma_buf_behaviour)
    log = out["kmsg"]
    expected = {"size": 2 * PAGE, "exp_name": "vfio_pci_core", "mmap": "EINVAL",
                "sync_start_rw": "ok", "sync_end_rw": "ok", "sync_bad_flags": "EINVAL",
                "fence_signaled": True}
    for stage in ("fresh", "decode_off", "decode_on", "after_reset", "after_device_close",
                  "after_unbind"):
        assert out[stage] == expected, stage
    assert out["export_decode_off"] == f"ok:{PAGE}"  # exported revoked, not refused
    assert out["reset"] == ("ok" if out["resettable"] else "EINVAL")
    assert out["export_after_reset"] == f"ok:{PAGE}"
    assert out["driver_after_unbind"] is None
    assert out["driver_at_end"] == "vfio-pci"
    assert not [line for line in log if "WARNING" in line or "BUG" in line or "in use" in line]
