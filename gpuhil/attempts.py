"""What a kernel call did, as the short strings guest payloads return: ``"ok"`` or its errno name.

Imported in the guest by the suites' payloads (standard library and gpuhil only).
"""
from __future__ import annotations

import errno
from typing import Callable

from gpuhil.devices.dmabuf import DmaBuf, Mapping
from gpuhil.errors import IoctlError

OK = "ok"


def errno_name(exc: OSError) -> str:
    """``EINVAL`` for an OSError or IoctlError (the number when it has no name)."""
    return errno.errorcode.get(exc.errno, str(exc.errno))


def attempt(action: Callable[[], object]) -> str:
    """``"ok"`` when ``action`` succeeds, else the errno name of the IoctlError it raised."""
    try:
        action()
    except IoctlError as exc:
        return errno_name(exc)
    return OK


def attempt_sized(action: Callable[[], object]) -> str:
    """Like :func:`attempt`, but a dma-buf result gives ``"ok:<size>"``; dma-bufs and mappings
    the action returns are closed."""
    try:
        result = action()
    except IoctlError as exc:
        return errno_name(exc)
    if isinstance(result, DmaBuf):
        size = result.size
        result.close()
        return f"{OK}:{size}"
    if isinstance(result, Mapping):
        result.close()
    return OK
