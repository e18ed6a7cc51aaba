"""Guest payloads of the blob suite: blob lifecycles, error cases, stress and reboot holders.

Every function runs in the guest (``virtgpu.call(f, ...)`` passes the render node path first)
and returns plain data: the dataclasses below, dicts of errno names, numbers.  HOST3D and
HOST3D_GUEST blobs are made the way Mesa's virgl driver makes them: a
``VIRGL_CCMD_PIPE_RESOURCE_CREATE`` passed inline in RESOURCE_CREATE_BLOB's ``cmd`` on a VIRGL2
context, with the same ``blob_id``.
"""
from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpuhil.devices import debugfs
from gpuhil.devices.dmabuf import Mapping
from gpuhil.errors import IoctlError
from gpuhil.attempts import attempt, errno_name
from gpuhil.patterns import pattern
from gpuhil.devices.virtgpu import (Blob, BlobFlag, BlobMem, Capset, RenderNode,
                            virgl_pipe_resource_create)

PAGE = 4096
#: blobs up to this size get a full pattern; larger ones a stamp every STAMP_STRIDE bytes
FULL_PATTERN_LIMIT = 4 << 20
STAMP_STRIDE = 64 << 10
DEBUGFS = debugfs.DEBUGFS
HOST_MEM = (BlobMem.HOST3D, BlobMem.HOST3D_GUEST)




# --- allocation ---------------------------------------------------------------------------------

def open_node(path: str, blob_mem: int) -> RenderNode:
    """The render node, with a VIRGL2 context when ``blob_mem`` needs a host object."""
    node = RenderNode(path)
    if blob_mem in HOST_MEM:
        node.context_init(capset_id=Capset.VIRGL2, debug_name="gpuhil-blob")
    return node


def create(node: RenderNode, blob_mem: int, size: int, flags: int, blob_id: int = 1,
           hints: int = 0, wait_for_space: float = 0.0) -> Blob:
    """RESOURCE_CREATE_BLOB; HOST3D(_GUEST) with the inline virgl PIPE_RESOURCE_CREATE (a
    persistent, coherent PIPE_BUFFER of ``size`` bytes named ``blob_id``).

    ``wait_for_space``: retry an ENOSPC for that many seconds (hostmem that closed blobs held
    comes back only once the host answered their UNREF)."""
    deadline = time.monotonic() + wait_for_space
    while True:
        try:
            if blob_mem in HOST_MEM:
                cmd = virgl_pipe_resource_create(size, blob_id)
                return node.create_blob(blob_mem, size, flags, blob_id=blob_id, cmd=cmd,
                                        hints=hints)
            return node.create_blob(blob_mem, size, flags)
        except IoctlError as exc:
            if exc.errno != errno.ENOSPC or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


#: how long payloads wait for hostmem that closed blobs still hold
SPACE_WAIT = 10.0


# --- patterns -----------------------------------------------------------------------------------

def _stamp(seed: int, offset: int) -> bytes:
    return struct.pack("<QQ", seed ^ 0x9E3779B97F4A7C15, offset)


def _offsets(size: int) -> list[int]:
    return sorted(set(range(0, size - 16 + 1, STAMP_STRIDE)) | {size - 16})


def fill(view: memoryview, seed: int) -> None:
    """Write the ``seed`` pattern: every byte for small buffers, stamps for large ones."""
    size = len(view)
    if size <= FULL_PATTERN_LIMIT:
        view[:] = pattern(size, seed)
    else:
        for offset in _offsets(size):
            view[offset:offset + 16] = _stamp(seed, offset)


def matches(view: memoryview, seed: int) -> bool:
    """Whether ``view`` holds the ``seed`` pattern written by :func:`fill`."""
    size = len(view)
    if size <= FULL_PATTERN_LIMIT:
        return bytes(view) == pattern(size, seed)
    return all(bytes(view[o:o + 16]) == _stamp(seed, o) for o in _offsets(size))


# --- debugfs ------------------------------------------------------------------------------------

