"""How the VFIO objects own their fds: open with a clear error, close what hangs off them first."""
from __future__ import annotations

import errno
import os

from gpuhil.devices.dmabuf import OwnedFd
from gpuhil.errors import Unsupported, ioctl_error

__all__ = ["FdOwner", "open_node"]


def open_node(path: str | os.PathLike, missing: str, unsupported_if_missing: bool = False) -> int:
    """``open(path, O_RDWR|O_CLOEXEC)``; ENOENT says ``missing`` (and is Unsupported if asked)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        err = exc.errno or errno.EIO
        detail = missing if err == errno.ENOENT else ""
        if err == errno.ENOENT and unsupported_if_missing:
            raise Unsupported("OPEN", {"path": str(path)}, err, detail) from exc
        raise ioctl_error("OPEN", {"path": str(path)}, err, detail, unsupported=frozenset()) from exc


class FdOwner(OwnedFd):
    """An owned fd that also closes what was opened through it (devices, mappings, DMA
    buffers), and refuses to be entered again once closed."""

    def _close_children(self) -> None:
        """Closes what depends on this fd (subclasses)."""

    def close(self) -> None:
        """Releases everything opened through this object, then the fd; harmless twice."""
        if self.closed:
            return
        try:
            self._close_children()
        finally:
            super().close()

    def __enter__(self):
        self.fd  # noqa: B018 - raises ClosedError when closed
        return self

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            try:
                self.close()
            except Exception:  # noqa: BLE001 - nowhere to report from a finalizer
                pass
