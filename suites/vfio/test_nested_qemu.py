"""QEMU as a VFIO user (seed 004): QEMU run under qtest inside the lab guest, as the user of
the guest's vfio-pci functions, makes a dma-buf of each BAR it mmaps (QEMU 11.0 and later,
through the guest kernel's VFIO_DEVICE_FEATURE_DMA_BUF) and falls back to a plain mmap for a
BAR the kernel refuses.  Everything is read from what QEMU and the kernel did: the inner
QEMU's fdinfo, its stderr and trace lines, the VFIO group's state after it is gone.

Observed on QEMU 11.1.3 in Linux 7.2 under both vIOMMUs: ivshmem's 16 MiB RAM BAR 2 becomes
one dma-buf (exporter ``vfio_pci_core``) and its 256-byte register BAR 0 is refused
(``BAR 0: dma-buf unavailable, using mmap fallback, P2P DMA will not work: Invalid argument``:
the kernel exports whole pages only)."""
from __future__ import annotations

import pytest

from gpuhil.devices.pci_ids import EDU
from suites.vfio import nested_payload
from suites.vfio.configs import IOMMUS, IVSHMEM_SIZE

pytestmark = [pytest.mark.parametrize("guest", IOMMUS, indirect=True),
              pytest.mark.requires("vfio.dma_buf")]

EXPORTER = "vfio_pci_core"
MIB = 1 << 20


def _inner(vfio, record_property) -> dict:
    """The nested payload's findings, or a skip naming what the guest's QEMU lacks."""
    out = vfio.call(nested_payload.vfio_user)
    record_property("inner_qemu_start_s", out.get("start_seconds"))
    if "unavailable" in out:
        pytest.skip(f"the guest's QEMU has no qtest accelerator: {out['unavailable']}")
    if out["qemu_version"] is None or out["qemu_version"] < (11, 0):
        pytest.skip(f"QEMU {out['qemu_version']} in the guest makes no dma-buf per VFIO BAR "
                    f"(since 11.0)")
    return out


def _traced(out: dict, region: int, size: int) -> None:
    """The dma-buf's trace line names the region and its size (when the QEMU has the event)."""
    if "vfio_region_dmabuf" in out["traces"]:
        traced = [line for line in out["dma_buf_lines"] if "vfio_region_dmabuf" in line]
        assert len(traced) == 1 and f"region {region}" in traced[0] and \
            f"size: {size:#x}" in traced[0], out


def _released(out: dict) -> None:
    """QEMU held the group while it ran, said it cannot reset the device (none of the lab's
    VFIO functions has a reset method), and left nothing once killed."""
    assert out["group_while_running"] == "EBUSY", out
    assert out["reset_lines"] and \
        all("no available reset mechanism" in line for line in out["reset_lines"]), out
    assert (out["process_gone"], out["run_dir_gone"], out["group_after"]) == \
        (True, True, "free"), out


def test_inner_qemu_exports_ivshmem_ram_bar_and_falls_back_for_its_registers(vfio, record_property):
    """The inner QEMU holds one dma-buf, of ivshmem's whole RAM BAR, exported by vfio_pci_core,
    warns once that the sub-page register BAR falls back to mmap, and leaves the group free
    when killed: the export P2P users of QEMU's VFIO BARs rely on, from the device's user."""
    out = _inner(vfio, record_property)
    assert out["dma_bufs"] == [{"size": IVSHMEM_SIZE, "exp_name": EXPORTER}], out
    fallback = [line for line in out["dma_buf_lines"] if "BAR 0: dma-buf unavailable" in line]
    assert len(fallback) == 1 and "using mmap fallback" in fallback[0], out
    _traced(out, 2, IVSHMEM_SIZE)
    _released(out)


@pytest.mark.vfio_ids(*EDU)
def test_inner_qemu_exports_edu_mmio_bar(vfio, record_property):
    """edu's 1 MiB MMIO register BAR is page-sized, so the inner QEMU exports it as one
    dma-buf as well and prints no fallback, and the group is free after it is killed."""
    out = _inner(vfio, record_property)
    assert out["dma_bufs"] == [{"size": MIB, "exp_name": EXPORTER}], out
    assert not [line for line in out["dma_buf_lines"] if "unavailable" in line], out
    _traced(out, 0, MIB)
    _released(out)


def test_device_del_releases_the_dma_buf_and_the_group(vfio):
    """device_del of the inner QEMU's vfio-pci function (behind a PCIe root port, the slot
    powered off as a guest would) closes its dma-buf and VFIO fds and frees the group while
    QEMU runs on, and the function stays bound to vfio-pci: unplug hands the device back."""
    from gpuhil.nested.hotplug import SLTSTA_ABP

    out = vfio.call(nested_payload.device_del)
    assert out["before"]["dma_bufs"] >= 1 and out["before"]["vfio_fds"] >= 1, out
    assert out["before"]["group"] == "EBUSY" and out["device_del"] == "", out
    assert out["slot_status"] & SLTSTA_ABP, out  # the attention button, for the guest
    assert out["in_qtree"] is False and out["alive"] is True, out
    assert (out["after"]["vfio_fds"], out["after"]["group"], out["driver"]) == \
        (0, "free", "vfio-pci"), out
    assert out["after"]["dma_bufs"] == 0, \
        f"QEMU still holds {out['dma_buf_fdinfo']} {out['dma_buf_seconds']} s after the unplug"
