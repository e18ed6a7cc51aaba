"""The virtio-gpu render node (``/dev/dri/renderD*``) and the objects it creates.

:class:`RenderNode` issues every virtgpu and DRM-core ioctl (GETPARAM, GET_CAPS, CONTEXT_INIT,
RESOURCE_CREATE(_BLOB), RESOURCE_INFO, MAP, WAIT, TRANSFER_*, EXECBUFFER, GEM_CLOSE, PRIME,
syncobj).  Buffer objects come back as :class:`Resource` / :class:`Blob`, syncobjs as
:class:`SyncObj`; all are context managers with idempotent close().  GEM handles and syncobjs
die with the node's fd; a :class:`~gpuhil.devices.dmabuf.Mapping` stays valid after either is closed.
"""
from __future__ import annotations

import errno
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from gpuhil import _virtgpu
from gpuhil._virtgpu import (ABI, BlobFlag, BlobHint, BlobMem, Capset, ContextParam, ExecFlag,
                             ExecSyncobjFlag, Param, PrimeFlag, SyncobjWaitFlag)
from gpuhil.devices.dmabuf import DmaBuf, Mapping, SyncFile
from gpuhil.errors import ClosedError, IoctlError

__all__ = [
    "ABI", "Blob", "BlobFlag", "BlobHint", "BlobMem", "Capset", "ContextParam", "DrmVersion",
    "ExecFlag", "ExecSyncobj", "ExecSyncobjFlag", "Param", "PrimeFlag", "RenderNode", "Resource",
    "ResourceInfo", "SyncObj", "SyncobjWaitFlag", "find_render_nodes", "virgl_pipe_resource_create",
]

DRI = Path("/dev/dri")
VIRTIO_GPU_DRIVER = "virtio_gpu"


@dataclass(frozen=True)
class DrmVersion:
    """DRM_IOCTL_VERSION: the driver's version and identity."""

    major: int
    minor: int
    patchlevel: int
    name: str
    date: str
    desc: str


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


def find_render_nodes(dri: Path = DRI) -> list[Path]:
    """All ``renderD*`` nodes under ``dri``, in minor-number order."""
    nodes = [p for p in dri.glob("renderD*")] if dri.is_dir() else []
    return sorted(nodes, key=lambda p: int(p.name[len("renderD"):] or 0))


