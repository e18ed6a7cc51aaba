"""VFIO through a vIOMMU: binding, the container/group flow, regions, BAR mmaps, DMA and features.

Every test runs under intel-iommu and virtio-iommu.  ivshmem-plain's BAR2 is RAM backed by a
memfd in QEMU (the host side is checked through QEMU's fd); edu's BAR0 holds registers and a DMA
engine, which proves DMA through the vIOMMU's translation.  Errnos are those of
drivers/vfio/container.c, group.c, vfio_iommu_type1.c and vfio_pci_core.c.
"""
from __future__ import annotations

import os

import pytest

from gpuhil.lab.spec import Iommu
from gpuhil.devices.vfio import RegionFlag, RegionIndex
from suites.vfio import payloads
from suites.vfio.configs import EDU, IOMMUS, IVSHMEM_SIZE, qemu_memfd

pytestmark = pytest.mark.parametrize("guest", IOMMUS, indirect=True)

PAGE = 4096
MIB = 1 << 20
EDU_IDENT = 0x010000ED  # edu version 1.0, "ed" for edu


@pytest.mark.kernel_log_allowed(r"vfio_iommu_type1_attach_group: No interrupt remapping support")
def test_iommu_setup(vfio):
    """The function sits alone in an IOMMU group of the guest's vIOMMU, and SET_IOMMU checks
    interrupt remapping: intel-iommu has it, virtio-iommu needs allow_unsafe_interrupts (EPERM
    and a kernel message naming the parameter without it)."""
    out = vfio.call(payloads.iommu_setup)
    log = "\n".join(out["kmsg"])
    assert out["driver"] == "vfio-pci" and out["group_devices"] == [vfio.address]
    assert out["set_iommu_configured"] == "ok"
    if vfio.iommu is Iommu.INTEL:
        assert out["iommus"] == ["dmar0"]
        assert out["unsafe_interrupts"] == "N" and out["set_iommu_strict"] == "ok"
    else:
        assert out["iommu_drivers"] == ["virtio_iommu"]
        assert out["unsafe_interrupts"] == "Y" and out["set_iommu_strict"] == "EPERM"
        assert "No interrupt remapping support" in log and "allow_unsafe_interrupts" in log


def test_container_group_flow(vfio):
    """Container and group follow the documented order: SET_IOMMU needs a group, a device fd needs
    SET_IOMMU, a group takes one container, and it cannot leave while a device fd is open."""
    out = vfio.call(payloads.container_flow)
    assert out["api"] == 0
    assert out["ext_before_group"] == {"TYPE1": 1, "TYPE1v2": 1, "NOIOMMU": 0}
    assert out["status_before"] == (True, False)
    assert out["set_iommu_without_group"] == "EINVAL"
    assert out["device_without_container"] == "EINVAL"
    assert out["status_after"] == (True, True)
    assert out["device_before_set_iommu"] == "EINVAL"
    assert out["second_container"] == "EINVAL"
    assert out["set_iommu_type1v2"] == "ok" and out["set_iommu_again"] == "EINVAL"
    assert out["ext_after"] == {"TYPE1v2": 1, "UNMAP_ALL": 1, "UPDATE_VADDR": 1}
    assert out["device_wrong_name"] == "ENODEV"
    assert out["device_fd_cloexec"] and out["second_device_fd"] == "ok"
    assert out["unset_with_device_open"] == "EBUSY"
    assert out["unset_after_device_close"] == "ok" and out["status_unset"] == (True, False)


@pytest.mark.parametrize("device", ["ivshmem", pytest.param("edu", marks=pytest.mark.vfio_ids(*EDU))])
def test_region_info_and_capabilities(vfio, device):
    """Each region reports size, flags and its fixed offset (index << 40): ivshmem's 256 B register
    BAR0 and 16 MiB RAM BAR2, edu's 1 MiB BAR0, 256 B of config space, empty unused BARs; no region
    of these devices has a capability chain (CAPS flag clear, no caps decoded), VGA is EINVAL."""
    out = vfio.call(payloads.regions)
    assert out["num_regions"] == 9 and out["num_irqs"] == 5 and out["caps"] == []
    rw_mmap = int(RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP)
    bars = {0: 256, 2: IVSHMEM_SIZE} if device == "ivshmem" else {0: MIB}
    regions = out["regions"]
    for index in range(7):
        r = regions[index]
        assert r["offset"] == index << 40
        assert (r["size"], r["flags"]) == ((bars[index], rw_mmap) if index in bars else (0, 0))
    config = regions[RegionIndex.CONFIG]
    assert (config["size"], config["flags"]) == (256, int(RegionFlag.READ | RegionFlag.WRITE))
    for r in (regions[i] for i in range(8)):
        assert not r["flags"] & RegionFlag.CAPS
        assert r["caps"] == [] and r["sparse"] is None and not r["msix_mappable"]
    assert regions[RegionIndex.VGA] == "EINVAL" and regions[9] == "EINVAL"


