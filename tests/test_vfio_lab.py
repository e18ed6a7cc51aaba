"""gpuhil.devices.vfio and gpuhil.devices.pci against real devices, in the virtual lab's VFIO guest.

The ``vfio_guest`` fixture (tests/conftest.py, issue 3) boots q35 + intel-iommu with an
ivshmem-plain (16 MiB memfd BAR2) and an edu device.  The ``payload_*`` functions run inside
the guest through ``vfio_guest.call``: each loads vfio-pci, binds its device with
:meth:`gpuhil.devices.pci.PciDevice.bound_to`, works through gpuhil.devices.vfio and returns plain results.
This module must stay importable without hypothesis (the guest imports it).
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from typing import Iterator

import pytest

from gpuhil.devices import pci
from gpuhil.devices.dmabuf import DmaBuf, DmaBufInfo, SyncFlag
from gpuhil.errors import IoctlError
from gpuhil.devices.vfio import (
    Container, DeviceFlag, DeviceInfo, DmaRange, Extension, Feature, FeatureOp, Group, IrqIndex,
    Mapping, Opened, RegionFlag, RegionIndex, RegionInfo, open_device,
)

from gpuhil.devices.pci_ids import EDU, IVSHMEM
MIB = 1 << 20
BAR2_SIZE = 16 * MIB  # the lab's ivshmem memory backend
EDU_BAR0_SIZE = MIB
IOVA = 0x1000_0000


# ---------------------------------------------------------------------------------------------
# Guest side
# ---------------------------------------------------------------------------------------------

def find_one(ids: tuple[int, int]) -> pci.PciDevice:
    found = pci.find(*ids)
    if len(found) != 1:
        raise LookupError(f"expected one {ids[0]:04x}:{ids[1]:04x} function, found {found}")
    return found[0]


@contextmanager
def opened(ids: tuple[int, int]) -> Iterator[Opened]:
    """Binds the device to vfio-pci and opens it (gpuhil.devices.vfio.open_device); closes
    everything and unbinds afterwards."""
    pci.modprobe("vfio-pci", "vfio_iommu_type1")
    dev = find_one(ids)
    with dev.bound_to("vfio-pci"), open_device(dev.address) as o:
        yield o


def payload_container_flow() -> dict:
    """Container/group handshake step by step, as the kernel reports it."""
    pci.modprobe("vfio-pci", "vfio_iommu_type1")
    dev = find_one(IVSHMEM)
    with dev.bound_to("vfio-pci"):
        with Container() as container, Group.of(dev.address) as group:
            before = group.status()
            api = container.api_version()
            type1v2 = container.check_extension(Extension.TYPE1v2)
            group.set_container(container)
            after = group.status()
            container.set_iommu(Extension.TYPE1v2)
            with group.device(dev.address) as device:
                device_fd_ok = device.fd >= 0
            return {
                "api": api, "type1v2": type1v2, "viable": before.viable,
                "container_set_before": before.container_set,
                "container_set_after": after.container_set, "device_fd_ok": device_fd_ok,
                "group_path": group.path, "iommu_group": dev.iommu_group,
            }


def payload_device_info() -> tuple[DeviceInfo, dict, dict]:
    """DEVICE_GET_INFO, every REGION_INFO and every IRQ_INFO (errno name where refused)."""
    with opened(IVSHMEM) as o:
        info = o.device.info()
        regions: dict[int, RegionInfo | str] = {}
        for index in range(info.num_regions):
            try:
                regions[index] = o.device.region_info(index)
            except IoctlError as exc:
                regions[index] = errno.errorcode[exc.errno]
        irqs: dict[int, tuple[int, int] | str] = {}
        for index in range(info.num_irqs):
            try:
                irq = o.device.irq_info(index)
                irqs[index] = (int(irq.flags), irq.count)
            except IoctlError as exc:
                irqs[index] = errno.errorcode[exc.errno]
        return info, regions, irqs


def payload_bar2_roundtrip() -> dict:
    """Typed stores into the BAR2 mmap read back through the mmap and through pread."""
    with opened(IVSHMEM) as o:
        bar = o.device.mmap(RegionIndex.BAR2)
        bar.write64(0, 0x0123456789ABCDEF)
        bar.write32(BAR2_SIZE - 4, 0xC0FFEE11)
        bar.write16(0x1000, 0xBEEF)
        bar.write8(0x1003, 0x5A)
        result = {
            "length": len(bar),
            "u64": bar.read64(0),
            "u32_end": bar.read32(BAR2_SIZE - 4),
            "u32_mixed": bar.read32(0x1000),
            "pread_u64": int.from_bytes(o.device.read_region(RegionIndex.BAR2, 0, 8), "little"),
        }
        o.device.write_region(RegionIndex.BAR2, 0x2000, b"via pwrite")
        result["mmap_sees_pwrite"] = bar.read(0x2000, 10)
    result["closed_with_device"] = bar.closed
    return result


def payload_config_space() -> dict:
    """PCI config space through the CONFIG region: ids, and a command register round trip."""
    with opened(IVSHMEM) as o:
        d = o.device
        command = d.config_read(0x04, 2)
        d.config_write(0x04, 2, command | 0x2)  # memory space enable
        enabled = d.config_read(0x04, 2)
        return {"vendor": d.config_read(0x00, 2), "device": d.config_read(0x02, 2),
                "class": d.config_read(0x08, 4) >> 8, "command_after": enabled,
                "config": d.region_info(RegionIndex.CONFIG)}


def payload_dma_map() -> dict:
    """MAP_DMA of an owned buffer, the IOMMU's info, and UNMAP_DMA on close."""
    with opened(IVSHMEM) as o:
        iommu = o.container.iommu_info()
        buf = o.container.dma_buffer(MIB, IOVA)
        buf.memory.write32(0, 0xD00DFEED)
        pattern = buf.memory.read32(0)
        buf.close()
        buf.close()
        unmapped_again = o.container.unmap_dma(IOVA, MIB)  # already gone: 0 bytes
        with o.container.dma_buffer(MIB, IOVA) as again:  # the IOVA is free again
            remapped = again.iova
        with Mapping.anonymous(MIB) as memory:
            o.container.map_dma(memory.address, IOVA + MIB, MIB)
            explicit = o.container.unmap_dma(IOVA + MIB, MIB)
        return {"pgsizes": iommu.iova_pgsizes, "ranges": iommu.iova_ranges, "pattern": pattern,
                "unmapped_again": unmapped_again, "remapped": remapped, "explicit": explicit}


