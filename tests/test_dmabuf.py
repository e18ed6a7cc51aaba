"""dma-buf: fdinfo parsing and every error path reachable without a dma-buf exporter."""
import errno
import os

import pytest

from gpuhil import _dmabuf
from gpuhil.devices.dmabuf import DmaBuf, DmaBufInfo, SyncFlag, parse_fdinfo
from gpuhil.errors import ClosedError, IoctlError, Unsupported

FDINFO = """pos:\t0
flags:\t02000002
mnt_id:\t16
ino:\t1042
size:\t1048576
count:\t1
exp_name:\tudmabuf
name:\tgpuhil-test
"""


def test_parse_fdinfo_reads_every_dma_buf_field():
    assert parse_fdinfo(FDINFO) == DmaBufInfo(size=1048576, count=1, exp_name="udmabuf",
                                              name="gpuhil-test", flags=0o2000002, ino=1042)


def test_parse_fdinfo_without_name_gives_none():
    text = FDINFO.replace("name:\tgpuhil-test\n", "")
    assert parse_fdinfo(text).name is None
    assert parse_fdinfo(text).exp_name == "udmabuf"


def test_parse_fdinfo_rejects_a_non_dma_buf():
    with pytest.raises(ValueError):
        parse_fdinfo("pos:\t0\nflags:\t02\nmnt_id:\t5\nino:\t7\n")


def test_sync_flag_names_are_symbolic():
    assert _dmabuf.sync_flag_names(SyncFlag.START | SyncFlag.READ) == "START|READ"
    assert _dmabuf.sync_flag_names(SyncFlag.END | SyncFlag.RW) == "END|RW"
    assert _dmabuf.sync_flag_names(SyncFlag.END | 0x40) == "END|0x40"


@pytest.fixture
def regular_file(tmp_path):
    path = tmp_path / "plain"
    path.write_bytes(b"\0" * 4096)
    fd = os.open(path, os.O_RDWR)
    with DmaBuf(fd) as buf:
        yield buf


@pytest.fixture
def pipe_buf():
    r, w = os.pipe()
    with DmaBuf(r) as buf:
        yield buf
    os.close(w)


@pytest.mark.parametrize("call, op", [
    (lambda b: b.sync(SyncFlag.START | SyncFlag.RW), "DMA_BUF_IOCTL_SYNC"),
    (lambda b: b.export_sync_file(), "DMA_BUF_IOCTL_EXPORT_SYNC_FILE"),
    (lambda b: b.import_sync_file(0), "DMA_BUF_IOCTL_IMPORT_SYNC_FILE"),
    (lambda b: b.set_name("x"), "DMA_BUF_SET_NAME"),
])
@pytest.mark.parametrize("kind", ["regular_file", "pipe_buf"])
def test_dma_buf_ioctls_on_a_wrong_fd_type_are_unsupported_and_named(call, op, kind, request):
    buf = request.getfixturevalue(kind)
    with pytest.raises(Unsupported) as exc:
        call(buf)
    assert exc.value.errno == errno.ENOTTY
    assert exc.value.op == op
    assert str(exc.value).startswith(f"{op}(fd={buf.fd}")


def test_sync_error_names_the_flags(regular_file):
    with pytest.raises(Unsupported) as exc:
        with regular_file.cpu_access(read=True, write=False):
            pass
    assert "flags=START|READ" in str(exc.value)


def test_fdinfo_of_a_non_dma_buf_is_an_error_naming_the_fd(pipe_buf):
    with pytest.raises(IoctlError) as exc:
        pipe_buf.fdinfo()
    assert exc.value.op == "fdinfo" and exc.value.errno == errno.EINVAL
    assert "not a dma-buf" in str(exc.value)


def test_size_of_a_pipe_is_espipe(pipe_buf):
    with pytest.raises(IoctlError) as exc:
        pipe_buf.size
    assert exc.value.errno == errno.ESPIPE and exc.value.op == "lseek"


def test_close_releases_the_fd_once_and_later_use_raises_closed(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    buf = DmaBuf(os.open(path, os.O_RDONLY))
    fd = buf.fd
    with buf:
        pass
    assert buf.closed
    buf.close()
    with pytest.raises(OSError) as exc:
        os.fstat(fd)
    assert exc.value.errno == errno.EBADF
    for call in (lambda: buf.sync(0), buf.mmap, buf.fdinfo, lambda: buf.size):
        with pytest.raises(ClosedError):
            call()


def test_from_fd_duplicates_and_leaves_the_callers_fd_open(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = DmaBuf.from_fd(fd)
        assert buf.fd != fd
        buf.close()
        os.fstat(fd)
    finally:
        os.close(fd)


def test_detach_hands_the_fd_back(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    buf = DmaBuf(os.open(path, os.O_RDONLY))
    fd = buf.detach()
    assert buf.closed
    os.fstat(fd)
    os.close(fd)
