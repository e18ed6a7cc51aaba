"""gpuhil.devices.vfio without a VFIO device: capability chains, error paths, closing, mappings.

Device-backed behaviour is in tests/test_vfio_lab.py (runs in the virtual lab).
"""
from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhil import _vfio

from gpuhil.devices import pci
from gpuhil.errors import ClosedError, IoctlError, Unsupported
from gpuhil.devices.vfio import (
    ABI, CapHeader, Container, Device, DmaBuffer, DmaRange, FeatureOp, Feature, Group, IrqIndex, Mapping,
    RegionCap, RegionIndex, RegionType, RegionTypeCap, SparseArea, decode_iova_ranges,
    decode_region_caps,
)

REGION_INFO = ABI["sizeof(struct vfio_region_info)"]
HEADER = ABI["sizeof(struct vfio_info_cap_header)"]
SPARSE_AREAS = ABI["offsetof(struct vfio_region_info_cap_sparse_mmap, areas)"]
SPARSE_NR = ABI["offsetof(struct vfio_region_info_cap_sparse_mmap, nr_areas)"]
TYPE_TYPE = ABI["offsetof(struct vfio_region_info_cap_type, type)"]
TYPE_SIZE = ABI["sizeof(struct vfio_region_info_cap_type)"]


# ---- building region info buffers the way the kernel lays them out ----

def sparse_cap(areas: list[tuple[int, int]], declared: int | None = None) -> bytes:
    body = bytearray(SPARSE_AREAS - HEADER)
    struct.pack_into("<I", body, SPARSE_NR - HEADER, len(areas) if declared is None else declared)
    return bytes(body) + b"".join(struct.pack("<QQ", o, s) for o, s in areas)


def type_cap(rtype: int, subtype: int) -> bytes:
    body = bytearray(TYPE_SIZE - HEADER)
    struct.pack_into("<II", body, TYPE_TYPE - HEADER, rtype, subtype)
    return bytes(body)


def chain(caps: list[tuple[int, bytes]], order: list[int] | None = None) -> tuple[bytes, int]:
    """A region info buffer with ``caps`` [(id, payload)] linked in ``order``; -> (buf, first)."""
    order = list(range(len(caps))) if order is None else order
    offsets, pos = [], REGION_INFO
    for _, payload in caps:
        offsets.append(pos)
        pos += HEADER + len(payload)
        pos += -pos % 8  # the kernel aligns each capability to 8 bytes
    buf = bytearray(pos)
    for n, i in enumerate(order):
        nxt = offsets[order[n + 1]] if n + 1 < len(order) else 0
        cap_id, payload = caps[i]
        buf[offsets[i]:offsets[i] + HEADER] = _vfio.encode_cap_header(cap_id, 1, nxt)
        buf[offsets[i] + HEADER:offsets[i] + HEADER + len(payload)] = payload
    return bytes(buf), (offsets[order[0]] if order else 0)


class TestAbiTable:
    def test_covers_the_dma_buf_export_layout(self):
        """The exported table holds the DMA_BUF feature's id, struct sizes and offsets."""
        assert ABI["VFIO_DEVICE_FEATURE_DMA_BUF"] == 11
        assert ABI["VFIO_DEVICE_FEATURE"] == 0x3B75
        assert ABI["sizeof(struct vfio_device_feature_dma_buf)"] == 16
        assert ABI["offsetof(struct vfio_device_feature_dma_buf, dma_ranges)"] == 16
        assert ABI["sizeof(struct vfio_region_dma_range)"] == 16

    def test_uses_the_7_2_device_info_layout(self):
        """struct vfio_device_info is the 24-byte 7.2 layout, not 6.1's 20 bytes."""
        assert ABI["sizeof(struct vfio_device_info)"] == 24
        assert ABI["offsetof(struct vfio_region_info, cap_offset)"] == 12
        assert ABI["VFIO_TYPE1v2_IOMMU"] == 3

    def test_every_entry_is_a_canonical_expression(self):
        """Keys are C expressions over uapi names, values are non-negative ints."""
        for expr, value in ABI.items():
            assert expr.startswith(("sizeof(struct ", "offsetof(struct ", "VFIO_", "IOMMU_")), expr
            assert isinstance(value, int) and value >= 0, expr