def _debugfs_dri() -> Path | None:
    debugfs.ensure_mounted(DEBUGFS, required=False)
    for entry in sorted((DEBUGFS / "dri").glob("*/virtio-gpu-host-visible-mm")):
        return entry.parent
    return None


@dataclass(frozen=True)
class HostVisible:
    """The guest driver's view of the hostmem window (debugfs)."""

    start: int
    length: int
    used: int
    nodes: tuple[tuple[int, int], ...]  # (start, size) of each allocated range


def host_visible() -> HostVisible | None:
    """The window from ``virtio-gpu-features`` and its allocations from
    ``virtio-gpu-host-visible-mm`` (None without debugfs or without a window).

    Only call it while no mappable HOST3D blob is being freed: Linux 7.2 prints the allocator
    without its lock, and a node removed meanwhile oopses the reader (seen in the lab)."""
    dri = _debugfs_dri()
    if dri is None:
        return None
    start = length = None
    for line in (dri / "virtio-gpu-features").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "host visible region":
            base, _, size = value.strip().partition(" +")
            start, length = int(base, 16), int(size, 16)
    if start is None:
        return None
    used, nodes = 0, []
    for line in (dri / "virtio-gpu-host-visible-mm").read_text().splitlines():
        if line.startswith("total:"):
            used = int(line.split("used")[1].split()[0])
        elif ": " in line and line.strip().endswith("used"):
            span = line.split(":")[0]
            lo, hi = (int(x, 16) for x in span.split("-"))
            nodes.append((lo, hi - lo))
    return HostVisible(start, length, used, tuple(nodes))


def whole_window_fits(path: str, window: int, timeout: float = SPACE_WAIT) -> bool:
    """Whether one mappable HOST3D blob as large as the whole window can be created (waiting
    up to ``timeout`` for hostmem that closed blobs give back): nothing else holds hostmem.
    While it is held the allocator is read too and must show exactly that one blob."""
    with open_node(path, BlobMem.HOST3D) as node:
        try:
            blob = create(node, BlobMem.HOST3D, window, BlobFlag.MAPPABLE, 1, wait_for_space=timeout)
        except IoctlError:
            return False
        with blob:
            state = host_visible()   # safe: no other node can be in the allocator now
            return state is None or (state.used == window and len(state.nodes) == 1)


# --- lifecycle ----------------------------------------------------------------------------------

@dataclass
class Lifecycle:
    """What one create..close cycle of one blob saw."""

    blob_mem: int
    flags: int
    size: int
    info_size: int = -1
    info_blob_mem: int = -1
    res_handle: int = 0
    idle: bool = False
    map_offset: int = -1
    mmap: str = "not tried"          # "ok" or the errno name
    readback: bool = False
    first_page_mmap: str = "not tried"   # a mapping of the first page only
    first_page_matches: bool = False
    oversized_mmap: str = "not tried"    # one page more than the object
    export: str = "not tried"
    dmabuf_size: int = -1
    exporter: str = ""
    dmabuf_mmap: str = "not tried"
    dmabuf_sees_blob: bool = False
    blob_sees_dmabuf: bool = False
    dmabuf_past_end: str = "not tried"   # a dma-buf mapping that runs past its end
    after_close: str = "not tried"   # RESOURCE_INFO on the closed handle




def _dmabuf_checks(out: Lifecycle, buf, view: memoryview | None, seed: int) -> None:
    out.dmabuf_size = buf.size
    out.exporter = buf.fdinfo().exp_name
    try:
        dmap = buf.mmap()
        out.dmabuf_mmap = "ok"
    except IoctlError as exc:
        out.dmabuf_mmap = errno_name(exc)
        return
    with dmap:
        dview = memoryview(dmap)[:out.size]
        if view is not None:
            with buf.cpu_access(read=True, write=False):
                out.dmabuf_sees_blob = matches(dview, seed)
            with buf.cpu_access(read=False, write=True):
                fill(dview, seed + 1)
            out.blob_sees_dmabuf = matches(view, seed + 1)
        dview.release()
    if out.dmabuf_size > PAGE:
        out.dmabuf_past_end = attempt(lambda: buf.mmap(2 * PAGE, out.dmabuf_size - PAGE).close())


