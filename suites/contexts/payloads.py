"""Guest payloads of the contexts suite: each opens its own render node fd (a context belongs to
an fd), does a batch of CONTEXT_INIT work and returns plain data ("ok" or errno names, booleans).

Limits referred to here are the guest kernel's (drivers/gpu/drm/virtio/virtgpu_ioctl.c):
at most 4 parameters per CONTEXT_INIT, capset ids up to 63 and only those in
SUPPORTED_CAPSET_IDs, up to 64 rings, a poll mask within the rings, each parameter at most once.
"""
from __future__ import annotations

import errno
import os
import select
import struct
import time
from typing import Callable, Sequence

from gpuhil.errors import IoctlError
from gpuhil.devices.kmsg import WARNING_LEVEL, last_seq, records_since
from gpuhil.attempts import OK, attempt
from gpuhil.patterns import pattern
from gpuhil.devices.virtgpu import (BlobFlag, BlobMem, Capset, Param, RenderNode,
                            virgl_pipe_resource_create)

#: the kernel's limits on CONTEXT_INIT
MAX_RINGS = 64
MAX_CAPSET_ID = 63
MAX_PARAMS = 4
#: ``drm_event.type`` of a fence signalled on a ring in the context's poll mask (virtgpu_drm.h)
VIRTGPU_EVENT_FENCE_SIGNALED = 0x90000000
DRM_EVENT_SIZE = 8
#: a one-dword VIRGL_CCMD_NOP: a valid, harmless virgl command stream
VIRGL_NOP = struct.pack("<I", 0)
VIRGL_FAMILY = (int(Capset.VIRGL), int(Capset.VIRGL2))
#: how long a fence that must signal is waited for: a hang detector, not a speed limit (a
#: venus fence on QEMU 10.0 took over 10 s under CI load, twice, and signalled at once when quiet)
FENCE_TIMEOUT = 60.0

Params = Sequence[tuple[int, "int | bytes"]]




def command_for(capset_id: int) -> bytes:
    """A harmless command stream for a context of ``capset_id``: a virgl NOP for virgl contexts,
    an empty stream for the others (venus and DRM decoders accept zero commands)."""
    return VIRGL_NOP if capset_id in VIRGL_FAMILY else b""


def kernel_problems_since(seq: int) -> list[str]:
    """Kernel records after ``seq`` at warning level or worse (``<level>text``)."""
    return [record.line() for record in records_since(seq)
            if record.from_kernel and record.level <= WARNING_LEVEL]


def _classic_roundtrip(node: RenderNode) -> bool:
    """A 64x64 B8G8R8A8 texture of this fd's context: TRANSFER_TO_HOST a pattern, clear the
    backing, TRANSFER_FROM_HOST, compare."""
    width = height = 64
    size = width * height * 4
    with node.create_resource(format=1, bind=1 << 1, width=width, height=height,
                              size=size) as res:
        with res.mmap() as mapping:
            mapping.write(pattern(size, 7), 0)
        box = (0, 0, 0, width, height, 1)
        res.transfer_to_host(box)
        res.wait()
        with res.mmap() as mapping:
            mapping.write(bytes(size), 0)
        res.transfer_from_host(box)
        res.wait()
        with res.mmap() as mapping:
            return mapping.read(0, size) == pattern(size, 7)


def _host3d_roundtrip(node: RenderNode, size: int = 1 << 16) -> bool:
    """A HOST3D blob made by the context's own inline PIPE_RESOURCE_CREATE (as Mesa does),
    mapped through the hostmem window and seen through its dma-buf."""
    cmd = virgl_pipe_resource_create(size, blob_id=1)
    with node.create_blob(BlobMem.HOST3D, size, BlobFlag.MAPPABLE | BlobFlag.SHAREABLE,
                          blob_id=1, cmd=cmd) as blob:
        blob.wait()
        with blob.mmap() as mapping:
            mapping.write(pattern(size, 3), 0)
            with blob.export() as buf, buf.mmap() as dmap, buf.cpu_access():
                return dmap.read(0, size) == pattern(size, 3)


