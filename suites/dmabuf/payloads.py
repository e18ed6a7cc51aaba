"""Guest payloads of the dmabuf suite: udmabuf creation, seals, limits, coherency, sync files.

Each function runs in the guest (stdlib + gpuhil only), does a whole batch of kernel calls and
returns plain data: an outcome per case, ``"ok"`` or the errno name (``"EINVAL"``), so one
``guest.call`` covers a table of cases.
"""
from __future__ import annotations

import errno
import fcntl
import os
import select

from gpuhil import _dmabuf
from gpuhil.devices.dmabuf import DmaBuf, SyncFile, SyncFlag
from gpuhil.errors import Unsupported
from gpuhil.devices.memfd import Memfd, Seal
from gpuhil.devices.udmabuf import Udmabuf, UdmabufRange
from gpuhil.devices.virtgpu import Capset, RenderNode
from gpuhil.attempts import attempt_sized

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1 << 20
#: SYNC flag bits the uapi defines (READ | WRITE | END); anything else is invalid.
SYNC_VALID = int(SyncFlag.READ | SyncFlag.WRITE | SyncFlag.END)






def _sealed(name: str, size: int, seals: int = Seal.SHRINK) -> Memfd:
    memfd = Memfd.create(name, size)
    if seals:
        memfd.add_seals(seals)
    return memfd


# ---- UDMABUF_CREATE ---------------------------------------------------------------------------

def seal_outcomes() -> dict[str, str]:
    """UDMABUF_CREATE of one page under each seal combination (and an unsealable memfd)."""
    cases = {
        "none": 0,
        "SHRINK": Seal.SHRINK,
        "SHRINK|GROW": Seal.SHRINK | Seal.GROW,
        "SHRINK|SEAL": Seal.SHRINK | Seal.SEAL,
        "SHRINK|WRITE": Seal.SHRINK | Seal.WRITE,
        "SHRINK|FUTURE_WRITE": Seal.SHRINK | Seal.FUTURE_WRITE,
        "WRITE": Seal.WRITE,
        "GROW": Seal.GROW,
    }
    out: dict[str, str] = {}
    with Udmabuf() as dev:
        for label, seals in cases.items():
            with _sealed(f"seal-{label}", PAGE, seals) as memfd:
                out[label] = attempt_sized(lambda: dev.create(memfd, 0, PAGE))
        with Memfd.create("unsealable", PAGE, allow_sealing=False) as memfd:
            out["no-ALLOW_SEALING"] = attempt_sized(lambda: dev.create(memfd, 0, PAGE))
    return out


def seal_effects() -> dict[str, str]:
    """What the seals udmabuf wants do to the memfd while a dma-buf holds its pages."""
    out: dict[str, str] = {}
    with _sealed("effects", 2 * PAGE) as memfd, Udmabuf() as dev, dev.create(memfd) as buf:
        out["shrink"] = attempt_sized(lambda: memfd.resize(PAGE))
        out["grow"] = attempt_sized(lambda: memfd.resize(4 * PAGE))
        out["memfd_size"] = str(memfd.size)
        out["dmabuf_size"] = str(buf.size)
        with memfd.mmap(PAGE) as mapping:  # a writable shared mapping of the memfd
            out["add_WRITE_while_mapped"] = attempt_sized(lambda: memfd.add_seals(Seal.WRITE))
        # With no writable mapping left, WRITE can be added: the existing dma-buf stays usable.
        out["add_WRITE_after"] = attempt_sized(lambda: memfd.add_seals(Seal.WRITE))
        with buf.mmap() as mapping, buf.cpu_access(read=False, write=True):
            mapping.write(b"still-writable", 0)
        out["dmabuf_write_after_WRITE_seal"] = memfd.read_at(0, 14).decode()
        out["pwrite_after_WRITE_seal"] = attempt_sized(lambda: memfd.write_at(0, b"x"))
        out["new_create_after_WRITE_seal"] = attempt_sized(lambda: dev.create(memfd, 0, PAGE))
    return out


