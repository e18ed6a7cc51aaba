"""udmabuf + dma-buf against the lab guest's /dev/udmabuf (built into the Debian kernel).

``*_payload`` functions run in the guest via ``gl_guest.call``; expectations from LAB.md §5 and
drivers/dma-buf/udmabuf.c (SHRINK seal required, WRITE seal refused, page alignment).
"""
from __future__ import annotations

import errno
import os

import pytest

from gpuhil.errors import IoctlError
from gpuhil.devices.memfd import Memfd, Seal
from gpuhil.devices.udmabuf import Udmabuf, UdmabufRange, limits

pytestmark = pytest.mark.lab

PAGE = 4096
MIB = 1 << 20


# ---- payloads (run in the guest) ---------------------------------------------------------------


def raw_ioctl_payload() -> dict:
    """The escape hatch on /dev/udmabuf: UDMABUF_CREATE by number with a hand-built struct gives
    a dma-buf fd of the memfd's size; an unaligned size and an unknown request are refused by number;
    DMA_BUF_IOCTL_SYNC by number works on the dma-buf."""
    import struct

    from gpuhil import _dmabuf
    from gpuhil.devices.dmabuf import DmaBuf

    create = _dmabuf.ABI["UDMABUF_CREATE"]
    out: dict = {}
    with Memfd.create("gpuhil-udmabuf-raw", MIB) as memfd, Udmabuf() as dev:
        memfd.add_seals(Seal.SHRINK)
        fd = dev.ioctl(create, bytearray(struct.pack("<IIQQ", memfd.fd, _dmabuf.UDMABUF_CLOEXEC, 0, MIB)))
        with DmaBuf(fd) as buf:
            out["size"] = buf.size
            out["sync"] = buf.ioctl(_dmabuf.ABI["DMA_BUF_IOCTL_SYNC"],
                                    struct.pack("<Q", _dmabuf.ABI["DMA_BUF_SYNC_RW"]))
        for label, request, arg in (("unaligned", create, struct.pack("<IIQQ", memfd.fd, 0, 0, MIB - 1)),
                                    ("unknown", 0x7F75, 0)):
            try:
                dev.ioctl(request, arg)
                out[label] = "ok"
            except IoctlError as exc:
                out[label] = (type(exc).__name__, str(exc))
    return out


def limits_payload():
    return limits()


def create_payload(size: int = 4 * MIB) -> dict:
    """Create from a SHRINK-sealed memfd; check size, fdinfo and coherency both ways."""
    out: dict = {}
    with Memfd.create("gpuhil-udmabuf", size) as memfd, Udmabuf() as dev:
        memfd.add_seals(Seal.SHRINK)
        with dev.create(memfd) as buf, memfd.mmap() as mm, buf.mmap() as dm:
            out["size"] = buf.size
            out["fdinfo"] = buf.fdinfo()
            mm.write(b"from-memfd", 0)
            with buf.cpu_access(read=True, write=False):
                out["dmabuf_sees_memfd"] = dm.read(0, 10) == b"from-memfd"
            with buf.cpu_access(read=False, write=True):
                dm.write(b"from-dmabuf", size - 11)
            out["memfd_sees_dmabuf"] = memfd.read_at(size - 11, 11) == b"from-dmabuf"
            with buf.export_sync_file(read=True, write=True) as fence:
                out["idle_fence"] = fence.wait(0)
    return out


def create_error_payload(size: int = MIB, seals: int = Seal.SHRINK, offset: int = 0,
                         length: int | None = None, memfd_size: int | None = None) -> None:
    with Memfd.create("gpuhil-udmabuf-bad", memfd_size or size) as memfd, Udmabuf() as dev:
        if seals:
            memfd.add_seals(seals)
        dev.create(memfd, offset, size if length is None else length).close()


def not_memfd_payload() -> None:
    """A pipe is not shmem: udmabuf refuses it with EBADFD."""
    r, w = os.pipe()
    try:
        with Udmabuf() as dev:
            dev.create(r, 0, PAGE).close()
    finally:
        os.close(r)
        os.close(w)