def test_region_mmap_rules(vfio):
    """Only regions flagged MMAP map: BAR0 and BAR2 do, the empty BAR1 and config space do not,
    and a mapping longer than the BAR is EINVAL."""
    assert vfio.call(payloads.mmap_outcomes) == {
        "BAR0": "ok", "BAR2": "ok", "BAR1": "EINVAL", "CONFIG": "EINVAL", "BAR0-past-end": "EINVAL"}


def test_ivshmem_bar2_is_the_hosts_memfd(vfio, guest):
    """Bytes stored through the guest's VFIO mmap of BAR2 are in QEMU's memfd on the host, and
    bytes the host writes into that memfd show in a fresh VFIO mapping in the guest."""
    guest_offset, host_offset = 0x123000 + 17, 0xABC000 + 5
    out = vfio.call(payloads.ivshmem_write, guest_offset, b"from-the-guest")
    assert out == {"size": IVSHMEM_SIZE, "mmap": b"from-the-guest", "pread": b"from-the-guest"}
    pid = guest.pid  # the machine the vfio fixture runs on (Machine protocol)
    path = qemu_memfd(pid, IVSHMEM_SIZE)
    if path is None:
        pytest.skip(f"QEMU pid {pid} shows no {IVSHMEM_SIZE}-byte memfd in /proc "
                    f"(probed: {sorted(os.listdir(f'/proc/{pid}/fd'))})")
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pread(fd, 14, guest_offset) == b"from-the-guest"
        os.pwrite(fd, b"from-the-host", host_offset)
    finally:
        os.close(fd)
    assert vfio.call(payloads.ivshmem_read, host_offset, 13) == b"from-the-host"


@pytest.mark.vfio_ids(*EDU)
def test_edu_registers(vfio):
    """edu's BAR0 answers through the VFIO mmap and through pread/pwrite: its ident register, the
    liveness register returning the complement of each write, and the factorial unit."""
    out = vfio.call(payloads.edu_registers)
    assert out["ident"] == out["pread_ident"] == EDU_IDENT
    assert all(read == value ^ 0xFFFFFFFF for value, read in out["liveness"])
    assert out["factorial_10"] == 3628800
    assert out["pread_liveness"] == 0xF0F0F0F0


@pytest.mark.vfio_ids(*EDU)
@pytest.mark.kernel_log_allowed(r"DMAR: DRHD: handling fault status",
                                r"DMAR: \[DMA Write NO_PASID\] Request device .* fault addr 0x102000",
                                r"virtio_iommu virtio0: page fault from EP \d+ at 0x102")
def test_edu_dma_through_the_viommu(vfio):
    """edu's DMA engine copies a page from a MAP_DMA'd IOVA into the device and back out to another
    IOVA byte for byte; after UNMAP_DMA its write is stopped by the vIOMMU (memory untouched) and
    the guest kernel logs the fault at that IOVA."""
    out = vfio.call(payloads.edu_dma)
    log = out["kmsg"]
    assert out["iova_usable"]
    assert out["to_device_done"] and out["to_ram_done"]
    assert out["round_trip"] and out["first_bytes"] == bytes((i * 7 + 3) & 0xFF for i in range(8))
    assert out["unmapped_bytes"] == PAGE
    assert out["blocked_done"] and out["blocked_memory_untouched"]
    blocked = f"{payloads.EDU_IOVA + 2 * PAGE:#x}"
    assert any("fault" in line and blocked in line for line in log), log[-10:]


def test_dma_map_and_unmap(vfio):
    """MAP_DMA takes page-aligned, non-empty, non-overlapping ranges of mapped memory (else
    EINVAL, EEXIST, EFAULT), UNMAP_DMA cannot split a mapping (EINVAL), reports the bytes it
    unmapped (0 the second time), and UNMAP_ALL clears several mappings at once."""
    out = vfio.call(payloads.dma_map_outcomes)
    assert out["pgsizes_has_4k"]
    assert any(s <= 0x2000_0000 and 0x2000_0000 + 8 * PAGE <= e for s, e in out["ranges"])
    assert out["map"] == "ok"
    assert out["map_overlap"] == "EEXIST"
    assert out["map_unaligned_iova"] == out["map_unaligned_size"] == out["map_zero"] == "EINVAL"
    assert out["map_unmapped_vaddr"] == "EFAULT"
    assert out["unmap_middle"] == "EINVAL"
    assert out["unmap_whole"] == 4 * PAGE and out["unmap_nothing"] == 0
    assert out["unmap_all_supported"] == 1 and out["unmap_all"] == 4 * PAGE


def test_device_feature_probe(vfio):
    """DEVICE_FEATURE PROBE says vfio-pci offers DMA_BUF for GET only (SET and GET|SET: EINVAL),
    and features the device lacks (migration, dirty logging, VF token, unknown ids) are ENOTTY."""
    assert vfio.call(payloads.feature_probes) == {
        "DMA_BUF:GET": "ok", "DMA_BUF:SET": "EINVAL", "DMA_BUF:GET|SET": "EINVAL",
        "MIGRATION:GET": "ENOTTY", "DMA_LOGGING_START:SET": "ENOTTY", "PCI_VF_TOKEN:SET": "ENOTTY",
        "unknown-0x7ff:GET": "ENOTTY", "supports_dma_buf": "True",
    }