def _lifecycle_one(node: RenderNode, blob_mem: int, size: int, flags: int, blob_id: int,
                   seed: int) -> Lifecycle:
    out = Lifecycle(int(blob_mem), int(flags), size)
    blob = create(node, blob_mem, size, flags, blob_id, wait_for_space=SPACE_WAIT)
    try:
        out.idle = blob.wait()
        info = blob.info()
        out.info_size, out.info_blob_mem, out.res_handle = info.size, int(info.blob_mem), info.res_handle
        out.map_offset = blob.map_offset()
        mapping = view = None
        try:
            mapping = blob.mmap()
            out.mmap = "ok"
        except IoctlError as exc:
            out.mmap = errno_name(exc)
        if mapping is not None:
            view = memoryview(mapping)
            fill(view, seed)
            out.readback = matches(view, seed)
            try:
                with blob.mmap(PAGE) as first:
                    out.first_page_mmap = "ok"
                    out.first_page_matches = first.read(0, min(PAGE, size)) == bytes(view[:PAGE])
            except IoctlError as exc:
                out.first_page_mmap = errno_name(exc)
            out.oversized_mmap = attempt(lambda: blob.mmap(info.size + PAGE).close())
        try:
            buf = blob.export()
            out.export = "ok"
        except IoctlError as exc:
            buf = None
            out.export = errno_name(exc)
        if buf is not None:
            with buf:
                _dmabuf_checks(out, buf, view, seed)
        if mapping is not None:
            view.release()
            mapping.close()
    finally:
        handle = blob.bo_handle
        blob.close()
    out.after_close = attempt(lambda: node.resource_info(handle))
    return out


def lifecycles(path: str, blob_mem: int, flags: int, sizes: list[int]) -> list[Lifecycle]:
    """A full lifecycle per size on one context: create, WAIT, RESOURCE_INFO, MAP, mmap +
    pattern, first-page and oversized mmaps, PRIME export, dma-buf mmap both ways under SYNC
    and at an offset, close, INFO on the closed handle."""
    results = []
    with open_node(path, blob_mem) as node:
        for index, size in enumerate(sizes):
            results.append(_lifecycle_one(node, blob_mem, size, flags, index + 1, index + 11))
    return results


def offset_mappings(path: str, blob_mem: int, pages: int = 4) -> dict[str, list[str]]:
    """Fill page i of a mappable blob with byte 0x40+i, then map one page of its dma-buf at
    each page offset and of the GEM object past its start; what each mapping shows first
    (``0x41``...) or the errno name."""
    size = pages * PAGE
    out: dict[str, list[str]] = {"dmabuf": [], "gem": []}
    with open_node(path, blob_mem) as node, \
            create(node, blob_mem, size, BlobFlag.MAPPABLE | BlobFlag.SHAREABLE,
                   wait_for_space=SPACE_WAIT) as blob:
        with blob.mmap() as mapping:
            for page in range(pages):
                mapping.write(bytes([0x40 + page]) * PAGE, page * PAGE)
            with blob.export() as buf:
                for page in range(pages):
                    with buf.mmap(PAGE, page * PAGE) as one:
                        out["dmabuf"].append(hex(one.read8(0)))
            for page in range(1, pages):
                try:
                    with Mapping.map(node.fd, PAGE, blob.map_offset() + page * PAGE) as one:
                        out["gem"].append(hex(one.read8(0)))
                except IoctlError as exc:
                    out["gem"].append(errno_name(exc))
    return out