def context_usable(path: str, capset_id: int, host_visible: bool) -> dict:
    """CONTEXT_INIT(capset, debug name), then use the context: a fenced EXECBUFFER; for virgl
    contexts a classic texture round trip and, with a hostmem window, a HOST3D blob created by
    the context's inline command.  ``kernel`` lists what the guest kernel logged meanwhile at
    warning level or worse."""
    out: dict = {}
    seq = last_seq()
    with RenderNode(path) as node:
        node.context_init(capset_id=capset_id, debug_name=f"gpuhil-contexts-{capset_id}")
        with node.execbuffer(command_for(capset_id), fence_out=True) as fence:
            out["fence"] = fence.wait(FENCE_TIMEOUT)
        if capset_id in VIRGL_FAMILY:
            out["classic_roundtrip"] = _classic_roundtrip(node)
            if host_visible:
                out["host3d_roundtrip"] = _host3d_roundtrip(node)
    out["kernel"] = kernel_problems_since(seq)
    return out


def init_attempts(path: str, attempts: Sequence[Params], submit: bytes | None = None) -> dict:
    """Successive CONTEXT_INIT calls with raw ``(param, value)`` lists on one fd; with
    ``submit``, a fenced EXECBUFFER of it afterwards (does the fd's context work?).  ``kernel``
    lists what the guest kernel logged meanwhile at warning level or worse."""
    out: dict = {"results": []}
    seq = last_seq()
    with RenderNode(path) as node:
        for params in attempts:
            out["results"].append(attempt(lambda: node.context_init_params(list(params))))
        if submit is not None:
            with node.execbuffer(submit, fence_out=True) as fence:
                out["fence"] = fence.wait(FENCE_TIMEOUT)
    out["kernel"] = kernel_problems_since(seq)
    return out


def capset_id_sweep(path: str, ids: Sequence[int]) -> dict[int, str]:
    """CONTEXT_INIT(CAPSET_ID=id) for every id: "ok" or the errno name.  An fd is reused after
    a refusal (the capset check comes before the kernel stores anything) and replaced after a
    success (its context exists then)."""
    out: dict[int, str] = {}
    node: RenderNode | None = None
    try:
        for capset_id in ids:
            if node is None:
                node = RenderNode(path)
            out[capset_id] = attempt(lambda: node.context_init(capset_id=capset_id))
            if out[capset_id] == OK:
                node.close()
                node = None
    finally:
        if node is not None:
            node.close()
    return out


#: ioctls a fresh fd may start with (the EXECBUFFER refused for its ring index fails before it
#: would create the context; PRIME_FD_TO_HANDLE, RESOURCE_INFO, MAP, WAIT act on an import)
FIRST_IOCTLS = ("GETPARAM", "GET_CAPS", "SYNCOBJ_CREATE", "PRIME_FD_TO_HANDLE", "RESOURCE_INFO",
                "MAP", "WAIT", "EXECBUFFER refused (ring_idx without rings)", "RESOURCE_CREATE",
                "RESOURCE_CREATE_BLOB", "EXECBUFFER", "TRANSFER_TO_HOST", "TRANSFER_FROM_HOST")