class TestRegionCaps:
    def test_decodes_sparse_type_and_msix(self):
        """All three region capabilities are decoded from one chain."""
        buf, first = chain([
            (RegionCap.SPARSE_MMAP, sparse_cap([(0x0, 0x1000), (0x3000, 0x1000)])),
            (RegionCap.TYPE, type_cap(RegionType.GFX, 1)),
            (RegionCap.MSIX_MAPPABLE, b""),
        ])
        caps = decode_region_caps(buf, first)
        assert caps.sparse_mmap == (SparseArea(0x0, 0x1000), SparseArea(0x3000, 0x1000))
        assert caps.type == RegionTypeCap(RegionType.GFX, 1)
        assert caps.type.pci_vendor is None
        assert caps.msix_mappable
        assert [h.id for h in caps.headers] == [RegionCap.SPARSE_MMAP, RegionCap.TYPE,
                                                 RegionCap.MSIX_MAPPABLE]

    def test_follows_next_offsets_not_buffer_order(self):
        """The chain is walked through ``next``, whatever the physical order."""
        buf, first = chain([(RegionCap.TYPE, type_cap(0x80008086, 3)),
                            (RegionCap.SPARSE_MMAP, sparse_cap([(0x2000, 0x2000)]))], order=[1, 0])
        caps = decode_region_caps(buf, first)
        assert [h.id for h in caps.headers] == [RegionCap.SPARSE_MMAP, RegionCap.TYPE]
        assert caps.type.pci_vendor == 0x8086
        assert caps.sparse_mmap == (SparseArea(0x2000, 0x2000),)
        assert not caps.msix_mappable

    def test_unknown_capability_is_listed_and_skipped(self):
        """An id gpuhil does not know is kept as a header and does not stop the walk."""
        buf, first = chain([(0x77, b"\xff" * 12), (RegionCap.MSIX_MAPPABLE, b"")])
        caps = decode_region_caps(buf, first)
        assert caps.headers[0] == CapHeader(0x77, 1, REGION_INFO)
        assert caps.msix_mappable and caps.sparse_mmap is None and caps.type is None

    def test_no_chain(self):
        """cap_offset 0 means no capabilities."""
        caps = decode_region_caps(bytes(REGION_INFO), 0)
        assert caps.headers == () and caps.sparse_mmap is None

    def test_sparse_mmap_with_zero_areas(self):
        """A SPARSE_MMAP capability may list no areas (nothing mmap-able)."""
        buf, first = chain([(RegionCap.SPARSE_MMAP, sparse_cap([]))])
        assert decode_region_caps(buf, first).sparse_mmap == ()

    def test_loop_is_rejected(self):
        """A chain whose next points back to itself raises instead of spinning."""
        buf = bytearray(REGION_INFO + HEADER)
        buf[REGION_INFO:] = _vfio.encode_cap_header(RegionCap.MSIX_MAPPABLE, 1, REGION_INFO)
        with pytest.raises(ValueError, match="loops back"):
            decode_region_caps(bytes(buf), REGION_INFO)

    def test_header_past_the_buffer_is_rejected(self):
        """A next offset beyond the buffer raises ValueError."""
        buf, first = chain([(RegionCap.MSIX_MAPPABLE, b"")])
        broken = bytearray(buf)
        broken[first:first + HEADER] = _vfio.encode_cap_header(RegionCap.MSIX_MAPPABLE, 1, len(buf) + 64)
        with pytest.raises(ValueError, match="runs past"):
            decode_region_caps(bytes(broken), first)

    def test_capability_inside_the_info_struct_is_rejected(self):
        """cap_offset pointing into the fixed struct is malformed."""
        with pytest.raises(ValueError, match="overlaps"):
            decode_region_caps(bytes(REGION_INFO + 64), 8)

    def test_sparse_areas_beyond_the_buffer_are_rejected(self):
        """nr_areas larger than what the buffer holds raises ValueError."""
        buf, first = chain([(RegionCap.SPARSE_MMAP, sparse_cap([(0, 0x1000)], declared=1000))])
        with pytest.raises(ValueError, match="declares 1000 entries"):
            decode_region_caps(buf, first)

    def test_truncated_type_capability_is_rejected(self):
        """A TYPE header at the very end of the buffer, without its body, raises."""
        buf, first = chain([(RegionCap.TYPE, b"")])
        with pytest.raises(ValueError, match="truncated"):
            decode_region_caps(buf[:first + HEADER], first)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.sampled_from([RegionCap.SPARSE_MMAP, RegionCap.TYPE, RegionCap.MSIX_MAPPABLE, 9]),
                    max_size=6).flatmap(lambda ids: st.tuples(st.just(ids), st.permutations(range(len(ids))))),
           st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)), max_size=4),
           st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)))
    def test_round_trip(self, ids_order, areas, rtype):
        """Any chain built like the kernel does decodes to what was encoded, in chain order."""
        ids, order = ids_order
        payload = {RegionCap.SPARSE_MMAP: sparse_cap(areas), RegionCap.TYPE: type_cap(*rtype),
                   RegionCap.MSIX_MAPPABLE: b"", 9: b"\0" * 4}
        buf, first = chain([(i, payload[i]) for i in ids], order=list(order))
        caps = decode_region_caps(buf, first)
        walked = [ids[i] for i in order]
        assert [h.id for h in caps.headers] == walked
        if RegionCap.SPARSE_MMAP in ids:
            assert caps.sparse_mmap == tuple(SparseArea(o, s) for o, s in areas)
        if RegionCap.TYPE in ids:
            assert caps.type == RegionTypeCap(*rtype)
        assert caps.msix_mappable == (RegionCap.MSIX_MAPPABLE in ids)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(min_size=0, max_size=160), st.integers(0, 200))
    def test_garbage_never_crashes(self, data, first):
        """Arbitrary bytes either decode or raise ValueError; never anything else."""
        buf = bytes(REGION_INFO) + data
        try:
            caps = decode_region_caps(buf, first)
        except ValueError:
            return
        for h in caps.headers:
            assert REGION_INFO <= h.offset <= len(buf) - HEADER