def create_list_payload() -> dict:
    """Two memfds, one page each, concatenated in list order."""
    with Memfd.create("a", PAGE) as a, Memfd.create("b", 2 * PAGE) as b, Udmabuf() as dev:
        for memfd in (a, b):
            memfd.add_seals(Seal.SHRINK)
        a.write_at(0, b"first")
        b.write_at(PAGE, b"second")
        with dev.create_list([UdmabufRange(a, 0, PAGE), (b, PAGE, PAGE)]) as buf, buf.mmap() as m:
            return {"size": buf.size, "first": m.read(0, 5), "second": m.read(PAGE, 6)}


def create_list_over_limit_payload(count: int) -> None:
    with Memfd.create("many", count * PAGE) as memfd, Udmabuf() as dev:
        memfd.add_seals(Seal.SHRINK)
        dev.create_list([(memfd, i * PAGE, PAGE) for i in range(count)]).close()


def fd_count_payload(cycles: int = 100) -> tuple[int, int]:
    before = len(os.listdir("/proc/self/fd"))
    with Udmabuf() as dev:
        for _ in range(cycles):
            with Memfd.create("cycle", MIB) as memfd:
                memfd.add_seals(Seal.SHRINK)
                with dev.create(memfd) as buf, buf.mmap() as m:
                    m.write(b"touch", 0)
    return before, len(os.listdir("/proc/self/fd"))


# ---- tests -------------------------------------------------------------------------------------


def test_module_limits_are_readable(gl_guest):
    lim = gl_guest.call(limits_payload)
    assert lim.size_limit_mb == 64
    assert lim.list_limit is not None and lim.list_limit > 0


def test_create_gives_a_coherent_dmabuf(gl_guest):
    out = gl_guest.call(create_payload)
    assert out["size"] == 4 * MIB
    assert out["fdinfo"].exp_name == "udmabuf" and out["fdinfo"].size == 4 * MIB
    assert out["dmabuf_sees_memfd"] and out["memfd_sees_dmabuf"]
    assert out["idle_fence"]


@pytest.mark.parametrize("kwargs", [
    dict(seals=0),                                  # SHRINK seal missing
    dict(seals=Seal.SHRINK | Seal.WRITE),           # WRITE seal forbidden
    dict(offset=100),                               # offset not page aligned
    dict(length=PAGE + 1),                          # size not page aligned
    dict(length=0),                                 # empty
    dict(size=65 * MIB),                            # above size_limit_mb (64)
], ids=["no-shrink-seal", "write-seal", "unaligned-offset", "unaligned-size", "empty",
        "over-size-limit"])
def test_invalid_create_is_einval_naming_the_call(gl_guest, kwargs):
    with pytest.raises(IoctlError) as exc:
        gl_guest.call(create_error_payload, **kwargs)
    assert exc.value.errno == errno.EINVAL
    assert exc.value.op == "UDMABUF_CREATE"


def test_create_from_a_non_memfd_is_ebadfd(gl_guest):
    with pytest.raises(IoctlError) as exc:
        gl_guest.call(not_memfd_payload)
    assert exc.value.errno == errno.EBADFD and exc.value.op == "UDMABUF_CREATE"


def test_create_list_concatenates_ranges(gl_guest):
    out = gl_guest.call(create_list_payload)
    assert out == {"size": 2 * PAGE, "first": b"first", "second": b"second"}


def test_create_list_above_list_limit_is_einval(gl_guest):
    lim = gl_guest.call(limits_payload)
    with pytest.raises(IoctlError) as exc:
        gl_guest.call(create_list_over_limit_payload, lim.list_limit + 1)
    assert exc.value.errno == errno.EINVAL and exc.value.op == "UDMABUF_CREATE_LIST"


def test_create_mmap_close_cycles_leak_no_fds(gl_guest):
    before, after = gl_guest.call(fd_count_payload)
    assert after == before


def test_raw_ioctl_escape_hatch(gl_guest):
    """udmabuf's ioctl(): a hand-built UDMABUF_CREATE makes a 1 MiB dma-buf (which takes a raw
    SYNC too); an unaligned size is EINVAL and an unknown request ENOTTY, each naming the number."""
    r = gl_guest.call(raw_ioctl_payload)
    assert r["size"] == MIB
    assert r["sync"] == (3).to_bytes(8, "little")  # the struct after the call: flags READ|WRITE
    kind, text = r["unaligned"]
    assert kind == "IoctlError" and text.startswith("IOCTL(request=0x40187542, size=24): EINVAL")
    kind, text = r["unknown"]
    assert kind == "Unsupported" and text.startswith("IOCTL(request=0x7f75, arg=0x0): ENOTTY")