def create_errno(path: str, blob_mem: int, size: int, flags: int = 0, blob_id: int = 0,
                 cmd: bytes = b"", context: bool = False, hints: int = 0) -> str:
    """The errno name RESOURCE_CREATE_BLOB gives for these raw arguments ("ok" if it works)."""
    with RenderNode(path) as node:
        if context:
            node.context_init(capset_id=Capset.VIRGL2)
        try:
            node.create_blob(blob_mem, size, flags, blob_id=blob_id, cmd=cmd, hints=hints).close()
            return "ok"
        except IoctlError as exc:
            return errno_name(exc)


def window_probe(path: str) -> dict:
    """The guest driver's hostmem window (debugfs) and GETPARAM(HOST_VISIBLE)."""
    from gpuhil.devices.virtgpu import Param

    window = host_visible()
    with RenderNode(path) as node:
        visible = node.getparam(Param.HOST_VISIBLE)
    return {"host_visible": visible, "start": window.start if window else None,
            "length": window.length if window else None}


# --- stress -------------------------------------------------------------------------------------

def meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value.split()[0])
    return out


@dataclass
class CycleStats:
    """Before/after numbers of a batch of create..close cycles."""

    cycles: int
    failures: list[str] = field(default_factory=list)
    fds_before: int = 0
    fds_after: int = 0
    shmem_kib_before: int = 0
    shmem_kib_after: int = 0
    available_kib_before: int = 0
    available_kib_after: int = 0
    res_handles: tuple[int, int] = (0, 0)   # first and last resource id handed out
    seconds: float = 0.0


def cycles(path: str, blob_mem: int, size: int, count: int) -> CycleStats:
    """``count`` create, map, mmap + touch, export, dma-buf mmap, close cycles on one context."""
    stats = CycleStats(count)
    flags = BlobFlag.MAPPABLE | BlobFlag.SHAREABLE
    with open_node(path, blob_mem) as node:
        # one warm-up cycle so first-use allocations (context, caches) are not counted as growth
        _one_cycle(node, blob_mem, size, flags, 1)
        before = meminfo()
        stats.fds_before = len(os.listdir("/proc/self/fd"))
        stats.shmem_kib_before, stats.available_kib_before = before["Shmem"], before["MemAvailable"]
        started = time.monotonic()
        first = last = 0
        for i in range(count):
            try:
                res = _one_cycle(node, blob_mem, size, flags, i + 2)
                first, last = first or res, res
            except (IoctlError, AssertionError) as exc:
                stats.failures.append(f"cycle {i}: {exc}")
                if len(stats.failures) > 3:
                    break
        stats.seconds = time.monotonic() - started
        stats.res_handles = (first, last)
    after = meminfo()
    stats.fds_after = len(os.listdir("/proc/self/fd"))
    stats.shmem_kib_after, stats.available_kib_after = after["Shmem"], after["MemAvailable"]
    return stats


def _one_cycle(node: RenderNode, blob_mem: int, size: int, flags: int, blob_id: int) -> int:
    with create(node, blob_mem, size, flags, blob_id, wait_for_space=SPACE_WAIT) as blob:
        with blob.mmap() as mapping:
            mapping.write64(0, blob_id)
            mapping.write64(size - 8, blob_id)
            with blob.export() as buf, buf.mmap() as dmap:
                with buf.cpu_access(read=True, write=False):
                    if dmap.read64(size - 8) != blob_id:
                        raise AssertionError(f"dma-buf of blob {blob_id} does not see its write")
        return blob.res_handle


@dataclass
class FillResult:
    """Filling the hostmem window with mappable HOST3D blobs, then recovering."""

    chunk: int
    created: int = 0
    error: str = ""                  # errno of the first create that did not fit
    used_when_full: int = -1         # debugfs, read while full (no free can be in flight)
    readback_all: bool = False
    after_free_one: str = ""         # create of one chunk after freeing one
    same_ranges_again: bool = False  # the new blob filled exactly the hole the freed one left