class TestIovaRanges:
    IOMMU_INFO = ABI["sizeof(struct vfio_iommu_type1_info)"]
    RANGES = ABI["offsetof(struct vfio_iommu_type1_info_cap_iova_range, iova_ranges)"]
    NR = ABI["offsetof(struct vfio_iommu_type1_info_cap_iova_range, nr_iovas)"]

    def info_buffer(self, ranges: list[tuple[int, int]], cap_id: int = 1, declared: int | None = None):
        cap = bytearray(self.RANGES)
        cap[0:HEADER] = _vfio.encode_cap_header(cap_id, 1, 0)
        struct.pack_into("<I", cap, self.NR, len(ranges) if declared is None else declared)
        cap += b"".join(struct.pack("<QQ", a, b) for a, b in ranges)
        return bytes(self.IOMMU_INFO) + bytes(cap), self.IOMMU_INFO

    def test_decodes_the_ranges_vt_d_reports(self):
        """Two ranges around the interrupt window, as VT-d gives them (end inclusive)."""
        ranges = [(0, 0xFEDFFFFF), (0xFEF00000, 0xFFFFFFFFFFFF)]
        buf, first = self.info_buffer(ranges)
        assert decode_iova_ranges(buf, first) == tuple(ranges)

    def test_other_capabilities_give_no_ranges(self):
        buf, first = self.info_buffer([(0, 0xFFFF)], cap_id=2)
        assert decode_iova_ranges(buf, first) == ()
        assert decode_iova_ranges(buf, 0) == ()

    def test_overlong_range_count_is_rejected(self):
        buf, first = self.info_buffer([(0, 0xFFFF)], declared=3)
        with pytest.raises(ValueError, match="IOVA_RANGE capability .* declares 3 entries"):
            decode_iova_ranges(buf, first)


class TestMissingNodes:
    def test_container_without_vfio_names_the_path(self):
        """No /dev/vfio/vfio: Unsupported that names the node."""
        path = "/nonexistent/vfio/vfio"
        with pytest.raises(Unsupported) as info:
            Container(path)
        assert info.value.errno == errno.ENOENT
        assert str(info.value).startswith(f"OPEN(path={path}): ENOENT")
        assert "vfio module" in str(info.value)

    @pytest.mark.skipif(Path("/dev/vfio/vfio").exists(), reason="this machine has VFIO")
    def test_default_container_on_a_machine_without_vfio(self):
        """The default path is /dev/vfio/vfio."""
        with pytest.raises(Unsupported, match=r"OPEN\(path=/dev/vfio/vfio\)"):
            Container()

    def test_missing_group_is_an_error_not_unsupported(self):
        """A group that does not exist is a setup error (device not bound), not a capability."""
        with pytest.raises(IoctlError) as info:
            Group(987654)
        assert not isinstance(info.value, Unsupported)
        assert info.value.errno == errno.ENOENT
        assert "/dev/vfio/987654" in str(info.value)
        assert "vfio-pci" in str(info.value)


