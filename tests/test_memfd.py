"""memfd + seals and the Mapping object, against the host kernel."""
import errno
import os

import pytest

from gpuhil.errors import ClosedError, IoctlError
from gpuhil.devices.memfd import Memfd, Seal

PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture
def memfd():
    with Memfd.create("gpuhil-test", 4 * PAGE) as m:
        yield m


def test_create_sets_size_and_no_seals(memfd):
    assert memfd.size == 4 * PAGE
    assert memfd.seals == Seal(0)


def test_without_allow_sealing_the_file_is_sealed_against_seals():
    with Memfd.create("nosealing", PAGE, allow_sealing=False) as m:
        assert m.seals == Seal.SEAL
        with pytest.raises(IoctlError) as exc:
            m.add_seals(Seal.SHRINK)
    assert exc.value.errno == errno.EPERM
    assert exc.value.op == "F_ADD_SEALS"
    assert "seals=SHRINK" in str(exc.value)


def test_cloexec_flag_is_applied():
    import fcntl

    with Memfd.create("cloexec", cloexec=True) as m:
        assert fcntl.fcntl(m.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    with Memfd.create("inherit", cloexec=False) as m:
        assert not fcntl.fcntl(m.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_seals_accumulate(memfd):
    memfd.add_seals(Seal.SHRINK)
    memfd.add_seals(Seal.GROW)
    assert memfd.seals == Seal.SHRINK | Seal.GROW


def test_shrink_seal_forbids_shrinking_but_not_growing(memfd):
    memfd.add_seals(Seal.SHRINK)
    with pytest.raises(IoctlError) as exc:
        memfd.resize(PAGE)
    assert exc.value.errno == errno.EPERM and exc.value.op == "ftruncate"
    memfd.resize(8 * PAGE)
    assert memfd.size == 8 * PAGE


def test_grow_seal_forbids_growing_but_not_shrinking(memfd):
    memfd.add_seals(Seal.GROW)
    with pytest.raises(IoctlError) as exc:
        memfd.resize(8 * PAGE)
    assert exc.value.errno == errno.EPERM
    memfd.resize(PAGE)
    assert memfd.size == PAGE


def test_write_seal_is_refused_while_a_writable_mapping_exists(memfd):
    mapping = memfd.mmap()
    with pytest.raises(IoctlError) as exc:
        memfd.add_seals(Seal.WRITE)
    assert exc.value.errno == errno.EBUSY
    mapping.close()
    memfd.add_seals(Seal.WRITE)
    assert Seal.WRITE in memfd.seals


def test_write_seal_forbids_writes_and_writable_maps(memfd):
    memfd.write_at(0, b"before")
    memfd.add_seals(Seal.WRITE)
    with pytest.raises(IoctlError) as exc:
        memfd.write_at(0, b"after")
    assert exc.value.errno == errno.EPERM and exc.value.op == "pwrite"
    with pytest.raises(IoctlError) as exc:
        memfd.mmap(writable=True)
    assert exc.value.errno == errno.EPERM and exc.value.op == "mmap"
    with memfd.mmap(writable=False) as ro:
        assert ro.read(0, 6) == b"before"


def test_future_write_keeps_existing_mapping_writable(memfd):
    with memfd.mmap() as live:
        memfd.add_seals(Seal.FUTURE_WRITE)
        live.write(b"still", 0)
        assert memfd.read_at(0, 5) == b"still"
        with pytest.raises(IoctlError) as exc:
            memfd.mmap(writable=True)
        assert exc.value.errno == errno.EPERM


def test_seal_seal_freezes_the_seal_set(memfd):
    memfd.add_seals(Seal.SHRINK | Seal.SEAL)
    with pytest.raises(IoctlError) as exc:
        memfd.add_seals(Seal.GROW)
    assert exc.value.errno == errno.EPERM
    assert memfd.seals == Seal.SHRINK | Seal.SEAL


def test_mapping_is_coherent_with_file_io(memfd):
    with memfd.mmap() as mapping:
        view = memoryview(mapping)
        view[PAGE:PAGE + 4] = b"abcd"
        assert memfd.read_at(PAGE, 4) == b"abcd"
        memfd.write_at(2 * PAGE, b"wxyz")
        assert bytes(view[2 * PAGE:2 * PAGE + 4]) == b"wxyz"
        assert mapping.read(2 * PAGE, 4) == b"wxyz"
        view.release()


def _memfd_mapped_at(address: int) -> bool:
    """Whether /proc/self/maps has a memfd mapping covering ``address``."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, _, end = fields[0].partition("-")
            if int(start, 16) <= address < int(end, 16):
                return len(fields) == 6 and fields[5].startswith("/memfd:")
    return False


def test_mapping_closed_while_a_view_lives_stays_readable_then_unmaps(memfd):
    mapping = memfd.mmap()
    address = mapping.address
    mapping.write(b"live", 0)
    view = memoryview(mapping)
    mapping.close()
    assert mapping.closed
    assert bytes(view[:4]) == b"live"
    assert _memfd_mapped_at(address)
    with pytest.raises(ClosedError):
        memoryview(mapping)
    with pytest.raises(ClosedError):
        _ = mapping.address
    view.release()
    assert not _memfd_mapped_at(address)


def test_mapping_read_only_refuses_writes(memfd):
    with memfd.mmap(writable=False) as ro:
        view = memoryview(ro)
        assert view.readonly
        view.release()
        with pytest.raises(TypeError, match="read-only"):
            ro.write(b"x", 0)


def test_mapping_range_is_checked(memfd):
    with memfd.mmap() as mapping:
        assert len(mapping) == 4 * PAGE
        with pytest.raises(IndexError):
            mapping.read(4 * PAGE - 2, 4)
        with pytest.raises(IndexError):
            mapping.write(b"xx", 4 * PAGE - 1)


def test_zero_length_map_is_einval_naming_the_file():
    with Memfd.create("empty") as m:
        with pytest.raises(IoctlError) as exc:
            m.mmap()
    assert exc.value.errno == errno.EINVAL
    assert "memfd=empty" in str(exc.value)


def test_close_is_idempotent_and_later_use_raises_closed(memfd):
    fd = memfd.fd
    memfd.close()
    memfd.close()
    assert memfd.closed
    with pytest.raises(OSError) as exc:
        os.fstat(fd)
    assert exc.value.errno == errno.EBADF
    with pytest.raises(ClosedError):
        memfd.add_seals(Seal.SHRINK)
    with pytest.raises(ClosedError):
        memfd.mmap(PAGE)