def fill_window(path: str, window: int, parts: int = 8) -> FillResult:
    """Create window/parts-sized mappable HOST3D blobs until creation fails; free one in the
    middle and allocate again (it must get the hole back)."""
    chunk = window // parts
    out = FillResult(chunk)
    with open_node(path, BlobMem.HOST3D) as node:
        blobs: list[Blob] = []
        maps = []
        try:
            # the first one may wait for hostmem that earlier tests' blobs still hold
            blobs.append(create(node, BlobMem.HOST3D, chunk, BlobFlag.MAPPABLE, 1,
                                wait_for_space=SPACE_WAIT))
            for i in range(1, parts + 2):
                try:
                    blobs.append(create(node, BlobMem.HOST3D, chunk, BlobFlag.MAPPABLE, i + 1))
                except IoctlError as exc:
                    out.error = errno_name(exc)
                    break
            out.created = len(blobs)
            full = host_visible()
            out.used_when_full = full.used if full else -1
            for i, blob in enumerate(blobs):
                mapping = blob.mmap()
                maps.append(mapping)
                mapping.write64(0, i + 1)
                mapping.write64(chunk - 8, i + 1)
            out.readback_all = all(m.read64(0) == i + 1 and m.read64(chunk - 8) == i + 1
                                   for i, m in enumerate(maps))
            middle = len(blobs) // 2
            maps.pop(middle).close()
            blobs.pop(middle).close()
            try:
                blobs.append(create(node, BlobMem.HOST3D, chunk, BlobFlag.MAPPABLE, parts + 10,
                                    wait_for_space=SPACE_WAIT))
                out.after_free_one = "ok"
                again = host_visible()   # full again: the freed node is gone
                out.same_ranges_again = full is not None and again is not None \
                    and sorted(again.nodes) == sorted(full.nodes)
            except IoctlError as exc:
                out.after_free_one = errno_name(exc)
        finally:
            for mapping in maps:
                mapping.close()
            for blob in blobs:
                blob.close()
    return out


# --- closing while mapped (state kept in the agent between calls) -------------------------------

_held: dict[str, object] = {}


def map_and_close(path: str, blob_mem: int, size: int) -> dict:
    """Create and mmap a blob, write a pattern, then GEM_CLOSE it and close the render node
    while the mapping stays; the mapping is kept for :func:`use_and_unmap`."""
    node = open_node(path, blob_mem)
    blob = create(node, blob_mem, size, BlobFlag.MAPPABLE, 7, wait_for_space=SPACE_WAIT)
    blob.wait()
    mapping = blob.mmap()
    mapping.write(pattern(size, 5), 0)
    res = blob.res_handle
    blob.close()
    node.close()
    _held["mapping"] = mapping
    return {"res_handle": res}


def use_and_unmap(size: int) -> dict:
    """Read and write the mapping kept by :func:`map_and_close`, then munmap it."""
    mapping = _held.pop("mapping")
    out = {"still_there": mapping.read(0, size) == pattern(size, 5)}
    mapping.write(b"after-close", 0)
    out["writable"] = mapping.read(0, 11) == b"after-close"
    mapping.close()
    return out


# --- several contexts ---------------------------------------------------------------------------

def several_contexts(path: str, contexts: int, size: int) -> dict:
    """``contexts`` render-node fds, each with its own VIRGL2 context, each making a mappable
    HOST3D and a GUEST blob at once; every blob keeps its own bytes, PRIME moves one between
    contexts, and closing one context leaves the others' blobs intact."""
    nodes = [open_node(path, BlobMem.HOST3D) for _ in range(contexts)]
    blobs, maps = [], []
    out: dict = {}
    try:
        for i, node in enumerate(nodes):
            for j, mem in enumerate((BlobMem.HOST3D, BlobMem.GUEST)):
                blob = create(node, mem, size, BlobFlag.MAPPABLE | BlobFlag.SHAREABLE, 1,
                              wait_for_space=SPACE_WAIT)
                mapping = blob.mmap()
                fill(memoryview(mapping), i * 2 + j)
                blobs.append(blob)
                maps.append(mapping)
        out["res_handles"] = [b.res_handle for b in blobs]
        out["each_keeps_its_bytes"] = all(matches(memoryview(m), k) for k, m in enumerate(maps))
        with blobs[0].export() as buf:
            imported = nodes[-1].import_dmabuf(buf)
            out["import_res_handle"] = imported.res_handle
            with imported.mmap() as other:
                out["import_sees_bytes"] = matches(memoryview(other), 0)
            imported.close()
        for mapping in maps[:2]:
            mapping.close()
        nodes[0].close()
        out["others_intact"] = all(matches(memoryview(m), k + 2) for k, m in enumerate(maps[2:]))
    finally:
        for mapping in maps:
            mapping.close()
        for node in nodes:
            node.close()
    return out