class RenderNode(_virtgpu.RenderNodeFd):
    """An open virtio-gpu render node; ``RenderNode.open()`` finds it, ``RenderNode(path)``
    opens a given path (IoctlError naming the path when it is missing)."""

    def __init__(self, path: str) -> None:
        # bo handle -> weak reference to its live Resource (PRIME imports of our own buffers
        # return the same handle, hence the same object)
        self._objects: dict[int, weakref.ref[Resource]] = {}

    @classmethod
    def open(cls, path: str | Path | None = None, driver: str = VIRTIO_GPU_DRIVER,
             dri: Path = DRI) -> "RenderNode":
        """Open ``path``, or the first render node under ``dri`` whose DRM driver (VERSION name)
        is ``driver``."""
        if path is not None:
            return cls(str(path))
        nodes = find_render_nodes(dri)
        for node in nodes:
            opened = cls(str(node))
            try:
                if opened.version().name == driver:
                    return opened
            except IoctlError:
                pass
            opened.close()
        found = ", ".join(n.name for n in nodes) or "none"
        raise IoctlError("open", {"path": f"{dri}/renderD*", "driver": driver}, errno.ENOENT,
                         f"no {driver} render node (found: {found}); is the driver loaded?")

    # ---- queries ----

    def version(self) -> DrmVersion:
        """DRM_IOCTL_VERSION."""
        return DrmVersion(*self._version())

    def supported_capsets(self) -> list[Capset | int]:
        """Capset ids from GETPARAM(SUPPORTED_CAPSET_IDS) (bit N = capset N)."""
        mask = self.getparam(Param.SUPPORTED_CAPSET_IDS)
        ids = [i for i in range(32) if mask & (1 << i)]
        return [Capset(i) if i in Capset._value2member_map_ else i for i in ids]

    # ---- buffer objects ----

    def _adopt(self, resource: "Resource") -> "Resource":
        self._objects[resource.bo_handle] = weakref.ref(resource)
        return resource

    def create_blob(self, blob_mem: BlobMem | int, size: int, flags: BlobFlag | int = 0, *,
                    blob_id: int = 0, cmd: bytes = b"", hints: BlobHint | int = 0) -> "Blob":
        """RESOURCE_CREATE_BLOB.  ``cmd`` is the inline context command (e.g. a
        :func:`virgl_pipe_resource_create` for HOST3D), ``hints`` goes to ``blob_hints``.

        HOST3D failures on the host surface only later (mmap EINVAL, WAIT).
        """
        bo, res = self._create_blob(int(blob_mem), size, int(flags), blob_id, cmd or None,
                                    int(hints))
        return self._adopt(Blob(self, bo, res, size, blob_mem, flags, blob_id))

    def create_resource(self, *, target: int = 2, format: int = 1, bind: int = 2, width: int = 1,
                        height: int = 1, depth: int = 1, array_size: int = 1, last_level: int = 0,
                        nr_samples: int = 0, flags: int = 0, size: int = 0,
                        stride: int = 0) -> "Resource":
        """RESOURCE_CREATE (classic 2D/3D resource; defaults: 2D B8G8R8A8 render target)."""
        bo, res, _, out_stride = self._resource_create(target, format, bind, width, height, depth,
                                                       array_size, last_level, nr_samples, flags,
                                                       size, stride)
        resource = self._adopt(Resource(self, bo, res, size))
        resource.stride = out_stride
        try:
            resource.size = self._resource_info(bo)[2]   # the kernel rounds/fills the size
        except BaseException:
            resource.close()
            raise
        return resource

    def import_dmabuf(self, dmabuf: DmaBuf | int) -> "Resource":
        """PRIME_FD_TO_HANDLE.  Importing a buffer this node already holds returns the same
        object (the kernel hands back the same GEM handle)."""
        fd = dmabuf.fd if isinstance(dmabuf, DmaBuf) else int(dmabuf)
        handle = self.prime_fd_to_handle(fd)
        ref = self._objects.get(handle)
        existing = ref() if ref is not None else None
        if existing is not None and not existing.closed:
            return existing
        _, res, size, _ = self._resource_info(handle)
        return self._adopt(Resource(self, handle, res, size))

    # ---- sync ----

    def syncobj(self, signaled: bool = False) -> "SyncObj":
        """SYNCOBJ_CREATE (optionally already signalled)."""
        return SyncObj(self, self.syncobj_create(signaled))

    def wait_syncobjs(self, syncobjs: Sequence["SyncObj | int"], timeout: float | None,
                      wait_all: bool = True, wait_for_submit: bool = False) -> int | None:
        """SYNCOBJ_WAIT; returns the first signalled index (0 with wait_all) or None on timeout."""
        handles = [s.handle if isinstance(s, SyncObj) else int(s) for s in syncobjs]
        flags = (SyncobjWaitFlag.WAIT_ALL if wait_all else 0) | \
                (SyncobjWaitFlag.WAIT_FOR_SUBMIT if wait_for_submit else 0)
        ns = -1 if timeout is None else int(timeout * 1e9)
        index = self.syncobj_wait(handles, ns, int(flags))
        return None if index < 0 else index

    def execbuffer(self, command: bytes, bo_handles: Iterable["Resource | int"] = (), *,
                   ring_idx: int | None = None, fence_in: SyncFile | int | None = None,
                   fence_out: bool = False, in_syncobjs: Iterable[ExecSyncobj | "SyncObj"] = (),
                   out_syncobjs: Iterable[ExecSyncobj | "SyncObj"] = (),
                   extra_flags: int = 0) -> SyncFile | None:
        """EXECBUFFER: submit ``command`` to the context (on ``ring_idx`` if given).

        Returns the out-fence as a SyncFile when ``fence_out``; ``extra_flags`` adds raw bits
        for negative tests.
        """
        handles = [b.bo_handle if isinstance(b, Resource) else int(b) for b in bo_handles]
        flags = int(extra_flags)
        fence_fd = -1
        if fence_in is not None:
            flags |= ExecFlag.FENCE_FD_IN
            fence_fd = fence_in.fd if isinstance(fence_in, SyncFile) else int(fence_in)
        if fence_out:
            flags |= ExecFlag.FENCE_FD_OUT
        if ring_idx is not None:
            flags |= ExecFlag.RING_IDX
        ins = [(s if isinstance(s, ExecSyncobj) else ExecSyncobj(s)).raw() for s in in_syncobjs]
        outs = [(s if isinstance(s, ExecSyncobj) else ExecSyncobj(s)).raw() for s in out_syncobjs]
        out_fd = self._execbuffer(command, handles, flags, fence_fd, ring_idx or 0, ins, outs)
        return SyncFile(out_fd) if out_fd >= 0 else None

    def __repr__(self) -> str:
        return f"<RenderNode {self.path} {'closed' if self.closed else f'fd={self.fd}'}>"


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
        bo, res, size, blob_mem = self.node._resource_info(self._handle())
        mem = BlobMem(blob_mem) if blob_mem in BlobMem._value2member_map_ else blob_mem
        return ResourceInfo(bo, res, size, mem)

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


# ---- virgl inline command for HOST3D blobs -----------------------------------------------------

VIRGL_CCMD_PIPE_RESOURCE_CREATE = 48
VIRGL_PIPE_RES_CREATE_SIZE = 11
PIPE_BUFFER = 0
VIRGL_FORMAT_R8_UNORM = 64
VIRGL_BIND_VERTEX_BUFFER = 1 << 4
VIRGL_RESOURCE_FLAG_MAP_PERSISTENT = 1 << 1
VIRGL_RESOURCE_FLAG_MAP_COHERENT = 1 << 2


def virgl_pipe_resource_create(width: int, blob_id: int, *, target: int = PIPE_BUFFER,
                               format: int = VIRGL_FORMAT_R8_UNORM,
                               bind: int = VIRGL_BIND_VERTEX_BUFFER, height: int = 1,
                               depth: int = 1, array_size: int = 1, last_level: int = 0,
                               nr_samples: int = 0,
                               flags: int = VIRGL_RESOURCE_FLAG_MAP_PERSISTENT
                               | VIRGL_RESOURCE_FLAG_MAP_COHERENT) -> bytes:
    """A ``VIRGL_CCMD_PIPE_RESOURCE_CREATE`` for the inline ``cmd`` of a HOST3D blob.

    Defaults make a host-mappable (persistent, coherent) buffer of ``width`` bytes.  The
    payload order is target, format, bind, ... (swapping them makes virglrenderer reject it).
    """
    header = VIRGL_CCMD_PIPE_RESOURCE_CREATE | (VIRGL_PIPE_RES_CREATE_SIZE << 16)
    return struct.pack("<12I", header, target, format, bind, width, height, depth, array_size,
                       last_level, nr_samples, flags, blob_id)