def _first_ops(node: RenderNode, other: RenderNode, capset_id: int) -> dict[str, Callable[[], object]]:
    """The ioctls of :data:`FIRST_IOCTLS`, as the first ones on ``node``; ``other`` (an fd with
    its context) lends the buffers ``node`` imports."""

    def imported() -> int:
        # a classic resource: transfers refuse guest blobs
        with other.create_resource(size=4096).export() as buf:
            return node.prime_fd_to_handle(buf.fd)

    def after_import(op: Callable[[int], object]) -> Callable[[], object]:
        return lambda: op(imported())

    return {
        "GETPARAM": lambda: node.getparam(Param.SUPPORTED_CAPSET_IDS),
        "GET_CAPS": lambda: node.get_caps(capset_id, 0, 64),
        "SYNCOBJ_CREATE": lambda: node.syncobj_create(),
        "PRIME_FD_TO_HANDLE": imported,
        "RESOURCE_INFO": after_import(node.resource_info),
        "MAP": after_import(node.map_offset),
        "WAIT": after_import(lambda h: node.wait(h, True)),
        "EXECBUFFER refused (ring_idx without rings)":
            lambda: node.execbuffer(command_for(capset_id), ring_idx=0),
        "RESOURCE_CREATE": lambda: node.create_resource(size=4096),
        "RESOURCE_CREATE_BLOB": lambda: node.create_blob(BlobMem.GUEST, 4096, BlobFlag.MAPPABLE),
        "EXECBUFFER": lambda: node.execbuffer(command_for(capset_id)),
        "TRANSFER_TO_HOST": after_import(lambda h: node.transfer_to_host(h, (0, 0, 0, 1, 1, 1), 0, 0, 0, 0)),
        "TRANSFER_FROM_HOST": after_import(lambda h: node.transfer_from_host(h, (0, 0, 0, 1, 1, 1), 0, 0, 0, 0)),
    }


def init_after_first_ioctl(path: str, capset_id: int) -> dict[str, tuple[str, str]]:
    """For each ioctl: on a fresh fd run it first, then CONTEXT_INIT(capset); returns
    name -> (the ioctl's outcome, CONTEXT_INIT's outcome)."""
    out: dict[str, tuple[str, str]] = {}
    with RenderNode(path) as other:
        other.context_init(capset_id=capset_id)
        for name in FIRST_IOCTLS:
            with RenderNode(path) as node:
                first = attempt(_first_ops(node, other, capset_id)[name])
                out[name] = (first, attempt(lambda: node.context_init(capset_id=capset_id)))
    return out


def _read_events(fd: int, wait: float) -> list[tuple[int, int]]:
    """The DRM events readable on ``fd`` within ``wait`` seconds of the last one: (type, length)."""
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while poller.poll(int(wait * 1000)):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return [struct.unpack_from("<II", data, i) for i in range(0, len(data) - DRM_EVENT_SIZE + 1,
                                                            DRM_EVENT_SIZE)]


def fences_per_ring(path: str, capset_id: int, num_rings: int, timeout: float) -> dict:
    """A context with ``num_rings`` rings, all polled: one fenced EXECBUFFER per ring, then
    every fence waited for within one shared ``timeout``; also the fence events the fd delivered."""
    out: dict = {"signalled": {}, "refused": {}}
    with RenderNode(path) as node:
        node.context_init(capset_id=capset_id, num_rings=num_rings,
                          poll_rings_mask=(1 << num_rings) - 1)
        fences = {}
        for ring in range(num_rings):
            try:
                fences[ring] = node.execbuffer(command_for(capset_id), ring_idx=ring,
                                               fence_out=True)
            except IoctlError as exc:
                out["refused"][ring] = errno.errorcode.get(exc.errno, str(exc.errno))
        deadline = time.monotonic() + timeout
        for ring, fence in fences.items():
            with fence:
                out["signalled"][ring] = fence.wait(max(0.0, deadline - time.monotonic()))
        out["events"] = _read_events(node.fd, 0.2)
    return out


def poll_mask_events(path: str, capset_id: int, num_rings: int, mask: int,
                     submits: Sequence[int | None]) -> dict:
    """A context with ``num_rings`` rings and poll mask ``mask``; each entry of ``submits`` is a
    fenced EXECBUFFER on that ring (None: without VIRTGPU_EXECBUF_RING_IDX).  Returns whether each
    fence signalled and the DRM events read from the fd afterwards."""
    out: dict = {"signalled": []}
    with RenderNode(path) as node:
        node.context_init(capset_id=capset_id, num_rings=num_rings, poll_rings_mask=mask)
        for ring in submits:
            with node.execbuffer(command_for(capset_id), ring_idx=ring, fence_out=True) as fence:
                out["signalled"].append(fence.wait(FENCE_TIMEOUT))
        out["events"] = _read_events(node.fd, 0.2)
    return out