@pytest.fixture
def devnull_fd():
    fd = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    yield fd
    try:
        os.close(fd)
    except OSError:
        pass


def test_group_of_a_function_without_iommu_group():
    """Group.of() on a PCI function with no IOMMU group says so, naming the sysfs path."""
    candidates = [d for d in pci.devices() if d.iommu_group is None]
    if not candidates:
        pytest.skip("every PCI function here has an IOMMU group")
    with pytest.raises(IoctlError, match="no IOMMU group") as info:
        Group.of(candidates[0].address)
    assert f"{candidates[0].address}/iommu_group" in str(info.value)


class TestWrongFdType:
    """VFIO ioctls on a fd that is not VFIO fail with ENOTTY, named with their arguments."""

    def test_container_ioctls(self):
        with Container("/dev/null") as c:
            with pytest.raises(Unsupported, match=r"^GET_API_VERSION\(\): ENOTTY"):
                c.api_version()
            with pytest.raises(Unsupported, match=r"^CHECK_EXTENSION\(extension=TYPE1v2\): ENOTTY"):
                c.check_extension(_vfio.Extension.TYPE1v2)
            with pytest.raises(Unsupported, match=r"^SET_IOMMU\(type=TYPE1v2\): ENOTTY"):
                c.set_iommu()
            with pytest.raises(Unsupported, match=r"^IOMMU_GET_INFO\(\): ENOTTY"):
                c.iommu_info()
            with pytest.raises(Unsupported,
                               match=r"^IOMMU_UNMAP_DMA\(iova=0x10000000, size=4096\): ENOTTY"):
                c.unmap_dma(0x1000_0000, 0x1000)

    def test_failed_dma_map_leaves_no_buffer(self):
        """A DMA buffer whose MAP_DMA fails is released and not tracked."""
        with Container("/dev/null") as c:
            with pytest.raises(Unsupported, match=r"^IOMMU_MAP_DMA\(iova=0x10000000, size=0x10000, "
                                                  r"flags=READ\|WRITE\): ENOTTY"):
                c.dma_buffer(0x10000, 0x1000_0000)
            assert c._buffers == []

    def test_group_ioctls(self):
        with Group("/dev/null") as g:
            with pytest.raises(Unsupported, match=r"^GROUP_GET_STATUS\(\): ENOTTY"):
                g.status()
            with pytest.raises(Unsupported, match=r"^GROUP_GET_DEVICE_FD\(device=0000:00:03.0\): ENOTTY"):
                g.device("0000:00:03.0")

    def test_device_ioctls(self, devnull_fd):
        d = Device(os.dup(devnull_fd), "0000:00:03.0")
        with d:
            with pytest.raises(Unsupported, match=r"^DEVICE_GET_INFO\(\): ENOTTY"):
                d.info()
            with pytest.raises(Unsupported, match=r"^DEVICE_GET_REGION_INFO\(region=CONFIG\): ENOTTY"):
                d.config_read(0, 2)
            with pytest.raises(Unsupported, match=r"^DEVICE_GET_IRQ_INFO\(irq=MSIX\): ENOTTY"):
                d.irq_info(IrqIndex.MSIX)
            with pytest.raises(Unsupported, match=r"^DEVICE_RESET\(\): ENOTTY"):
                d.reset()
            assert d.supports_feature(Feature.DMA_BUF) is False
            with pytest.raises(Unsupported, match=r"^DEVICE_FEATURE\(feature=PROBE\|GET\|DMA_BUF\): ENOTTY"):
                d.probe_feature(Feature.DMA_BUF)
            with pytest.raises(Unsupported, match=r"^DEVICE_FEATURE\(feature=SET\|BUS_MASTER\): ENOTTY"):
                d.set_feature(Feature.BUS_MASTER, b"\1\0\0\0")

    def test_dma_buf_export_names_region_and_ranges(self, devnull_fd):
        """The export's error message carries the symbolic region and hex ranges."""
        with Device(os.dup(devnull_fd), "0000:00:03.0") as d:
            with pytest.raises(Unsupported) as info:
                d.export_dma_buf(RegionIndex.BAR2, [(0, 0x1000), DmaRange(0x100000, 0x2000)])
        assert str(info.value).startswith(
            "DEVICE_FEATURE(feature=GET|DMA_BUF, region=BAR2, "
            "ranges=[(0x0, 0x1000), (0x100000, 0x2000)]): ENOTTY")
        assert info.value.op == "DEVICE_FEATURE"
        assert info.value.args_["region"] == "BAR2"

    @pytest.mark.parametrize("op, name", [
        (FeatureOp.PROBE | FeatureOp.GET, "PROBE|GET|DMA_BUF"),
        (FeatureOp.SET, "SET|DMA_BUF"),
        (FeatureOp.GET | FeatureOp.SET, "GET|SET|DMA_BUF"),
    ])
    def test_dma_buf_feature_names_its_op(self, devnull_fd, op, name):
        """The typed DMA_BUF feature sends any op and names it, with region, ranges and flags."""
        with Device(os.dup(devnull_fd), "0000:00:03.0") as d:
            with pytest.raises(Unsupported) as info:
                d.dma_buf_feature(RegionIndex.BAR0, [DmaRange(0, 0x1000)], op, flags=1)
        assert str(info.value).startswith(
            f"DEVICE_FEATURE(feature={name}, region=BAR0, ranges=[(0x0, 0x1000)], flags=1): ENOTTY")

    def test_dma_buf_feature_rejects_bad_arguments(self, devnull_fd):
        """An op with a feature id in it, or a range that is not a pair, is refused before the
        kernel sees it."""
        with Device(os.dup(devnull_fd), "0000:00:03.0") as d:
            with pytest.raises(ValueError, match="DMA_BUF op must combine GET, SET and PROBE"):
                d.dma_buf_feature(RegionIndex.BAR2, [(0, 0x1000)], FeatureOp.GET | 3)
            with pytest.raises(TypeError, match=r"DmaRange or \(offset, length\), not 4096"):
                d.dma_buf_feature(RegionIndex.BAR2, [0x1000])

    def test_bad_fd_is_ebadf_not_unsupported(self, devnull_fd):
        """A closed descriptor is EBADF, an ordinary IoctlError."""
        fd = os.dup(devnull_fd)
        os.close(fd)
        with pytest.raises(IoctlError) as info:
            _vfio.device_get_info(fd)
        assert info.value.errno == errno.EBADF and not isinstance(info.value, Unsupported)

    def test_device_specific_region_index_stays_numeric(self, devnull_fd):
        with pytest.raises(Unsupported, match=r"^DEVICE_GET_REGION_INFO\(region=12\)"):
            _vfio.device_get_region_info(devnull_fd, 12)


