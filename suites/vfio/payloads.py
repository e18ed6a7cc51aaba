"""Guest payloads of the vfio suite: the lab's ivshmem-plain and edu functions through VFIO.

Each function takes the PCI address of a function the ``vfio_device`` fixture bound to vfio-pci,
opens it through the legacy container/group interface, does a batch of calls and returns plain
data (errno names where the kernel refuses).  edu's register map is QEMU's hw/misc/edu.c.
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from gpuhil.devices import kmsg

from gpuhil.devices import pci
from gpuhil.devices.dmabuf import DmaBuf, SyncFlag
from gpuhil.errors import IoctlError
from gpuhil.attempts import attempt_sized, errno_name
from gpuhil.devices.vfio import (
    Container, DmaRange, Extension, Feature, FeatureOp, Group, Mapping, RegionIndex,
    open_device as opened,
)

PAGE = 4096
UNSAFE_INTERRUPTS = Path("/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts")

# edu (hw/misc/edu.c): BAR0 registers and its 4 KiB DMA buffer inside the device.
EDU_IDENT = 0x00
EDU_LIVENESS = 0x04
EDU_FACTORIAL = 0x08
EDU_STATUS = 0x20
EDU_DMA_SRC = 0x80
EDU_DMA_DST = 0x88
EDU_DMA_COUNT = 0x90
EDU_DMA_CMD = 0x98
EDU_DMA_START = 0x1
EDU_DMA_TO_RAM = 0x2  # direction: device buffer -> RAM (clear: RAM -> device buffer)
EDU_BUFFER = 0x40000
EDU_BUFFER_SIZE = 0x1000
#: edu only addresses 28 bits of DMA (its default dma_mask), so IOVAs stay below 256 MiB.
EDU_IOVA = 0x0010_0000

PCI_COMMAND = 0x04
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4


class KernelLog:
    """The guest kernel's log lines from now on (by sequence number: no marker to write)."""

    def __init__(self) -> None:
        self.seq = kmsg.last_seq()

    def lines(self) -> list[str]:
        """Kernel (not userspace) lines logged since construction."""
        return [r.text for r in kmsg.records_since(self.seq) if r.from_kernel]

    def wait_for(self, text: str, timeout: float = 3.0) -> list[str]:
        """:meth:`lines` once one contains ``text`` (fault reports arrive by interrupt), or when
        ``timeout`` seconds passed."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if any(text in line for line in lines) or time.monotonic() >= deadline:
                return lines
            time.sleep(0.05)


# ---- the machine ------------------------------------------------------------------------------

def iommu_setup(address: str) -> dict:
    """Which IOMMU drives the guest, the function's group, and what SET_IOMMU says with
    allow_unsafe_interrupts off (the interrupt-remapping check) and as the guest is configured,
    with the kernel lines logged meanwhile."""
    log = KernelLog()
    dev = pci.PciDevice(address)
    iommus = sorted(p.name for p in Path("/sys/class/iommu").iterdir())
    drivers = sorted({(Path("/sys/class/iommu") / n / "device" / "driver").resolve().name
                      for n in iommus if (Path("/sys/class/iommu") / n / "device" / "driver").exists()})
    configured = UNSAFE_INTERRUPTS.read_text().strip()
    out = {"iommus": iommus, "iommu_drivers": drivers, "group": dev.iommu_group,
           "group_devices": dev.iommu_group_devices(), "driver": dev.driver,
           "unsafe_interrupts": configured}
    UNSAFE_INTERRUPTS.write_text("N")
    try:
        with Container() as container, Group.of(address) as group:
            group.set_container(container)
            out["set_iommu_strict"] = attempt_sized(lambda: container.set_iommu(Extension.TYPE1v2))
    finally:
        UNSAFE_INTERRUPTS.write_text(configured)
    with Container() as container, Group.of(address) as group:
        group.set_container(container)
        out["set_iommu_configured"] = attempt_sized(lambda: container.set_iommu(Extension.TYPE1v2))
    out["kmsg"] = log.lines()
    return out


# ---- container / group ------------------------------------------------------------------------

def container_flow(address: str) -> dict:
    """The container/group handshake, each step's answer, and the steps taken out of order."""
    out: dict = {}
    with Container() as container, Group.of(address) as group:
        out["api"] = container.api_version()
        out["ext_before_group"] = {e.name: container.check_extension(e)
                                   for e in (Extension.TYPE1, Extension.TYPE1v2, Extension.NOIOMMU)}
        status = group.status()
        out["status_before"] = (status.viable, status.container_set)
        out["set_iommu_without_group"] = attempt_sized(lambda: container.set_iommu(Extension.TYPE1v2))
        out["device_without_container"] = attempt_sized(lambda: group.device(address).close())
        group.set_container(container)
        status = group.status()
        out["status_after"] = (status.viable, status.container_set)
        out["device_before_set_iommu"] = attempt_sized(lambda: group.device(address).close())
        with Container() as other:
            out["second_container"] = attempt_sized(lambda: group.set_container(other))
        out["set_iommu_type1v2"] = attempt_sized(lambda: container.set_iommu(Extension.TYPE1v2))
        out["set_iommu_again"] = attempt_sized(lambda: container.set_iommu(Extension.TYPE1v2))
        out["ext_after"] = {e.name: container.check_extension(e)
                            for e in (Extension.TYPE1v2, Extension.UNMAP_ALL, Extension.UPDATE_VADDR)}
        out["device_wrong_name"] = attempt_sized(lambda: group.device("0000:ff:1f.7").close())
        device = group.device(address)
        out["device_fd_cloexec"] = bool(fcntl.fcntl(device.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        out["second_device_fd"] = attempt_sized(lambda: group.device(address).close())
        out["unset_with_device_open"] = attempt_sized(group.unset_container)
        device.close()
        out["unset_after_device_close"] = attempt_sized(group.unset_container)
        status = group.status()
        out["status_unset"] = (status.viable, status.container_set)
    return out


# ---- regions ----------------------------------------------------------------------------------

def regions(address: str) -> dict:
    """DEVICE_GET_INFO and every region's info (flags, size, offset, capability ids), errno names
    for refused indexes, and one index past num_regions."""
    with opened(address) as o:
        info = o.device.info()
        found: dict[int, dict | str] = {}
        for index in range(info.num_regions + 1):
            try:
                r = o.device.region_info(index)
            except IoctlError as exc:
                found[index] = errno_name(exc)
                continue
            found[index] = {"flags": int(r.flags), "size": r.size, "offset": r.offset,
                            "caps": [c.id for c in r.caps.headers],
                            "sparse": None if r.caps.sparse_mmap is None else
                            [(a.offset, a.size) for a in r.caps.sparse_mmap],
                            "msix_mappable": r.caps.msix_mappable}
        return {"flags": int(info.flags), "num_regions": info.num_regions,
                "num_irqs": info.num_irqs, "caps": [c.id for c in info.caps], "regions": found}


def mmap_outcomes(address: str) -> dict[str, str]:
    """Which regions map: every BAR with MMAP maps, CONFIG and empty BARs do not."""
    with opened(address) as o:
        out = {}
        for index in (RegionIndex.BAR0, RegionIndex.BAR1, RegionIndex.BAR2, RegionIndex.CONFIG):
            info = o.device.region_info(index)
            length = info.size or PAGE
            out[index.name] = attempt_sized(lambda: o.device.mmap(index, 0, length))
        bar0 = o.device.region_info(RegionIndex.BAR0)
        out["BAR0-past-end"] = attempt_sized(lambda: o.device.mmap(RegionIndex.BAR0, 0,
                                                               bar0.size + PAGE * 16))
        return out


# ---- ivshmem BAR2 (RAM shared with the host's memfd) -------------------------------------------

def ivshmem_write(address: str, offset: int, data: bytes) -> dict:
    """Stores ``data`` at ``offset`` of BAR2 through the VFIO mmap; reads it back via mmap and pread."""
    with opened(address) as o:
        bar = o.device.mmap(RegionIndex.BAR2)
        bar.write(data, offset)
        return {"size": len(bar), "mmap": bar.read(offset, len(data)),
                "pread": o.device.read_region(RegionIndex.BAR2, offset, len(data))}


def ivshmem_read(address: str, offset: int, size: int) -> bytes:
    """``size`` bytes of BAR2 at ``offset`` through a fresh VFIO mmap."""
    with opened(address) as o:
        with o.device.mmap(RegionIndex.BAR2, offset - offset % PAGE, PAGE + size) as window:
            return window.read(offset % PAGE, size)


# ---- edu --------------------------------------------------------------------------------------

def edu_registers(address: str) -> dict:
    """edu's ident, liveness (inverts what is written) and factorial registers through the BAR0
    mmap, and the same registers through pread/pwrite of the region."""
    with opened(address) as o:
        d = o.device
        bar = d.mmap(RegionIndex.BAR0)
        out = {"ident": bar.read32(EDU_IDENT)}
        out["liveness"] = []
        for value in (0x0, 0x12345678, 0xFFFFFFFF, 0xA5A5_5A5A):
            bar.write32(EDU_LIVENESS, value)
            out["liveness"].append((value, bar.read32(EDU_LIVENESS)))
        bar.write32(EDU_FACTORIAL, 10)
        deadline = time.monotonic() + 60  # a safety net, not a verdict
        while bar.read32(EDU_STATUS) & 0x1 and time.monotonic() < deadline:
            time.sleep(0.001)
        out["factorial_10"] = bar.read32(EDU_FACTORIAL)
        d.write_region(RegionIndex.BAR0, EDU_LIVENESS, (0x0F0F_0F0F).to_bytes(4, "little"))
        out["pread_liveness"] = int.from_bytes(d.read_region(RegionIndex.BAR0, EDU_LIVENESS, 4),
                                               "little")
        out["pread_ident"] = int.from_bytes(d.read_region(RegionIndex.BAR0, EDU_IDENT, 4), "little")
        return out


def _edu_dma(bar: Mapping, src: int, dst: int, count: int, to_ram: bool,
             timeout: float = 10.0) -> bool:
    """One edu DMA transfer; True once the engine reports it done."""
    if to_ram:
        assert EDU_BUFFER <= src and src + count <= EDU_BUFFER + EDU_BUFFER_SIZE
    else:
        assert EDU_BUFFER <= dst and dst + count <= EDU_BUFFER + EDU_BUFFER_SIZE
    bar.write64(EDU_DMA_SRC, src)
    bar.write64(EDU_DMA_DST, dst)
    bar.write64(EDU_DMA_COUNT, count)
    bar.write64(EDU_DMA_CMD, EDU_DMA_START | (EDU_DMA_TO_RAM if to_ram else 0))
    deadline = time.monotonic() + timeout
    while bar.read64(EDU_DMA_CMD) & EDU_DMA_START:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def edu_dma(address: str, iova: int = EDU_IOVA) -> dict:
    """edu's DMA engine copies a page from a MAP_DMA'd buffer into its own buffer and back out to
    another IOVA; then, after UNMAP_DMA, a copy to the unmapped IOVA must not reach the memory.
    Returns the kernel lines logged meanwhile (the vIOMMU driver reports the fault)."""
    out: dict = {}
    log = KernelLog()
    with opened(address) as o:
        d = o.device
        d.config_write(PCI_COMMAND, 2, d.config_read(PCI_COMMAND, 2)
                       | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)
        info = o.container.iommu_info()
        out["iova_usable"] = any(s <= iova and iova + 3 * PAGE - 1 <= e for s, e in info.iova_ranges)
        bar = d.mmap(RegionIndex.BAR0)
        pattern = bytes((i * 7 + 3) & 0xFF for i in range(PAGE))
        with o.container.dma_buffer(2 * PAGE, iova) as buf:
            buf.memory.write(pattern, 0)
            out["to_device_done"] = _edu_dma(bar, iova, EDU_BUFFER, PAGE, to_ram=False)
            out["to_ram_done"] = _edu_dma(bar, EDU_BUFFER, iova + PAGE, PAGE, to_ram=True)
            out["round_trip"] = buf.memory.read(PAGE, PAGE) == pattern
            out["first_bytes"] = buf.memory.read(PAGE, 8)
        # The same memory, no longer mapped for the device: the vIOMMU must stop the write.
        with Mapping.anonymous(PAGE) as memory:
            o.container.map_dma(memory.address, iova + 2 * PAGE, PAGE)
            out["unmapped_bytes"] = o.container.unmap_dma(iova + 2 * PAGE, PAGE)
            memory.write(b"\0" * PAGE, 0)
            out["blocked_done"] = _edu_dma(bar, EDU_BUFFER, iova + 2 * PAGE, PAGE, to_ram=True)
            out["blocked_memory_untouched"] = memory.read(0, PAGE) == b"\0" * PAGE
    out["kmsg"] = log.wait_for(f"{iova + 2 * PAGE:#x}")
    return out


# ---- DMA map / unmap --------------------------------------------------------------------------

def dma_map_outcomes(address: str, iova: int = 0x2000_0000) -> dict:
    """MAP_DMA/UNMAP_DMA: IOMMU info, sizes unmapped, overlaps, alignment and UNMAP_ALL."""
    out: dict = {}
    with opened(address) as o, Mapping.anonymous(16 * PAGE) as memory:
        c = o.container
        info = c.iommu_info()
        out["pgsizes_has_4k"] = bool(info.iova_pgsizes & PAGE)
        out["ranges"] = list(info.iova_ranges)
        base = memory.address
        out["map"] = attempt_sized(lambda: c.map_dma(base, iova, 4 * PAGE))
        out["map_overlap"] = attempt_sized(lambda: c.map_dma(base, iova + PAGE, PAGE))
        out["map_unaligned_iova"] = attempt_sized(lambda: c.map_dma(base, iova + 8 * PAGE + 1, PAGE))
        out["map_unaligned_size"] = attempt_sized(lambda: c.map_dma(base, iova + 8 * PAGE, PAGE + 1))
        out["map_zero"] = attempt_sized(lambda: c.map_dma(base, iova + 8 * PAGE, 0))
        out["map_unmapped_vaddr"] = attempt_sized(lambda: c.map_dma(0x1000, iova + 8 * PAGE, PAGE))
        out["unmap_middle"] = attempt_sized(lambda: c.unmap_dma(iova + PAGE, PAGE))
        out["unmap_whole"] = c.unmap_dma(iova, 4 * PAGE)
        out["unmap_nothing"] = c.unmap_dma(iova, 4 * PAGE)
        for i in range(4):
            c.map_dma(base + i * PAGE, iova + i * 2 * PAGE, PAGE)
        out["unmap_all_supported"] = c.check_extension(Extension.UNMAP_ALL)
        out["unmap_all"] = c.unmap_all() if out["unmap_all_supported"] else None
    return out


# ---- device features --------------------------------------------------------------------------

def feature_probes(address: str) -> dict[str, str]:
    """DEVICE_FEATURE PROBE answers for DMA_BUF (GET, SET, both) and features vfio-pci lacks."""
    with opened(address) as o:
        d = o.device
        out = {
            "DMA_BUF:GET": attempt_sized(lambda: d.probe_feature(Feature.DMA_BUF)),
            "DMA_BUF:SET": attempt_sized(lambda: d.probe_feature(Feature.DMA_BUF, FeatureOp.SET)),
            "DMA_BUF:GET|SET": attempt_sized(
                lambda: d.probe_feature(Feature.DMA_BUF, FeatureOp.GET | FeatureOp.SET)),
            "MIGRATION:GET": attempt_sized(lambda: d.probe_feature(Feature.MIGRATION)),
            "DMA_LOGGING_START:SET": attempt_sized(
                lambda: d.probe_feature(Feature.DMA_LOGGING_START, FeatureOp.SET)),
            "PCI_VF_TOKEN:SET": attempt_sized(lambda: d.probe_feature(Feature.PCI_VF_TOKEN, FeatureOp.SET)),
            "unknown-0x7ff:GET": attempt_sized(lambda: d.probe_feature(0x7FF)),
        }
        out["supports_dma_buf"] = str(d.supports_feature(Feature.DMA_BUF))
        return out


# ---- DMA_BUF export ---------------------------------------------------------------------------

def _fd_flags(fd: int) -> dict:
    return {"cloexec": bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
            "accmode": fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE}


def dma_buf_exports(address: str, region: int, cases: dict[str, list[tuple[int, int]]]) -> dict:
    """Exports ``region`` once per case; per case: size and fdinfo, or the errno name."""
    out: dict = {}
    with opened(address) as o:
        for label, ranges in cases.items():
            try:
                buf = o.device.export_dma_buf(region, [DmaRange(*r) for r in ranges])
            except IoctlError as exc:
                out[label] = errno_name(exc)
                continue
            with buf:
                info = buf.fdinfo()
                out[label] = {"size": buf.size, "fdinfo_size": info.size,
                              "exp_name": info.exp_name, **_fd_flags(buf.fd)}
    return out


def dma_buf_raw_outcomes(address: str) -> dict:
    """Export arguments the typed API does not offer: flags, open flags, and a range whose offset
    wraps the BAR's physical address."""
    out: dict = {}
    with opened(address) as o:
        d = o.device

        def raw(region: int, ranges: list[tuple[int, int]], open_flags: int, flags: int = 0):
            return d.dma_buf_feature(region, ranges, open_flags=open_flags, flags=flags)

        out["flags-1"] = attempt_sized(lambda: raw(RegionIndex.BAR2, [(0, PAGE)], os.O_RDWR | os.O_CLOEXEC, 1))
        out["wrapping-offset"] = attempt_sized(
            lambda: raw(RegionIndex.BAR2, [((1 << 64) - PAGE, PAGE)], os.O_RDWR | os.O_CLOEXEC))
        out["huge-length"] = attempt_sized(
            lambda: raw(RegionIndex.BAR2, [(0, 1 << 62)], os.O_RDWR | os.O_CLOEXEC))
        with raw(RegionIndex.BAR2, [(0, PAGE)], os.O_RDONLY) as buf:
            out["rdonly"] = _fd_flags(buf.fd)
        with raw(RegionIndex.BAR2, [(0, PAGE)], os.O_RDWR) as buf:
            out["rdwr-no-cloexec"] = _fd_flags(buf.fd)
    return out


def dma_buf_behaviour(address: str) -> dict:
    """What a VFIO dma-buf does: mmap, SYNC and sync files, then with memory decode turned off and
    on again (the kernel revokes and restores it for importers), after DEVICE_RESET, after the
    device fd closes and after vfio-pci lets go of the function (the dma-buf still open)."""
    out: dict = {}
    log = KernelLog()
    dev = pci.PciDevice(address)

    def probe(buf: DmaBuf) -> dict:
        result = {"size": buf.size, "exp_name": buf.fdinfo().exp_name,
                  "mmap": attempt_sized(lambda: buf.mmap()),
                  "sync_start_rw": attempt_sized(lambda: buf.sync(SyncFlag.READ | SyncFlag.WRITE)),
                  "sync_end_rw": attempt_sized(lambda: buf.sync(SyncFlag.END | SyncFlag.READ | SyncFlag.WRITE)),
                  "sync_bad_flags": attempt_sized(lambda: buf.sync(SyncFlag.READ | 0x8))}
        try:
            with buf.export_sync_file(read=True, write=True) as fence:
                result["fence_signaled"] = fence.signaled
        except IoctlError as exc:
            result["fence_signaled"] = errno_name(exc)
        return result

    container = Container()
    group = Group.of(address)
    try:
        group.set_container(container)
        container.set_iommu(Extension.TYPE1v2)
        device = group.device(address)
        out["resettable"] = device.info().resettable
        buf = device.export_dma_buf(RegionIndex.BAR2, [(0, 2 * PAGE)])
        out["fresh"] = probe(buf)
        command = device.config_read(PCI_COMMAND, 2)
        device.config_write(PCI_COMMAND, 2, command & ~PCI_COMMAND_MEMORY)  # revokes the export
        out["decode_off"] = probe(buf)
        out["export_decode_off"] = attempt_sized(
            lambda: device.export_dma_buf(RegionIndex.BAR2, [(0, PAGE)]))
        device.config_write(PCI_COMMAND, 2, command | PCI_COMMAND_MEMORY)
        out["decode_on"] = probe(buf)
        out["reset"] = attempt_sized(device.reset)
        out["after_reset"] = probe(buf)
        out["export_after_reset"] = attempt_sized(
            lambda: device.export_dma_buf(RegionIndex.BAR2, [(0, PAGE)]))
        device.close()
        out["after_device_close"] = probe(buf)
        group.close()
        container.close()
        dev.unbind()  # vfio-pci must let go even though the dma-buf is still open
        out["driver_after_unbind"] = dev.driver
        out["after_unbind"] = probe(buf)
        buf.close()
    finally:
        group.close()
        container.close()
        if dev.driver != "vfio-pci":
            dev.bind("vfio-pci")  # the fixture restores the original driver afterwards
    out["driver_at_end"] = dev.driver
    out["kmsg"] = log.lines()
    return out
