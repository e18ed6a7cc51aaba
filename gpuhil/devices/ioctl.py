"""The escape hatch: any ioctl number, with any argument, through a device handle.

For negative tests that need a request the typed API does not offer (an unknown number, a
malformed struct).  Every fd-owning device object (render node, dma-buf, sync file, udmabuf,
VFIO container, group and device) has :meth:`RawIoctl.ioctl`; :func:`raw_ioctl` takes a bare fd.
The argument follows :func:`fcntl.ioctl`'s convention, without its 1024-byte limit:

* an ``int`` is passed by value; the ioctl's return value comes back;
* ``bytes`` are copied into a buffer the kernel may read and write; that buffer comes back;
* a ``bytearray`` (or other writable buffer) is passed in place and updated by the kernel; the
  ioctl's return value comes back (a new fd, for the requests that make one: the caller owns it).

A refusal raises :class:`~gpuhil.errors.IoctlError` (:class:`~gpuhil.errors.Unsupported` for
ENOTTY and kin) naming the request number and the argument, e.g.
``IOCTL(request=0xc0185500, size=24): EINVAL (Invalid argument)``.
"""
from __future__ import annotations

import errno
import fcntl

from gpuhil.errors import ioctl_error

__all__ = ["RawIoctl", "raw_ioctl"]

#: ioctl request numbers are 32 bits (dir:2, size:14, type:8, nr:8).
MAX_REQUEST = (1 << 32) - 1


def _describe(request: int, arg: object) -> dict:
    args: dict[str, object] = {"request": f"{request:#x}"}
    if isinstance(arg, int):
        args["arg"] = f"{arg:#x}"
    else:
        args["size"] = memoryview(arg).nbytes
    return args


def raw_ioctl(fd: int, request: int, arg: bytes | bytearray | memoryview | int = 0) -> bytes | int:
    """``ioctl(fd, request, arg)``; see the module docstring for what comes back."""
    if isinstance(request, bool) or not isinstance(request, int) or not 0 <= request <= MAX_REQUEST:
        raise ValueError(f"ioctl request must be a 32-bit unsigned number, not {request!r}")
    if isinstance(arg, bool) or not isinstance(arg, (int, bytes, bytearray, memoryview)):
        raise TypeError(f"ioctl argument must be int, bytes or a writable buffer, not {type(arg).__name__}")
    try:
        if isinstance(arg, int):
            return fcntl.ioctl(fd, request, arg)
        if isinstance(arg, bytes) or (isinstance(arg, memoryview) and arg.readonly):
            buf = bytearray(arg)
            fcntl.ioctl(fd, request, buf, True)
            return bytes(buf)
        return fcntl.ioctl(fd, request, arg, True)
    except OSError as exc:
        raise ioctl_error("IOCTL", _describe(request, arg), exc.errno or errno.EIO) from None
    except OverflowError:
        raise ValueError(f"ioctl argument {arg!r} does not fit a C long") from None


class RawIoctl:
    """Mixin for objects with an ``fd`` property (ClosedError once closed): adds :meth:`ioctl`."""

    __slots__ = ()

    def ioctl(self, request: int, arg: bytes | bytearray | memoryview | int = 0) -> bytes | int:
        """Sends ``request`` with ``arg`` on this object's fd (see :mod:`gpuhil.devices.ioctl`)."""
        return raw_ioctl(self.fileno(), request, arg)