# --- reboot with blobs mapped -------------------------------------------------------------------

HOLDER_READY = "gpuhil-blob-holder-ready"


def hold_mapped_blobs(path: str, count: int, size: int, reboot_after: float) -> dict:
    """Start a process that creates ``count`` mappable HOST3D blobs, mmaps and writes them and
    then reboots the guest (sysrq 'b') ``reboot_after`` seconds later while they are mapped;
    returns the ids and hostmem offsets it got."""
    code = ("import sys; from suites.blob.payloads import holder_main; "
            "holder_main(*sys.argv[1:])")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.Popen([sys.executable, "-c", code, path, str(count), str(size),
                             str(reboot_after)], stdout=subprocess.PIPE, env=env,
                            start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith(HOLDER_READY):
        proc.kill()
        raise RuntimeError(f"the blob holder failed: {line!r} (rc={proc.wait()})")
    return json.loads(line[len(HOLDER_READY):])


def holder_main(path: str, count: str, size: str, reboot_after: str) -> None:
    """The holder process of :func:`hold_mapped_blobs` (never returns: the guest reboots)."""
    n, nbytes = int(count), int(size)
    node = open_node(path, BlobMem.HOST3D)
    blobs = [create(node, BlobMem.HOST3D, nbytes, BlobFlag.MAPPABLE, i + 1, wait_for_space=SPACE_WAIT)
             for i in range(n)]
    maps = [b.mmap() for b in blobs]
    for i, mapping in enumerate(maps):
        mapping.write(pattern(nbytes, i), 0)
    window = host_visible()   # the guest is fresh: no blob is being freed
    info = {"res_handles": [b.res_handle for b in blobs],
            "map_offsets": [b.map_offset() for b in blobs],
            "ranges": sorted(window.nodes) if window else [],
            "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip()}
    sys.stdout.write(HOLDER_READY + json.dumps(info) + "\n")
    sys.stdout.flush()
    time.sleep(float(reboot_after))
    os.sync()
    with open("/proc/sysrq-trigger", "w") as trigger:
        trigger.write("b")
    time.sleep(60)


def remap_after_reboot(path: str, count: int, size: int) -> dict:
    """In the fresh guest: the same blob ids, sizes and flags again; their ids, map offsets and
    hostmem ranges, and whether fresh patterns read back."""
    node = open_node(path, BlobMem.HOST3D)
    blobs = [create(node, BlobMem.HOST3D, size, BlobFlag.MAPPABLE, i + 1, wait_for_space=SPACE_WAIT)
             for i in range(count)]
    out: dict = {"boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip()}
    try:
        out["res_handles"] = [b.res_handle for b in blobs]
        out["map_offsets"] = [b.map_offset() for b in blobs]
        window = host_visible()   # a fresh boot: no blob is being freed
        out["ranges"] = sorted(window.nodes) if window else []
        ok = []
        for i, blob in enumerate(blobs):
            with blob.mmap() as mapping:
                mapping.write(pattern(size, i + 100), 0)
                ok.append(mapping.read(0, size) == pattern(size, i + 100))
        out["readback"] = ok
    finally:
        for blob in blobs:
            blob.close()
        node.close()
    return out


def write_kmsg(line: str) -> None:
    """Write ``line`` to the kernel log (carries the report's test markers into a fresh boot)."""
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, line.encode() + b"\n")
    finally:
        os.close(fd)
