"""What a kernel call did, as the short strings guest payloads return: ``"ok"`` or its errno name.

Imported in the guest by the suites' payloads (standard library and gpuhil only).
"""
from __future__ import annotations

import errno
from typing import Callable

from gpuhil.devices.dmabuf import DmaBuf, Mapping

OK = "ok"


def errno_name(exc: OSError) -> str:
    """``EINVAL`` for an OSError or IoctlError (the number when it has no name)."""
    return errno.errorcode.get(exc.errno, str(exc.errno))


def attempt(action: Callable[[], object]) -> str:
    """``"ok"`` when ``action`` succeeds, else the errno name of the OSError it raised (an
    :class:`~gpuhil.errors.IoctlError` or a plain one, e.g. from ``os.open``).  An OSError
    without an errno is not a kernel answer: it propagates."""
    try:
        action()
    except OSError as exc:
        if exc.errno is None:
            raise
        return errno_name(exc)
    return OK


def attempt_sized(action: Callable[[], object]) -> str:
    """Like :func:`attempt`, but a dma-buf result gives ``"ok:<size>"``; dma-bufs and mappings
    the action returns are closed."""
    try:
        result = action()
    except OSError as exc:
        if exc.errno is None:
            raise
        return errno_name(exc)
    if isinstance(result, DmaBuf):
        size = result.size
        result.close()
        return f"{OK}:{size}"
    if isinstance(result, Mapping):
        result.close()
    return OK