def payload_feature_probe() -> dict:
    """DEVICE_FEATURE PROBE for DMA_BUF (GET supported, SET not) and for an unknown feature."""
    with opened(IVSHMEM) as o:
        o.device.probe_feature(Feature.DMA_BUF)
        try:
            o.device.probe_feature(Feature.DMA_BUF, FeatureOp.SET)
            set_result = "ok"
        except IoctlError as exc:
            set_result = errno.errorcode[exc.errno]
        return {"get": o.device.supports_feature(Feature.DMA_BUF), "set": set_result,
                "unknown": o.device.supports_feature(0x7FF)}


def _fdinfo_and_size(buf: DmaBuf) -> tuple[DmaBufInfo, int]:
    return buf.fdinfo(), buf.size


def payload_dma_buf_export(ranges: list[tuple[int, int]]) -> dict:
    """Exports BAR2 ``ranges`` as a dma-buf; fdinfo, size, mmap and SYNC on it."""
    with opened(IVSHMEM) as o:
        with o.device.export_dma_buf(RegionIndex.BAR2, [DmaRange(*r) for r in ranges]) as buf:
            info, size = _fdinfo_and_size(buf)
            try:
                buf.mmap().close()
                mmap_result = "ok"
            except IoctlError as exc:
                mmap_result = errno.errorcode[exc.errno]
            buf.sync(SyncFlag.START | SyncFlag.READ)
            buf.sync(SyncFlag.END | SyncFlag.READ)
            return {"info": info, "size": size, "mmap": mmap_result, "is_dmabuf": isinstance(buf, DmaBuf)}


def payload_dma_buf_error(ids: tuple[int, int], region: int, ranges: list[tuple[int, int]]) -> None:
    """An export the kernel must refuse: re-raises the IoctlError on the host."""
    with opened(ids) as o:
        o.device.export_dma_buf(region, ranges).close()


def payload_edu_dma_buf() -> dict:
    """edu's BAR0 (1 MiB of registers) exports too; fdinfo of the result."""
    with opened(EDU) as o:
        bar0 = o.device.region_info(RegionIndex.BAR0)
        with o.device.export_dma_buf(RegionIndex.BAR0, [(0, bar0.size)]) as buf:
            return {"bar0_size": bar0.size, "info": buf.fdinfo()}


