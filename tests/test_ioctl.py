"""gpuhil.devices.ioctl: the raw-ioctl escape hatch, on fds that are not devices.

Against real devices: tests/test_udmabuf_device.py, tests/test_vfio_lab.py and
tests/test_virtgpu_device.py (lab guests).
"""
from __future__ import annotations

import errno
import os

import pytest

from gpuhil.devices.dmabuf import DmaBuf, OwnedFd, SyncFile
from gpuhil.devices.ioctl import RawIoctl, raw_ioctl
from gpuhil.devices.udmabuf import Udmabuf
from gpuhil.devices.vfio import Container, Device, Group
from gpuhil.devices.virtgpu import RenderNode
from gpuhil.errors import ClosedError, IoctlError, Unsupported

FIONREAD = 0x541B  # asm-generic/ioctls.h: bytes readable, into an int
FIOCLEX = 0x5451   # set close-on-exec, no argument
UNKNOWN = 0xC0184F7F  # _IOWR('O', 0x7f, 24 bytes): no driver answers this


@pytest.fixture
def pipe():
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def test_every_fd_owning_device_class_has_the_same_method():
    """Render node, dma-buf, sync file, udmabuf, VFIO container, group and device all offer it."""
    for cls in (RenderNode, DmaBuf, SyncFile, Udmabuf, Container, Group, Device, OwnedFd):
        assert issubclass(cls, RawIoctl), cls
        assert cls.ioctl is RawIoctl.ioctl, cls


def test_int_argument_returns_the_ioctl_value(pipe):
    """FIOCLEX takes no argument and returns 0."""
    r, _ = pipe
    os.set_inheritable(r, True)
    assert raw_ioctl(r, FIOCLEX) == 0
    assert not os.get_inheritable(r)


def test_bytes_argument_returns_the_buffer_after_the_call(pipe):
    """FIONREAD writes the readable byte count into the (copied) buffer."""
    r, w = pipe
    os.write(w, b"hello")
    out = raw_ioctl(r, FIONREAD, bytes(4))
    assert isinstance(out, bytes) and int.from_bytes(out, "little") == 5


def test_bytearray_argument_is_updated_in_place(pipe):
    """A writable buffer is passed as is: the kernel's answer lands in it."""
    r, w = pipe
    os.write(w, b"abc")
    buf = bytearray(4)
    assert raw_ioctl(r, FIONREAD, buf) == 0
    assert int.from_bytes(buf, "little") == 3


def test_large_bytes_argument_is_not_limited_to_1024(pipe):
    """fcntl.ioctl refuses immutable buffers over 1024 bytes; the escape hatch copies them."""
    r, _ = pipe
    with pytest.raises(Unsupported) as info:
        raw_ioctl(r, UNKNOWN, bytes(4096))
    assert info.value.args_ == {"request": "0xc0184f7f", "size": 4096}


def test_refusal_names_request_and_argument():
    """An unknown request on /dev/null: Unsupported (ENOTTY) naming the number in hex."""
    with OwnedFd(os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)) as owned:
        with pytest.raises(Unsupported) as info:
            owned.ioctl(UNKNOWN, bytearray(24))
        assert str(info.value).startswith("IOCTL(request=0xc0184f7f, size=24): ENOTTY")
        assert info.value.op == "IOCTL" and info.value.errno == errno.ENOTTY
        with pytest.raises(Unsupported, match=r"^IOCTL\(request=0x4f7f, arg=0x7\): ENOTTY"):
            owned.ioctl(0x4F7F, 7)


def test_bad_fd_is_an_ioctl_error_not_unsupported():
    """EBADF is an ordinary IoctlError."""
    with pytest.raises(IoctlError) as info:
        raw_ioctl(987654, FIOCLEX)
    assert info.value.errno == errno.EBADF and not isinstance(info.value, Unsupported)


def test_closed_object_raises_closed_error():
    """Once closed, the handle refuses before any system call."""
    owned = OwnedFd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
    owned.close()
    with pytest.raises(ClosedError):
        owned.ioctl(FIOCLEX)


@pytest.mark.parametrize("request_, arg, exc, text", [
    (-1, 0, ValueError, "32-bit unsigned number, not -1"),
    (1 << 32, 0, ValueError, "32-bit unsigned number, not 4294967296"),
    ("0x5451", 0, ValueError, "32-bit unsigned number, not '0x5451'"),
    (FIOCLEX, "text", TypeError, "int, bytes or a writable buffer, not str"),
    (FIOCLEX, 1 << 80, ValueError, "does not fit a C long"),
])
def test_bad_arguments_are_refused_with_one_line(pipe, request_, arg, exc, text):
    """A request that is not a 32-bit number or an argument of the wrong kind: a clear error."""
    with pytest.raises(exc, match=text):
        raw_ioctl(pipe[0], request_, arg)
