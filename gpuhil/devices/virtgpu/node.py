"""The virtio-gpu render node (``/dev/dri/renderD*``): every virtgpu and DRM-core ioctl.

GETPARAM, GET_CAPS, CONTEXT_INIT, RESOURCE_CREATE(_BLOB), RESOURCE_INFO, MAP, WAIT,
TRANSFER_*, EXECBUFFER, GEM_CLOSE, PRIME and syncobj; what it creates comes back as the
objects of :mod:`gpuhil.devices.virtgpu.objects`.
"""
from __future__ import annotations

import errno
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from gpuhil import _virtgpu
from gpuhil._virtgpu import BlobFlag, BlobHint, BlobMem, Capset, ExecFlag, Param, SyncobjWaitFlag
from gpuhil.devices.dmabuf import DmaBuf, SyncFile
from gpuhil.devices.ioctl import RawIoctl
from gpuhil.devices.virtgpu.objects import Blob, ExecSyncobj, Resource, ResourceInfo, SyncObj
from gpuhil.errors import IoctlError

__all__ = ["DRI", "DrmVersion", "RenderNode", "VIRTIO_GPU_DRIVER", "find_render_nodes"]

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


def find_render_nodes(dri: Path = DRI) -> list[Path]:
    """All ``renderD*`` nodes under ``dri``, in minor-number order."""
    nodes = [p for p in dri.glob("renderD*")] if dri.is_dir() else []
    return sorted(nodes, key=lambda p: int(p.name[len("renderD"):] or 0))


class RenderNode(_virtgpu.RenderNodeFd, RawIoctl):
    """An open virtio-gpu render node; ``RenderNode.open()`` finds it, ``RenderNode(path)``
    opens a given path (IoctlError naming the path when it is missing).  ``ioctl()`` sends any
    request (:mod:`gpuhil.devices.ioctl`)."""

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

    def resource_info(self, bo_handle: int) -> ResourceInfo:
        """DRM_IOCTL_VIRTGPU_RESOURCE_INFO of the buffer object ``bo_handle`` (held or not)."""
        bo, res, size, blob_mem = self._resource_info(bo_handle)
        mem = BlobMem(blob_mem) if blob_mem in BlobMem._value2member_map_ else blob_mem
        return ResourceInfo(bo, res, size, mem)

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
            resource.size = self.resource_info(bo).size   # the kernel rounds/fills the size
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
        info = self.resource_info(handle)
        return self._adopt(Resource(self, handle, info.res_handle, info.size))

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
