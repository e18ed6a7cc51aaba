"""Exceptions raised across gpuhil.

Every failure of a kernel interface is an :class:`IoctlError` that names the operation, its
arguments and the errno, e.g. ``RESOURCE_CREATE_BLOB(blob_mem=HOST3D, size=0): EINVAL``.
"The kernel or device does not support this" is the subclass :class:`Unsupported`, which
capability gating treats as a missing capability rather than a defect.
"""
from __future__ import annotations

import errno as _errno
import os
from collections.abc import Mapping

#: errnos that mean "this kernel/device does not have it" rather than "you called it wrong".
UNSUPPORTED_ERRNOS = frozenset({_errno.ENOTTY, _errno.EOPNOTSUPP, _errno.ENOSYS})


class GpuhilError(Exception):
    """Base class of every error gpuhil raises on purpose."""


class ClosedError(GpuhilError, ValueError):
    """An operation was attempted on an object that was already closed."""


def _format_args(args: Mapping[str, object]) -> str:
    parts = []
    for key, value in args.items():
        if isinstance(value, int) and not isinstance(value, bool) and (value > 0xFFFF):
            parts.append(f"{key}={value:#x}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


class IoctlError(GpuhilError, OSError):
    """A kernel call failed: carries ``op``, ``args`` (name -> value) and ``errno``."""

    def __init__(self, op: str, args: Mapping[str, object] | None, err: int, detail: str = "") -> None:
        self.op = op
        self.args_ = dict(args or {})
        name = _errno.errorcode.get(err, f"errno {err}")
        text = f"{op}({_format_args(self.args_)}): {name} ({os.strerror(err)})"
        if detail:
            text += f": {detail}"
        OSError.__init__(self, err, text)
        self.detail = detail

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):  # keep op/args/errno across the agent's pickling
        return (self.__class__, (self.op, self.args_, self.errno, self.detail))


class Unsupported(IoctlError):
    """The kernel or device does not implement the operation (ENOTTY, EOPNOTSUPP, unknown param)."""


def ioctl_error(op: str, args: Mapping[str, object] | None, err: int, detail: str = "",
                unsupported: frozenset[int] = UNSUPPORTED_ERRNOS) -> IoctlError:
    """Build the right exception for a failed kernel call (``Unsupported`` for ENOTTY & co)."""
    cls = Unsupported if err in unsupported else IoctlError
    return cls(op, args, err, detail)
