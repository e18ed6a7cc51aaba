"""What a render node holds by handle: buffer objects (:class:`Resource`, :class:`Blob`) and
:class:`SyncObj`; all are context managers with idempotent close().

GEM handles and syncobjs die with the node's fd; a :class:`~gpuhil.devices.dmabuf.Mapping`
stays valid after either is closed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuhil._virtgpu import BlobFlag, BlobMem, PrimeFlag, SyncobjWaitFlag
from gpuhil.devices.dmabuf import DmaBuf, Mapping
from gpuhil.errors import ClosedError

if TYPE_CHECKING:
    from gpuhil.devices.virtgpu.node import RenderNode

__all__ = ["Blob", "ExecSyncobj", "Resource", "ResourceInfo", "SyncObj"]


@dataclass(frozen=True)
class ResourceInfo:
    """DRM_IOCTL_VIRTGPU_RESOURCE_INFO of one buffer object."""

    bo_handle: int
    res_handle: int
    size: int
    blob_mem: BlobMem | int


@dataclass(frozen=True)
class ExecSyncobj:
    """One in/out syncobj entry of EXECBUFFER (``drm_virtgpu_execbuffer_syncobj``)."""

    syncobj: "SyncObj | int"
    flags: int = 0
    point: int = 0

    def raw(self) -> tuple[int, int, int]:
        """``(handle, flags, point)`` as the ioctl takes it."""
        handle = self.syncobj.handle if isinstance(self.syncobj, SyncObj) else int(self.syncobj)
        return (handle, int(self.flags), self.point)


class _NodeObject:
    """Something a render node holds by handle: dead once closed, or once the node is."""

    __slots__ = ()
    _what = "object"

    @property
    def closed(self) -> bool:
        """True after close() or once the node is closed."""
        return self._closed or self.node.closed

    def _live(self, handle: int) -> int:
        """``handle``, or ClosedError when this object is dead."""
        if self.closed:
            raise ClosedError(f"{self._what} {handle} is closed")
        return handle

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Resource(_NodeObject):
    """A GEM buffer object on a render node (RESOURCE_CREATE, blob, or PRIME import)."""

    __slots__ = ("node", "bo_handle", "res_handle", "size", "stride", "_closed", "__weakref__")
    _what = "buffer object"

    def __init__(self, node: RenderNode, bo_handle: int, res_handle: int, size: int) -> None:
        self.node = node
        self.bo_handle = bo_handle
        self.res_handle = res_handle
        self.size = size
        self.stride = 0
        self._closed = False

    def _handle(self) -> int:
        return self._live(self.bo_handle)

    def info(self) -> ResourceInfo:
        """RESOURCE_INFO."""
        return self.node.resource_info(self._handle())

    def map_offset(self) -> int:
        """MAP: the fake offset to mmap the render node at."""
        return self.node.map_offset(self._handle())

    def mmap(self, length: int | None = None, writable: bool = True) -> Mapping:
        """MAP + mmap of the whole object (or its first ``length`` bytes)."""
        if self._closed:
            raise ClosedError(f"buffer object {self.bo_handle} is closed")
        node = self.node
        return Mapping.map(node.fd, self.size if length is None else length,
                           node.map_offset(self.bo_handle), writable, "mmap",
                           {"bo_handle": self.bo_handle})

    def wait(self, nowait: bool = False) -> bool:
        """WAIT: True if idle; False if busy (NOWAIT) or still busy after the kernel's timeout."""
        return self.node.wait(self._handle(), nowait)

    def transfer_to_host(self, box: tuple[int, int, int, int, int, int] | None = None, *,
                         level: int = 0, offset: int = 0, stride: int = 0,
                         layer_stride: int = 0) -> None:
        """TRANSFER_TO_HOST of ``box`` = (x, y, z, w, h, d)."""
        self.node.transfer_to_host(self._handle(), box or (0, 0, 0, 0, 0, 0), level, offset,
                                   stride, layer_stride)

    def transfer_from_host(self, box: tuple[int, int, int, int, int, int] | None = None, *,
                           level: int = 0, offset: int = 0, stride: int = 0,
                           layer_stride: int = 0) -> None:
        """TRANSFER_FROM_HOST of ``box`` = (x, y, z, w, h, d)."""
        self.node.transfer_from_host(self._handle(), box or (0, 0, 0, 0, 0, 0), level, offset,
                                     stride, layer_stride)

    def export(self, flags: PrimeFlag | int = PrimeFlag.CLOEXEC | PrimeFlag.RDWR) -> DmaBuf:
        """PRIME_HANDLE_TO_FD: the object as a dma-buf."""
        return DmaBuf(self.node.prime_handle_to_fd(self._handle(), int(flags)))

    def close(self) -> None:
        """GEM_CLOSE (idempotent; nothing to do once the node is closed)."""
        if self._closed:
            return
        self._closed = True
        node = self.node
        if not node.closed:
            node._objects.pop(self.bo_handle, None)
            node.gem_close(self.bo_handle)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} bo={self.bo_handle} res={self.res_handle} "
                f"size={self.size}{' closed' if self.closed else ''}>")


class Blob(Resource):
    """A blob resource (RESOURCE_CREATE_BLOB) with the parameters it was created with."""

    __slots__ = ("blob_mem", "blob_flags", "blob_id")

    def __init__(self, node: RenderNode, bo_handle: int, res_handle: int, size: int,
                 blob_mem: BlobMem | int, blob_flags: BlobFlag | int, blob_id: int) -> None:
        super().__init__(node, bo_handle, res_handle, size)
        self.blob_mem = blob_mem
        self.blob_flags = blob_flags
        self.blob_id = blob_id


class SyncObj(_NodeObject):
    """A DRM syncobj of a render node."""

    _what = "syncobj"

    def __init__(self, node: RenderNode, handle: int) -> None:
        self.node = node
        self.handle = handle
        self._closed = False

    def _handle(self) -> int:
        return self._live(self.handle)

    def wait(self, timeout: float | None = 0, wait_for_submit: bool = False) -> bool:
        """SYNCOBJ_WAIT on this one; False on timeout."""
        return self.node.syncobj_wait([self._handle()], -1 if timeout is None else int(timeout * 1e9),
                                      int(SyncobjWaitFlag.WAIT_FOR_SUBMIT) if wait_for_submit else 0) >= 0

    def signal(self) -> None:
        """SYNCOBJ_SIGNAL."""
        self.node.syncobj_signal([self._handle()])

    def reset(self) -> None:
        """SYNCOBJ_RESET."""
        self.node.syncobj_reset([self._handle()])

    def close(self) -> None:
        """SYNCOBJ_DESTROY (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if not self.node.closed:
            self.node.syncobj_destroy(self.handle)