def payload_reset() -> dict:
    """DEVICE_RESET where the device advertises it, EINVAL where it does not."""
    with opened(IVSHMEM) as o:
        resettable = o.device.info().resettable
        try:
            o.device.reset()
            outcome = "ok"
        except IoctlError as exc:
            outcome = errno.errorcode[exc.errno]
        return {"resettable": resettable, "outcome": outcome}


def payload_bind_restore() -> dict:
    """Driver and driver_override before, during and after bound_to, also after an error."""
    pci.modprobe("vfio-pci")
    dev = find_one(IVSHMEM)
    seen = {"before": (dev.driver, dev.driver_override)}
    with dev.bound_to("vfio-pci"):
        seen["inside"] = (dev.driver, dev.driver_override)
        seen["group_node"] = os.path.exists(dev.vfio_group_path)
    seen["after"] = (dev.driver, dev.driver_override)
    try:
        with dev.bound_to("vfio-pci"):
            raise RuntimeError("payload failure inside the block")
    except RuntimeError as exc:
        seen["error"] = str(exc)
    seen["after_error"] = (dev.driver, dev.driver_override)
    try:
        with dev.bound_to("gpuhil-no-such-driver", timeout=0.5):
            seen["bound_to_nothing"] = True
    except pci.BindError as exc:
        seen["bind_error"] = str(exc)
    seen["after_bind_error"] = (dev.driver, dev.driver_override)
    return seen


def payload_dma_buf_feature_ops() -> dict:
    """The typed DMA_BUF feature with each op: PROBE|GET answers 0, SET and GET|SET are refused
    (errno names), GET gives a dma-buf of the ranges' size; flags=1 is refused."""
    with opened(IVSHMEM) as o:
        d = o.device
        ranges = [DmaRange(0, 0x1000), (MIB, 0x2000)]
        out = {"probe_get": d.dma_buf_feature(RegionIndex.BAR2, ranges, FeatureOp.PROBE | FeatureOp.GET)}
        for label, op in (("set", FeatureOp.SET), ("get_set", FeatureOp.GET | FeatureOp.SET),
                          ("probe_set", FeatureOp.PROBE | FeatureOp.SET)):
            try:
                out[label] = d.dma_buf_feature(RegionIndex.BAR2, ranges, op)
            except IoctlError as exc:
                out[label] = (errno.errorcode[exc.errno], str(exc))
        with d.dma_buf_feature(RegionIndex.BAR2, ranges) as buf:
            out["get"] = (type(buf).__name__, buf.size, buf.fdinfo().exp_name)
        try:
            d.dma_buf_feature(RegionIndex.BAR2, ranges, flags=1).close()
            out["flags_1"] = "ok"
        except IoctlError as exc:
            out["flags_1"] = errno.errorcode[exc.errno]
        return out


def payload_raw_ioctls() -> dict:
    """The escape hatch on container, group and device: GET_API_VERSION and CHECK_EXTENSION by
    number, GROUP_GET_STATUS with a struct, an unknown request refused with its number."""
    import struct

    from gpuhil._vfio import ABI

    with opened(IVSHMEM) as o:
        status = o.group.ioctl(ABI["VFIO_GROUP_GET_STATUS"], struct.pack("<II", 8, 0))
        out = {"api_version": o.container.ioctl(ABI["VFIO_GET_API_VERSION"]),
               "type1v2": o.container.ioctl(ABI["VFIO_CHECK_EXTENSION"], int(Extension.TYPE1v2)),
               "group_flags": struct.unpack("<II", status)[1],
               "typed_group_flags": int(o.group.status().flags)}
        for label, handle in (("container", o.container), ("group", o.group), ("device", o.device)):
            try:
                handle.ioctl(0x3B7F, 0)  # _IO(';', 0x7f): past every VFIO request
                out[label] = "ok"
            except IoctlError as exc:
                out[label] = (type(exc).__name__, str(exc))
        return out


# ---------------------------------------------------------------------------------------------
# Host side
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def guest(request):
    """The lab's VFIO guest; skips with the reason until the lab (issue 3) provides it."""
    try:
        return request.getfixturevalue("vfio_guest")
    except pytest.FixtureLookupError:
        pytest.skip("needs the virtual lab's vfio_guest fixture (issue 3), not available here")


pytestmark = pytest.mark.lab