class TestClosing:
    def test_closed_device_raises_closed_error(self, devnull_fd):
        d = Device(os.dup(devnull_fd), "dev")
        fd = d.fd
        d.close()
        d.close()
        with pytest.raises(ClosedError):
            d.info()
        with pytest.raises(ClosedError):
            d.region_info(RegionIndex.BAR0)
        with pytest.raises(ClosedError):
            d.mmap(RegionIndex.BAR2)
        with pytest.raises(OSError):  # the fd really went away
            os.fstat(fd)

    def test_context_manager_closes_and_refuses_reentry(self):
        with Container("/dev/null") as c:
            fd = c.fd
        assert c.closed
        with pytest.raises(OSError):
            os.fstat(fd)
        with pytest.raises(ClosedError):
            c.__enter__()
        with pytest.raises(ClosedError):
            c.api_version()

    def test_explicit_dma_buffer_close_reports_a_failed_unmap(self):
        """DmaBuffer.close() raises when UNMAP_DMA fails, and still frees its memory."""
        with Container("/dev/null") as c:
            buf = DmaBuffer(c, Mapping.anonymous(4096), 0x1000_0000)
            c._buffers.append(buf)
            with pytest.raises(Unsupported, match=r"^IOMMU_UNMAP_DMA\(iova=0x10000000, size=4096\)"):
                buf.close()
            assert buf.closed and buf.memory.closed and c._buffers == []
            buf.close()

    def test_container_close_releases_its_dma_buffers(self):
        """Closing the container frees every DMA buffer, even if its IOMMU is already gone."""
        c = Container("/dev/null")
        bufs = [DmaBuffer(c, Mapping.anonymous(4096), iova) for iova in (0x1000, 0x2000)]
        c._buffers.extend(bufs)
        c.close()
        assert c.closed and all(b.closed for b in bufs)
        with pytest.raises(ClosedError):
            bufs[0].__enter__()

    def test_group_close_closes_its_devices(self, devnull_fd):
        g = Group("/dev/null")
        d = Device(os.dup(devnull_fd), "dev")
        g._devices.append(d)
        g.close()
        assert d.closed and g.closed


