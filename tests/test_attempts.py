"""gpuhil.attempts: "ok" or the errno name, for IoctlError and for plain OSError alike."""
from __future__ import annotations

import errno
import os

import pytest

from gpuhil.attempts import OK, attempt, attempt_sized, errno_name
from gpuhil.errors import ClosedError, IoctlError, Unsupported


def fail(exc: BaseException):
    def action():
        raise exc
    return action


def test_success_is_ok():
    """An action that returns (anything) is "ok"."""
    assert attempt(lambda: 42) == OK
    assert attempt_sized(lambda: None) == OK


@pytest.mark.parametrize("exc, name", [
    (IoctlError("OP", {}, errno.EINVAL), "EINVAL"),
    (Unsupported("OP", {}, errno.ENOTTY), "ENOTTY"),
    (OSError(errno.EBADF, "Bad file descriptor"), "EBADF"),
    (FileNotFoundError(errno.ENOENT, "No such file", "/dev/nothing"), "ENOENT"),
    (PermissionError(errno.EACCES, "Permission denied"), "EACCES"),
])
def test_errno_name_of_ioctl_and_plain_os_errors(exc, name):
    """IoctlError and plain OSError (and its subclasses) give the errno name."""
    assert attempt(fail(exc)) == name
    assert attempt_sized(fail(exc)) == name


def test_real_os_call_failing():
    """A real system call's OSError: opening a path that does not exist is ENOENT."""
    assert attempt(lambda: os.open("/nonexistent/gpuhil", os.O_RDONLY)) == "ENOENT"
    assert attempt(lambda: os.fstat(-1)) == "EBADF"


def test_errno_without_a_name_is_the_number():
    """An errno Python has no name for comes back as its number."""
    assert errno_name(OSError(4000, "made up")) == "4000"
    assert attempt(fail(OSError(4000, "made up"))) == "4000"


@pytest.mark.parametrize("exc", [
    OSError("no errno at all"), TimeoutError(), ClosedError("dma-buf is closed"),
    ValueError("bad argument"), RuntimeError("bug"),
])
def test_other_errors_propagate(exc):
    """Not a kernel answer (no errno, or not an OSError): the exception propagates."""
    with pytest.raises(type(exc)):
        attempt(fail(exc))
    with pytest.raises(type(exc)):
        attempt_sized(fail(exc))