def test_container_group_flow(guest):
    """API version 0, TYPE1v2 offered, a viable group that takes the container, a device fd."""
    r = guest.call(payload_container_flow)
    assert r["api"] == 0 and r["type1v2"] > 0
    assert r["viable"] and not r["container_set_before"] and r["container_set_after"]
    assert r["device_fd_ok"] and r["group_path"] == f"/dev/vfio/{r['iommu_group']}"


def test_device_info_regions_and_irqs(guest):
    """vfio-pci reports 9 regions and 5 IRQ indexes; BAR2 is the 16 MiB mmap-able memfd."""
    info, regions, irqs = guest.call(payload_device_info)
    assert info.flags & DeviceFlag.PCI
    assert (info.num_regions, info.num_irqs) == (9, 5)
    bar2 = regions[RegionIndex.BAR2]
    assert bar2.size == BAR2_SIZE
    assert bar2.flags & (RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP) == (
        RegionFlag.READ | RegionFlag.WRITE | RegionFlag.MMAP)
    assert bar2.offset == RegionIndex.BAR2 << 40
    assert regions[RegionIndex.BAR0].size == 256  # ivshmem's register BAR
    assert regions[RegionIndex.BAR1].size == 0  # no MSI-X BAR on ivshmem-plain
    config = regions[RegionIndex.CONFIG]
    assert config.readable and config.writable and not config.mmappable and config.size >= 256
    assert regions[RegionIndex.VGA] == "EINVAL"  # not a VGA device
    # ivshmem-plain has no interrupt pin, MSI or MSI-X; ERR needs PCIe AER; REQ is always there.
    counts = {i: v[1] if isinstance(v, tuple) else v for i, v in irqs.items()}
    assert counts == {IrqIndex.INTX: 0, IrqIndex.MSI: 0, IrqIndex.MSIX: 0,
                      IrqIndex.ERR: "EINVAL", IrqIndex.REQ: 1}


def test_bar2_mmap_write_read_back(guest):
    """Typed stores to ivshmem's RAM BAR read back, through the mapping and through pread."""
    r = guest.call(payload_bar2_roundtrip)
    assert r["length"] == BAR2_SIZE
    assert r["u64"] == r["pread_u64"] == 0x0123456789ABCDEF
    assert r["u32_end"] == 0xC0FFEE11
    assert r["u32_mixed"] == 0x5A00BEEF
    assert r["mmap_sees_pwrite"] == b"via pwrite"
    assert r["closed_with_device"]


def test_config_space_access(guest):
    """Config reads give ivshmem's ids; a command register write sticks."""
    r = guest.call(payload_config_space)
    assert (r["vendor"], r["device"]) == IVSHMEM
    assert r["class"] == 0x050000  # memory controller, RAM
    assert r["command_after"] & 0x2


def test_map_and_unmap_dma(guest):
    """MAP_DMA works at a fixed IOVA, close unmaps it, and the IOVA is reusable."""
    r = guest.call(payload_dma_map)
    assert r["pgsizes"] & 0x1000
    assert any(start <= IOVA and IOVA + MIB - 1 <= end for start, end in r["ranges"])
    assert r["pattern"] == 0xD00DFEED
    assert r["unmapped_again"] == 0
    assert r["remapped"] == IOVA and r["explicit"] == MIB


def test_feature_probe_dma_buf(guest):
    """PROBE|GET|DMA_BUF succeeds; SET is not offered (EINVAL); unknown ids are Unsupported."""
    r = guest.call(payload_feature_probe)
    assert r == {"get": True, "set": "EINVAL", "unknown": False}


def test_dma_buf_export_one_range(guest):
    """One 1 MiB range: a vfio_pci_core dma-buf of 1 MiB; no mmap (EINVAL); SYNC is accepted."""
    r = guest.call(payload_dma_buf_export, [(0, MIB)])
    assert r["is_dmabuf"]
    assert r["info"].exp_name == "vfio_pci_core"
    assert r["info"].size == r["size"] == MIB
    assert r["mmap"] == "EINVAL"


def test_dma_buf_export_two_ranges(guest):
    """Two 4 KiB ranges make one dma-buf of their summed size."""
    r = guest.call(payload_dma_buf_export, [(0, 0x1000), (MIB, 0x1000)])
    assert r["info"].size == r["size"] == 0x2000
    assert r["info"].exp_name == "vfio_pci_core"