class TestMapping:
    def test_typed_accesses_are_little_endian_and_sized(self):
        with Mapping.anonymous(4096) as m:
            m.write64(8, 0x1122334455667788)
            assert m.read8(8) == 0x88
            assert m.read16(8) == 0x7788
            assert m.read32(12) == 0x11223344
            m.write16(10, 0xABCD)
            assert m.read64(8) == 0x11223344ABCD7788
            m.write8(15, 0xFF)
            assert m.read32(12) == 0xFF223344

    def test_bulk_read_write_and_buffer_protocol(self):
        with Mapping.anonymous(8192) as m:
            m.write(b"gpuhil", 100)
            assert m.read(100, 6) == b"gpuhil"
            view = memoryview(m)
            assert len(view) == 8192 and view[100:106].tobytes() == b"gpuhil"
            view[0:4] = b"\1\2\3\4"
            assert m.read32(0) == 0x04030201
            view.release()

    def test_out_of_bounds_and_misaligned_accesses_are_refused(self):
        with Mapping.anonymous(4096) as m:
            with pytest.raises(IndexError):
                m.read32(4094)
            with pytest.raises(IndexError):
                m.write(b"0123456789", 4090)
            with pytest.raises(IndexError):
                m.read(4096, 1)
            with pytest.raises(ValueError, match="aligned"):
                m.read32(2)
            with pytest.raises(ValueError, match="aligned"):
                m.write64(4, 0)

    def test_closed_mapping_raises(self):
        m = Mapping.anonymous(4096)
        m.close()
        m.close()
        assert m.closed
        with pytest.raises(ClosedError):
            m.read8(0)
        with pytest.raises(ClosedError):
            memoryview(m)
        with pytest.raises(ClosedError):
            _ = m.address

    def test_shared_fd_mapping_sees_file_writes(self):
        """map() maps a file MAP_SHARED: pwrite on the fd shows through typed loads."""
        fd = os.memfd_create("gpuhil-test")
        try:
            os.ftruncate(fd, 8192)
            os.pwrite(fd, struct.pack("<I", 0xCAFEF00D), 4096 + 16)
            with Mapping.map(fd, 4096, 4096, True, label="memfd") as m:
                assert m.read32(16) == 0xCAFEF00D
                m.write32(20, 0x12345678)
            assert os.pread(fd, 4, 4096 + 20) == struct.pack("<I", 0x12345678)
        finally:
            os.close(fd)

    def test_read_only_mapping_refuses_stores(self):
        """A mapping made without PROT_WRITE rejects stores and writable buffer exports."""
        fd = os.memfd_create("gpuhil-test")
        try:
            os.ftruncate(fd, 4096)
            os.pwrite(fd, b"\x2a", 0)
            with Mapping.map(fd, 4096, 0, False, label="ro") as m:
                assert not m.writable and m.read8(0) == 0x2A
                with pytest.raises(TypeError, match="read-only"):
                    m.write32(0, 1)
                with pytest.raises(TypeError, match="read-only"):
                    m.write(b"x", 0)
                view = memoryview(m)
                assert view.readonly
                view.release()
        finally:
            os.close(fd)

    def test_mmap_failure_names_the_region(self, devnull_fd):
        with pytest.raises(IoctlError, match=r"^MMAP\(region=BAR2, fd=\d+, length=4096, offset=0x20000000000\)"):
            Mapping.map(devnull_fd, 4096, 0x20000000000, True, "MMAP", {"region": "BAR2"}, "BAR2")

    def test_cannot_be_constructed_directly(self):
        with pytest.raises(TypeError):
            Mapping()