def create_outcomes(size_limit_mb: int) -> dict[str, str]:
    """UDMABUF_CREATE with aligned, unaligned, empty, out-of-file and size-limit ranges and flags."""
    limit = size_limit_mb * MIB
    out: dict[str, str] = {}
    with Udmabuf() as dev:
        with _sealed("small", 4 * PAGE) as memfd:
            raw = memfd.fd
            out["whole"] = attempt_sized(lambda: dev.create(memfd))
            out["offset-page"] = attempt_sized(lambda: dev.create(memfd, PAGE, 2 * PAGE))
            out["offset-unaligned"] = attempt_sized(lambda: dev.create(memfd, 100, PAGE))
            out["offset-half-page"] = attempt_sized(lambda: dev.create(memfd, PAGE // 2, PAGE))
            out["size-unaligned"] = attempt_sized(lambda: dev.create(memfd, 0, PAGE + 1))
            out["size-short"] = attempt_sized(lambda: dev.create(memfd, 0, PAGE - 1))
            out["size-zero"] = attempt_sized(lambda: dev.create(memfd, 0, 0))
            out["past-the-end"] = attempt_sized(lambda: dev.create(memfd, 2 * PAGE, 4 * PAGE))
            out["offset-at-end"] = attempt_sized(lambda: dev.create(memfd, 4 * PAGE, PAGE))
            out["flags-zero"] = attempt_sized(
                lambda: DmaBuf(_dmabuf.create_udmabuf(dev.fd, raw, 0, PAGE, 0)))
        with _sealed("limit", limit + PAGE) as memfd:
            out["at-limit"] = attempt_sized(lambda: dev.create(memfd, 0, limit))
            out["limit-plus-page"] = attempt_sized(lambda: dev.create(memfd, 0, limit + PAGE))
        r, w = os.pipe()
        try:
            out["pipe"] = attempt_sized(lambda: dev.create(r, 0, PAGE))
        finally:
            os.close(r)
            os.close(w)
        out["closed-fd"] = attempt_sized(lambda: dev.create(_closed_fd(), 0, PAGE))
    return out


def unknown_flag_outcomes() -> dict[str, str]:
    """UDMABUF_CREATE and _CREATE_LIST with flag bits the uapi does not define."""
    with _sealed("flags", PAGE) as memfd, Udmabuf() as dev:
        raw = memfd.fd
        return {
            "create:0x2": attempt_sized(lambda: DmaBuf(_dmabuf.create_udmabuf(dev.fd, raw, 0, PAGE, 0x2))),
            "create:0x80000000": attempt_sized(
                lambda: DmaBuf(_dmabuf.create_udmabuf(dev.fd, raw, 0, PAGE, 0x8000_0000))),
            "list:0x2": attempt_sized(
                lambda: DmaBuf(_dmabuf.create_udmabuf_list(dev.fd, [(raw, 0, PAGE)], 0x2))),
        }


def _closed_fd() -> int:
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd


def cloexec_flags() -> dict[str, bool]:
    """FD_CLOEXEC of the returned fd follows UDMABUF_FLAGS_CLOEXEC."""
    with _sealed("cloexec", PAGE) as memfd, Udmabuf() as dev:
        with dev.create(memfd, cloexec=True) as a, dev.create(memfd, cloexec=False) as b:
            return {"with": bool(fcntl.fcntl(a.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
                    "without": bool(fcntl.fcntl(b.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)}


# ---- UDMABUF_CREATE_LIST ----------------------------------------------------------------------

def list_layout() -> dict:
    """Three ranges from two memfds (one range repeated) concatenate in list order, sharing pages."""
    with _sealed("a", 2 * PAGE) as a, _sealed("b", 3 * PAGE) as b, Udmabuf() as dev:
        a.write_at(PAGE, b"a-page-1")
        b.write_at(2 * PAGE, b"b-page-2")
        ranges = [UdmabufRange(a, PAGE, PAGE), UdmabufRange(b, 2 * PAGE, PAGE),
                  UdmabufRange(a, PAGE, PAGE)]
        with dev.create_list(ranges) as buf, buf.mmap() as m:
            seen = [m.read(i * PAGE, 8) for i in range(3)]
            with buf.cpu_access(read=False, write=True):
                m.write(b"via-list", 2 * PAGE)  # the third range is a's page 1 again
            return {"size": buf.size, "fdinfo_size": buf.fdinfo().size, "pages": seen,
                    "a_page_1_now": a.read_at(PAGE, 8), "first_range_now": m.read(0, 8)}


def list_outcomes(size_limit_mb: int, list_limit: int) -> dict[str, str]:
    """UDMABUF_CREATE_LIST at and past list_limit, empty, with one bad item, over the size limit."""
    out: dict[str, str] = {}
    with Udmabuf() as dev, _sealed("many", list_limit * PAGE) as many:
        pages = [(many, i * PAGE, PAGE) for i in range(list_limit)]
        out["at-list-limit"] = attempt_sized(lambda: dev.create_list(pages))
        out["list-limit-plus-one"] = attempt_sized(lambda: dev.create_list(pages + [(many, 0, PAGE)]))
        out["empty"] = attempt_sized(lambda: dev.create_list([]))
        with _sealed("unsealed", PAGE, 0) as unsealed, _sealed("wsealed", PAGE,
                                                               Seal.SHRINK | Seal.WRITE) as wsealed:
            good = (many, 0, PAGE)
            out["second-unaligned"] = attempt_sized(lambda: dev.create_list([good, (many, 10, PAGE)]))
            out["second-zero-size"] = attempt_sized(lambda: dev.create_list([good, (many, PAGE, 0)]))
            out["second-unsealed"] = attempt_sized(lambda: dev.create_list([good, (unsealed, 0, PAGE)]))
            out["second-write-sealed"] = attempt_sized(
                lambda: dev.create_list([good, (wsealed, 0, PAGE)]))
            r, w = os.pipe()
            try:
                out["second-pipe"] = attempt_sized(lambda: dev.create_list([good, (r, 0, PAGE)]))
            finally:
                os.close(r)
                os.close(w)
        half = size_limit_mb * MIB // 2
        with _sealed("halves", half + PAGE) as halves:
            out["sum-at-limit"] = attempt_sized(
                lambda: dev.create_list([(halves, 0, half), (halves, 0, half)]))
            out["sum-over-limit"] = attempt_sized(
                lambda: dev.create_list([(halves, 0, half), (halves, 0, half + PAGE)]))
    return out


# ---- coherency --------------------------------------------------------------------------------

def coherency(pages: int = 16) -> dict:
    """memfd and dma-buf mappings of the same pages agree both ways, inside SYNC brackets, page by
    page, and through pwrite/pread; a dma-buf made at an offset sees the matching part."""
    size = pages * PAGE
    out: dict = {}
    with _sealed("coherent", size) as memfd, Udmabuf() as dev, dev.create(memfd) as buf, \
            memfd.mmap() as mm, buf.mmap() as dm:
        for i in range(pages):
            mm.write64(i * PAGE, 0x1111_0000_0000_0000 | i)
        with buf.cpu_access(read=True, write=False):
            out["dmabuf_reads_memfd_stores"] = all(
                dm.read64(i * PAGE) == 0x1111_0000_0000_0000 | i for i in range(pages))
        with buf.cpu_access(read=False, write=True):
            for i in range(pages):
                dm.write32(i * PAGE + PAGE - 4, 0xD0D0_0000 | i)
        out["memfd_reads_dmabuf_stores"] = all(
            mm.read32(i * PAGE + PAGE - 4) == 0xD0D0_0000 | i for i in range(pages))
        memfd.write_at(5 * PAGE + 8, b"pwrite")
        with buf.cpu_access(read=True, write=True):
            out["dmabuf_sees_pwrite"] = dm.read(5 * PAGE + 8, 6)
            dm.write(b"dmabuf-store", 7 * PAGE + 100)
        out["pread_sees_dmabuf"] = memfd.read_at(7 * PAGE + 100, 12)
        with dev.create(memfd, 3 * PAGE, 2 * PAGE) as part, part.mmap() as pm:
            with part.cpu_access(read=True, write=False):
                out["offset_view"] = pm.read64(0) == 0x1111_0000_0000_0000 | 3
        with buf.mmap(PAGE, 9 * PAGE) as window:  # a mapping at a page offset of the dma-buf
            with buf.cpu_access():
                out["window"] = window.read64(0) == 0x1111_0000_0000_0000 | 9
    return out


def mmap_outcomes() -> dict[str, str]:
    """dma-buf mmap ranges: whole, a window, past the end, read-only; and read(2) on the fd."""
    with _sealed("mmap", 4 * PAGE) as memfd, Udmabuf() as dev, dev.create(memfd) as buf:
        out = {
            "whole": attempt_sized(lambda: buf.mmap().close()),
            "last-page": attempt_sized(lambda: buf.mmap(PAGE, 3 * PAGE).close()),
            "longer-than-buffer": attempt_sized(lambda: buf.mmap(5 * PAGE).close()),
            "offset-past-end": attempt_sized(lambda: buf.mmap(PAGE, 4 * PAGE).close()),
            "read-only": attempt_sized(lambda: buf.mmap(writable=False).close()),
        }
        try:
            os.read(buf.fd, 16)
            out["read(2)"] = "ok"
        except OSError as exc:
            out["read(2)"] = errno.errorcode[exc.errno]
    return out


def lifetime() -> dict:
    """The dma-buf keeps the pages: data outlives the memfd fd, and a mapping outlives both fds."""
    with Udmabuf() as dev:
        memfd = _sealed("lifetime", 2 * PAGE)
        memfd.write_at(PAGE, b"kept-by-dmabuf")
        buf = dev.create(memfd)
        memfd.close()
        mapping = buf.mmap()
        with buf.cpu_access(read=True, write=False):
            after_memfd_close = mapping.read(PAGE, 14)
        buf.close()
        after_dmabuf_close = mapping.read(PAGE, 14)
        mapping.write(b"still-mapped", 0)
        readback = mapping.read(0, 12)
        mapping.close()
    return {"after_memfd_close": after_memfd_close, "after_dmabuf_close": after_dmabuf_close,
            "write_after_close": readback}


def sync_ioctl_outcomes() -> dict[str, str]:
    """DMA_BUF_IOCTL_SYNC with each flag combination, on a fresh udmabuf and after a START."""
    combos = {
        "START|READ": SyncFlag.READ, "START|WRITE": SyncFlag.WRITE,
        "START|RW": SyncFlag.READ | SyncFlag.WRITE, "END|READ": SyncFlag.END | SyncFlag.READ,
        "END|WRITE": SyncFlag.END | SyncFlag.WRITE,
        "END|RW": SyncFlag.END | SyncFlag.READ | SyncFlag.WRITE,
        "START": 0, "END": SyncFlag.END, "unknown-bit": SyncFlag.READ | 0x8,
        "high-bit": SyncFlag.READ | (1 << 40),
    }
    out: dict[str, str] = {}
    with _sealed("sync", PAGE) as memfd, Udmabuf() as dev:
        with dev.create(memfd) as fresh:
            out["fresh:END|RW"] = attempt_sized(lambda: fresh.sync(SyncFlag.END | SyncFlag.READ | SyncFlag.WRITE))
        with dev.create(memfd) as buf:
            buf.sync(SyncFlag.READ | SyncFlag.WRITE)
            for label, flags in combos.items():
                out[label] = attempt_sized(lambda: buf.sync(int(flags)))
    return out


# ---- sync files -------------------------------------------------------------------------------

def sync_file_outcomes() -> dict:
    """EXPORT/IMPORT_SYNC_FILE on an idle udmabuf: fences are signalled, flags are checked, a
    fence exported from one buffer imports into another, and the dma-buf fd polls ready."""
    out: dict = {}
    with _sealed("fences", PAGE) as memfd, Udmabuf() as dev, dev.create(memfd) as a, \
            dev.create(memfd) as b:
        try:
            fence = a.export_sync_file(read=True, write=False)
        except Unsupported as exc:
            return {"unsupported": str(exc)}
        with fence:
            out["export_read_signaled"] = fence.signaled
            out["import_write"] = attempt_sized(lambda: b.import_sync_file(fence, write=True))
            out["import_read"] = attempt_sized(lambda: b.import_sync_file(fence, write=False))
            out["import_no_flags"] = attempt_sized(lambda: _dmabuf.import_sync_file(b.fd, 0, fence.fd))
            out["import_unknown_flag"] = attempt_sized(
                lambda: _dmabuf.import_sync_file(b.fd, int(SyncFlag.WRITE) | 0x4, fence.fd))
        out["import_memfd_as_fence"] = attempt_sized(
            lambda: _dmabuf.import_sync_file(b.fd, int(SyncFlag.WRITE), memfd.fd))
        out["import_closed_fd"] = attempt_sized(
            lambda: _dmabuf.import_sync_file(b.fd, int(SyncFlag.WRITE), _closed_fd()))
        with b.export_sync_file(read=True, write=True) as after_import:
            out["export_rw_after_import_signaled"] = after_import.signaled
        out["export_no_flags"] = attempt_sized(lambda: SyncFile(_dmabuf.export_sync_file(a.fd, 0)).close())
        out["export_unknown_flag"] = attempt_sized(
            lambda: SyncFile(_dmabuf.export_sync_file(a.fd, int(SyncFlag.READ) | 0x4)).close())
        out["export_on_memfd"] = attempt_sized(
            lambda: SyncFile(_dmabuf.export_sync_file(memfd.fd, int(SyncFlag.READ))).close())
        poller = select.poll()
        poller.register(a.fd, select.POLLIN | select.POLLOUT)
        events = dict(poller.poll(0)).get(a.fd, 0)
        out["poll_in"] = bool(events & select.POLLIN)
        out["poll_out"] = bool(events & select.POLLOUT)
    return out


def gpu_fence_through_udmabuf(path: str) -> dict:
    """A virtio-gpu out-fence imported into a udmabuf becomes its write fence: a READ sync file
    exported from the udmabuf signals once the GPU fence does, the dma-buf polls readable, and the
    exported fence works as the in-fence of a further submission (GPU -> dma-buf -> GPU)."""
    nop = (0).to_bytes(4, "little")  # a virgl command buffer header with no commands
    out: dict = {}
    with RenderNode(path) as node, _sealed("gpu-fenced", PAGE) as memfd, Udmabuf() as dev, \
            dev.create(memfd) as buf:
        node.context_init(capset_id=Capset.VIRGL2)
        with node.execbuffer(nop, fence_out=True) as gpu_fence:
            buf.import_sync_file(gpu_fence, write=True)
            with buf.export_sync_file(read=True, write=False) as exported:
                out["exported_signaled"] = exported.wait(10)
                out["gpu_fence_signaled"] = gpu_fence.signaled
                poller = select.poll()
                poller.register(buf.fd, select.POLLIN)
                out["dmabuf_readable"] = bool(poller.poll(10_000))
                with node.execbuffer(nop, fence_in=exported, fence_out=True) as chained:
                    out["chained_signaled"] = chained.wait(10)
                buf.import_sync_file(exported, write=False)
        with buf.export_sync_file(read=True, write=True) as everything:
            out["all_fences_signaled"] = everything.wait(10)
    return out


def fd_and_memory_balance(cycles: int = 30) -> dict[str, int]:
    """Create, list-create, map, sync, export a fence, close: fds and Shmem come back (bounded)."""
    def shmem_kib() -> int:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("Shmem:"):
                    return int(line.split()[1])
        return -1

    # Shmem is guest-wide: an earlier test's buffers may still be freed meanwhile, so the pages
    # written through the udmabuf are counted in the memfd itself (its blocks), and their return
    # is measured across the close alone.
    fds_before, shmem_before = len(os.listdir("/proc/self/fd")), shmem_kib()
    with Udmabuf() as dev:
        with _sealed("held", 8 * MIB) as held, dev.create(held) as buf:
            with buf.mmap() as m:
                for i in range(0, 8 * MIB, PAGE):
                    m.write8(i, 1)  # populate every page through the udmabuf mapping
            held_file_kib = os.fstat(held.fd).st_blocks // 2
            shmem_held = shmem_kib()
        shmem_released = shmem_kib()
        for _ in range(cycles):
            with _sealed("cycle", MIB) as memfd:
                with dev.create(memfd) as buf, buf.mmap() as m, \
                        dev.create_list([(memfd, 0, PAGE), (memfd, PAGE, PAGE)]) as listed:
                    with buf.cpu_access():
                        m.write(b"touch", 0)
                    with listed.export_sync_file():
                        pass
    return {"fds_before": fds_before, "fds_after": len(os.listdir("/proc/self/fd")),
            "held_file_kib": held_file_kib, "shmem_before_kib": shmem_before,
            "shmem_held_kib": shmem_held, "shmem_released_kib": shmem_released,
            "shmem_after_kib": shmem_kib()}