@pytest.mark.parametrize("region, ranges, err, text", [
    (RegionIndex.BAR2, [], errno.EINVAL, "region=BAR2, ranges=[]"),
    (RegionIndex.BAR2, [(0x10, 0x1000)], errno.EINVAL, "ranges=[(0x10, 0x1000)]"),
    (RegionIndex.BAR2, [(0, 0x800)], errno.EINVAL, "ranges=[(0x0, 0x800)]"),
    (RegionIndex.BAR2, [(BAR2_SIZE - 0x1000, 0x2000)], errno.EINVAL, "ranges=[(0xfff000, 0x2000)]"),
    (RegionIndex.BAR2, [(0, 0)], errno.EINVAL, "ranges=[(0x0, 0x0)]"),
    (RegionIndex.CONFIG, [(0, 0x1000)], errno.ENODEV, "region=CONFIG"),
    (RegionIndex.ROM, [(0, 0x1000)], errno.ENODEV, "region=ROM"),
], ids=["no-ranges", "unaligned-offset", "unaligned-length", "past-the-bar", "zero-length",
        "config-region", "rom-region"])
def test_dma_buf_export_refused(guest, region, ranges, err, text):
    """Malformed exports fail with the kernel's errno and a message naming region and ranges."""
    with pytest.raises(IoctlError) as info:
        guest.call(payload_dma_buf_error, IVSHMEM, int(region), ranges)
    assert info.value.errno == err
    assert info.value.op == "DEVICE_FEATURE"
    assert str(info.value).startswith("DEVICE_FEATURE(feature=GET|DMA_BUF, ")
    assert text in str(info.value)


def test_edu_bar_exports_and_refuses_past_its_end(guest):
    """edu's MMIO BAR exports as a whole; one page beyond it is EINVAL."""
    r = guest.call(payload_edu_dma_buf)
    assert r["bar0_size"] == EDU_BAR0_SIZE and r["info"].size == EDU_BAR0_SIZE
    with pytest.raises(IoctlError) as info:
        guest.call(payload_dma_buf_error, EDU, int(RegionIndex.BAR0), [(0, EDU_BAR0_SIZE + 0x1000)])
    assert info.value.errno == errno.EINVAL


def test_reset_follows_the_reset_flag(guest):
    """DEVICE_RESET succeeds exactly when DEVICE_GET_INFO advertises RESET (else EINVAL)."""
    r = guest.call(payload_reset)
    assert r["outcome"] == ("ok" if r["resettable"] else "EINVAL")


def test_bind_and_restore_driver(guest):
    """bound_to binds vfio-pci (group node appears) and restores driver + override, on error too."""
    r = guest.call(payload_bind_restore)
    assert r["inside"] == ("vfio-pci", "vfio-pci") and r["group_node"]
    assert r["after"] == r["before"]
    assert r["error"] == "payload failure inside the block"
    assert r["after_error"] == r["before"]
    assert "bound_to_nothing" not in r and "gpuhil-no-such-driver" in r["bind_error"]
    assert r["after_bind_error"] == r["before"]


def test_dma_buf_feature_with_every_op(guest):
    """The typed DMA_BUF feature: PROBE|GET is 0, SET offers are EINVAL naming the op, GET is a
    vfio_pci_core dma-buf of the ranges' summed size, flags=1 is EINVAL."""
    r = guest.call(payload_dma_buf_feature_ops)
    assert r["probe_get"] == 0
    for label, name in (("set", "SET"), ("get_set", "GET|SET"), ("probe_set", "PROBE|SET")):
        err, text = r[label]
        assert err == "EINVAL"
        assert text.startswith(f"DEVICE_FEATURE(feature={name}|DMA_BUF, region=BAR2, "
                               "ranges=[(0x0, 0x1000), (0x100000, 0x2000)]): EINVAL"), text
    assert r["get"] == ("DmaBuf", 0x3000, "vfio_pci_core")
    assert r["flags_1"] == "EINVAL"


def test_raw_ioctl_through_vfio_handles(guest):
    """Requests sent by number through container and group get the typed API's answers; an
    unknown one is Unsupported (ENOTTY) naming its number, on every handle."""
    r = guest.call(payload_raw_ioctls)
    assert r["api_version"] == 0 and r["type1v2"] == 1
    assert r["group_flags"] == r["typed_group_flags"] == 3  # VIABLE | CONTAINER_SET
    for label in ("container", "group", "device"):
        kind, text = r[label]
        assert kind == "Unsupported" and text.startswith("IOCTL(request=0x3b7f, arg=0x0): ENOTTY"), r
