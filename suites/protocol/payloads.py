"""Guest payloads of the protocol suite.

Each function takes the PCI address of the virtio-gpu function bound to vfio-pci (the ``raw_gpu``
fixture passes it first), drives the device through :class:`gpuhil.raw.rawgpu.RawGpu`, and returns
plain data: response types as ``CtrlType`` names (``"RESP_OK_NODATA"``, gpuhil.protocol's
``ctrl_name``), fields as ints and tuples.  The host side asserts.  HOST3D blobs come from
:mod:`gpuhil.raw.host3d`; a command that prepares a case and is refused raises its
``CommandRefused``.  Only the standard library and gpuhil are imported.
"""
from __future__ import annotations

from typing import Callable

from gpuhil import protocol as P
from gpuhil.raw import host3d
from gpuhil.raw.driver import UNWRITTEN, response_name as raw_kind
from gpuhil.raw.host3d import CommandRefused, expect, map_blob
from gpuhil.patterns import pattern

#: resource and context ids the suite uses (each payload starts from a freshly reset device)
RID = 0x100
CTX = 0x10
BLOB_SIZE = 64 * 1024
FB_WIDTH = FB_HEIGHT = 64
TIMEOUT = "TIMEOUT"
#: bytes reserved for any response (the largest is OK_EDID, 1048 bytes)
RESPONSE_MAX = 4096
#: seconds a command the suite expects may hang gets (normal ones take a millisecond)
HANG_TIMEOUT = 3.0


def kind(resp: P.Message) -> str:
    """The CtrlType name of a decoded response."""
    return P.ctrl_name(resp)


def _open(address: str, queue_size: int = 64):
    from gpuhil.raw.rawgpu import RawGpu

    return RawGpu.open(address, queue_size=queue_size)


def _timeout_type() -> type[BaseException]:
    from gpuhil.raw.rawgpu import RawTimeout

    return RawTimeout


def _missing_type() -> type[BaseException]:
    from gpuhil.raw.rawgpu import MissingResponse

    return MissingResponse


def virgl_context(gpu, ctx: int) -> int:
    """The suite's virgl context ``ctx`` (gpuhil.raw.host3d.virgl_context)."""
    return host3d.virgl_context(gpu, ctx, b"gpuhil-protocol")


def host3d_blob(gpu, rid: int, ctx: int, blob_id: int, size: int = BLOB_SIZE) -> P.Message:
    """A mappable, shareable HOST3D blob of BLOB_SIZE (gpuhil.raw.host3d.host3d_blob)."""
    return host3d.host3d_blob(gpu, rid, ctx, blob_id, size)


# ---- conformance ------------------------------------------------------------------------------

def device_queries(address: str) -> dict:
    """Config space, features, GET_DISPLAY_INFO, GET_EDID per scanout and GET_CAPSET_INFO /
    GET_CAPSET for every capset index (and one index past the end)."""
    out: dict = {}
    with _open(address) as gpu:
        cfg = gpu.config
        out["features"] = gpu.features.negotiated
        out["num_scanouts"] = cfg.num_scanouts
        out["num_capsets"] = cfg.num_capsets
        out["hostmem_size"] = len(gpu.hostmem) if gpu.features.has(P.Feature.RESOURCE_BLOB) \
            else 0
        display = gpu.submit(P.GetDisplayInfo())
        out["display"] = (kind(display), [
            (m.r.x, m.r.y, m.r.width, m.r.height, m.enabled, m.flags)
            for m in getattr(display, "pmodes", ())])
        out["edid"] = {}
        if gpu.features.has(P.Feature.EDID):
            for scanout in range(cfg.num_scanouts):
                edid = gpu.submit(P.GetEdid(scanout))
                out["edid"][scanout] = (kind(edid), bytes(getattr(edid, "edid", b"")))
        out["capsets"] = []
        for index in range(cfg.num_capsets + 1):
            info = gpu.submit(P.GetCapsetInfo(index))
            entry = {"index": index, "info": kind(info),
                     "id": getattr(info, "capset_id", None),
                     "max_version": getattr(info, "capset_max_version", None),
                     "max_size": getattr(info, "capset_max_size", None)}
            if index < cfg.num_capsets and entry["info"] == "RESP_OK_CAPSET_INFO":
                caps = gpu.submit(P.GetCapset(entry["id"], entry["max_version"]))
                entry["capset"] = kind(caps)
                entry["data"] = bytes(getattr(caps, "capset_data", b""))
            out["capsets"].append(entry)
    return out


def resource_2d_lifecycle(address: str) -> list[tuple[str, str]]:
    """A 64x64 XRGB resource through CREATE_2D, ATTACH_BACKING, TRANSFER_TO_HOST_2D,
    SET_SCANOUT, RESOURCE_FLUSH, SET_SCANOUT(0), DETACH_BACKING, UNREF: (command, response)."""
    size = FB_WIDTH * FB_HEIGHT * 4
    rect = P.Rect(0, 0, FB_WIDTH, FB_HEIGHT)
    steps: list[tuple[str, str]] = []
    with _open(address) as gpu, gpu.dma(size) as backing:
        backing.memory.write(pattern(size, 1), 0)
        for cmd in (P.ResourceCreate2D(RID, P.Format.B8G8R8X8_UNORM, FB_WIDTH, FB_HEIGHT),
                    P.ResourceAttachBacking(RID, (P.MemEntry(backing.iova, size),)),
                    P.TransferToHost2D(rect, 0, RID),
                    P.SetScanout(rect, 0, RID),
                    P.ResourceFlush(rect, RID),
                    P.SetScanout(P.Rect(), 0, 0),
                    P.ResourceDetachBacking(RID),
                    P.ResourceUnref(RID)):
            steps.append((type(cmd).__name__, kind(gpu.submit(cmd))))
    return steps


def context_lifecycle(address: str, context_inits: list[int]) -> dict[int, list[tuple[str, str]]]:
    """For each context_init value: CTX_CREATE, CTX_ATTACH_RESOURCE, SUBMIT_3D (empty),
    fenced SUBMIT_3D (response hdr flags and fence_id recorded), CTX_DETACH_RESOURCE,
    CTX_DESTROY, on one 2D resource."""
    out: dict[int, list[tuple[str, str]]] = {}
    with _open(address) as gpu:
        expect(gpu, P.ResourceCreate2D(RID, P.Format.B8G8R8X8_UNORM, FB_WIDTH, FB_HEIGHT))
        for n, init in enumerate(context_inits):
            ctx = CTX + n
            hdr = P.CtrlHdr(ctx_id=ctx)
            steps = []
            for cmd in (P.CtxCreate(b"gpuhil-protocol", init, hdr=hdr),
                        P.CtxAttachResource(RID, hdr=hdr),
                        P.Submit3D(b"", hdr=hdr)):
                steps.append((type(cmd).__name__, kind(gpu.submit(cmd))))
            fenced = gpu.submit(P.Submit3D(b"", hdr=P.CtrlHdr.fenced(1000 + n, ctx)))
            steps.append(("Submit3D(fenced)", f"{kind(fenced)} flags={fenced.hdr.flags:#x} "
                                              f"fence_id={fenced.hdr.fence_id}"))
            for cmd in (P.CtxDetachResource(RID, hdr=hdr), P.CtxDestroy(hdr=hdr)):
                steps.append((type(cmd).__name__, kind(gpu.submit(cmd))))
            out[init] = steps
        expect(gpu, P.ResourceUnref(RID))
    return out


def cursor_queue(address: str) -> dict:
    """UPDATE_CURSOR with a 64x64 cursor resource, MOVE_CURSOR, UPDATE_CURSOR hiding it: what
    the cursor queue gives back for each, then a control command still works."""
    out: dict = {}
    size = 64 * 64 * 4
    with _open(address) as gpu, gpu.dma(size) as backing:
        expect(gpu, P.ResourceCreate2D(RID, P.Format.B8G8R8A8_UNORM, 64, 64))
        expect(gpu, P.ResourceAttachBacking(RID, (P.MemEntry(backing.iova, size),)))
        expect(gpu, P.TransferToHost2D(P.Rect(0, 0, 64, 64), 0, RID))
        out["cursor"] = [
            gpu.submit_cursor(P.UpdateCursor(P.CursorPos(0, 10, 20), RID, 1, 2)),
            gpu.submit_cursor(P.MoveCursor(P.CursorPos(0, 30, 40))),
            gpu.submit_cursor(P.UpdateCursor(P.CursorPos(0, 30, 40), 0)),
        ]
        out["control_after"] = kind(gpu.submit(P.GetDisplayInfo()))
        expect(gpu, P.ResourceUnref(RID))
    return out


def expect_blob(resp: P.Message) -> None:
    """CommandRefused unless a HOST3D CREATE_BLOB answered OK_NODATA."""
    if kind(resp) != "RESP_OK_NODATA":
        raise CommandRefused("HOST3D ResourceCreateBlob", kind(resp), "RESP_OK_NODATA")


# ---- errors -----------------------------------------------------------------------------------

def _create_2d(gpu, rid: int = RID) -> None:
    expect(gpu, P.ResourceCreate2D(rid, P.Format.B8G8R8X8_UNORM, FB_WIDTH, FB_HEIGHT))


def _case_blob(gpu) -> int:
    virgl_context(gpu, CTX)
    resp = host3d_blob(gpu, RID, CTX, blob_id=1)
    expect_blob(resp)
    return RID


def _truncated(cmd: P.Message, keep: int) -> bytes:
    return P.encode(cmd)[:keep]


#: name -> what the case submits: a Message, or raw bytes (submitted with submit_raw); each
#: function may prepare state first (resources and contexts are all gone after the reset that
#: ends every payload)
ERROR_CASES: dict[str, Callable] = {
    "unknown_command": lambda g: P.RawMessage(0x01FF),
    "unref_unknown_resource": lambda g: P.ResourceUnref(0xDEAD),
    "create_2d_resource_id_zero":
        lambda g: P.ResourceCreate2D(0, P.Format.B8G8R8X8_UNORM, 16, 16),
    "create_2d_duplicate_id":
        lambda g: (_create_2d(g.gpu), P.ResourceCreate2D(RID, P.Format.B8G8R8X8_UNORM, 16, 16))[1],
    "attach_backing_unknown_resource":
        lambda g: P.ResourceAttachBacking(0xDEAD, (P.MemEntry(g.scratch_iova, 4096),)),
    "attach_backing_too_many_entries":
        lambda g: (_create_2d(g.gpu), P.ResourceAttachBacking(RID, (), nr_entries=16385))[1],
    "attach_backing_entries_missing":
        lambda g: (_create_2d(g.gpu), P.ResourceAttachBacking(RID, (), nr_entries=4))[1],
    "attach_backing_unmapped_iova":
        lambda g: (_create_2d(g.gpu), P.ResourceAttachBacking(
            RID, (P.MemEntry(0x7F_0000_0000, 4096),)))[1],
    "detach_backing_unknown_resource": lambda g: P.ResourceDetachBacking(0xDEAD),
    "transfer_2d_unknown_resource":
        lambda g: P.TransferToHost2D(P.Rect(0, 0, 16, 16), 0, 0xDEAD),
    "flush_unknown_resource": lambda g: P.ResourceFlush(P.Rect(0, 0, 16, 16), 0xDEAD),
    "set_scanout_bad_scanout_id":
        lambda g: (_create_2d(g.gpu), P.SetScanout(P.Rect(0, 0, 64, 64), P.MAX_SCANOUTS, RID))[1],
    "set_scanout_unknown_resource":
        lambda g: P.SetScanout(P.Rect(0, 0, 64, 64), 0, 0xDEAD),
    "set_scanout_rect_outside_resource":
        lambda g: (_create_2d(g.gpu), P.SetScanout(P.Rect(32, 32, 64, 64), 0, RID))[1],
    "get_edid_bad_scanout": lambda g: P.GetEdid(P.MAX_SCANOUTS),
    "get_capset_unknown_id": lambda g: P.GetCapset(0x7F, 0),
    "ctx_destroy_unknown_context": lambda g: P.CtxDestroy(hdr=P.CtrlHdr(ctx_id=0xDEAD)),
    "ctx_attach_unknown_context":
        lambda g: (_create_2d(g.gpu), P.CtxAttachResource(RID, hdr=P.CtrlHdr(ctx_id=0xDEAD)))[1],
    "ctx_create_unknown_capset":
        lambda g: P.CtxCreate(b"bad", 0x7F, hdr=P.CtrlHdr(ctx_id=CTX)),
    "submit_3d_unknown_context": lambda g: P.Submit3D(b"", hdr=P.CtrlHdr(ctx_id=0xDEAD)),
    "submit_3d_size_mismatch":
        lambda g: (virgl_context(g.gpu, CTX),
                   P.Submit3D(b"", size=64, hdr=P.CtrlHdr(ctx_id=CTX)))[1],
    "submit_3d_too_large":
        lambda g: (virgl_context(g.gpu, CTX),
                   P.Submit3D(b"", size=0x1000_0000, hdr=P.CtrlHdr(ctx_id=CTX)))[1],
    "create_blob_resource_id_zero":
        lambda g: P.ResourceCreateBlob(0, P.BlobMem.GUEST, 0, 0, 4096,
                                       (P.MemEntry(g.scratch_iova, 4096),)),
    "create_blob_duplicate_id":
        lambda g: (_create_2d(g.gpu), P.ResourceCreateBlob(RID, P.BlobMem.GUEST, 0, 0, 4096,
                                                       (P.MemEntry(g.scratch_iova, 4096),)))[1],
    "create_blob_bad_blob_mem": lambda g: P.ResourceCreateBlob(RID, 0x7F, 0, 0, 4096),
    "create_blob_unknown_blob_id":
        lambda g: (virgl_context(g.gpu, CTX),
                   P.ResourceCreateBlob(RID, P.BlobMem.HOST3D, int(P.BlobFlag.MAPPABLE), 0x7777,
                                        4096, hdr=P.CtrlHdr(ctx_id=CTX)))[1],
    "map_blob_unknown_resource": lambda g: P.ResourceMapBlob(0xDEAD, 0),
    "map_blob_not_a_blob": lambda g: (_create_2d(g.gpu), P.ResourceMapBlob(RID, 0))[1],
    "map_blob_offset_past_hostmem":
        lambda g: (_case_blob(g.gpu), P.ResourceMapBlob(RID, len(g.gpu.hostmem)))[1],
    "map_blob_offset_wraps":
        lambda g: (_case_blob(g.gpu), P.ResourceMapBlob(RID, (1 << 64) - 4096))[1],
    "unmap_blob_unknown_resource": lambda g: P.ResourceUnmapBlob(0xDEAD),
    "truncated_create_2d":
        lambda g: _truncated(P.ResourceCreate2D(RID, P.Format.B8G8R8X8_UNORM, 16, 16), 28),
    "truncated_unref": lambda g: _truncated(P.ResourceUnref(RID), 24),
    "header_only_8_bytes": lambda g: _truncated(P.GetDisplayInfo(), 8),
    # GET_DISPLAY_INFO and the other commands with a data response are answered at once even
    # when fenced; a fence waits only on commands answered with OK_NODATA, such as SUBMIT_3D
    "fenced_ring_idx_unknown_context":
        lambda g: P.Submit3D(b"", hdr=P.CtrlHdr.fenced(7, 0xDEAD, ring_idx=0)),
    "fenced_fence_id_above_32_bits":
        lambda g: P.Submit3D(b"", hdr=P.CtrlHdr.fenced((1 << 32) + 5)),
}


class _CaseEnv:
    """What a case's builder may use: the device and a DMA page it may point entries at."""

    def __init__(self, gpu, scratch) -> None:
        self.gpu = gpu
        self.scratch_iova = scratch.iova


def error_case(address: str, case: str) -> dict:
    """Submit ERROR_CASES[case]; then GET_DISPLAY_INFO (the device still answers) and a 2D
    resource create+unref under a fresh id (it still creates): their response types.  A hang
    is reported as TIMEOUT and the device is reset before the follow-up."""
    out: dict = {"case": case}
    timeout, missing = _timeout_type(), _missing_type()
    with _open(address) as gpu, gpu.dma(4096) as scratch:
        request = ERROR_CASES[case](_CaseEnv(gpu, scratch))
        try:
            if isinstance(request, bytes):
                out["response"] = raw_kind(gpu.submit_raw(request, RESPONSE_MAX,
                                                          timeout=HANG_TIMEOUT))
            else:
                out["response"] = kind(gpu.submit(request, timeout=HANG_TIMEOUT))
        except missing as exc:
            out["response"] = UNWRITTEN
            out["missing"] = str(exc)
        except timeout as exc:
            out["response"] = TIMEOUT
            out["timeout"] = str(exc)
            gpu.reset()
        out["display_after"] = kind(gpu.submit(P.GetDisplayInfo()))
        fresh = RID + 0x80
        out["create_after"] = kind(gpu.submit(
            P.ResourceCreate2D(fresh, P.Format.B8G8R8X8_UNORM, 16, 16)))
        out["unref_after"] = kind(gpu.submit(P.ResourceUnref(fresh)))
    return out


# ---- blob lifecycle ---------------------------------------------------------------------------

def blob_lifecycle(address: str, offsets: tuple[int, int]) -> dict:
    """HOST3D blob: map at offsets[0], write a pattern through the hostmem window, read it back;
    unmap; map at offsets[1] and read the same pattern; unmap; unref; then the same resource id
    and offsets[0] again for a new blob (create, map, write, read, unmap, unref)."""
    first, second = offsets
    out: dict = {"steps": []}
    step = out["steps"].append
    with _open(address) as gpu:
        hostmem = gpu.hostmem
        init = virgl_context(gpu, CTX)
        out["context_init"] = init
        step(("create", kind(host3d_blob(gpu, RID, CTX, blob_id=1))))
        step(("attach", kind(gpu.submit(P.CtxAttachResource(RID, hdr=P.CtrlHdr(ctx_id=CTX))))))
        resp = map_blob(gpu, RID, first)
        step(("map@first", kind(resp)))
        out["map_cache"] = resp.cache if kind(resp) == "RESP_OK_MAP_INFO" else None
        data = pattern(BLOB_SIZE, 5)
        hostmem.write(data, first)
        out["readback_first"] = hostmem.read(first, BLOB_SIZE) == data
        step(("unmap", kind(gpu.submit(P.ResourceUnmapBlob(RID)))))
        step(("map@second", kind(map_blob(gpu, RID, second))))
        out["persisted_second"] = hostmem.read(second, BLOB_SIZE) == data
        step(("unmap", kind(gpu.submit(P.ResourceUnmapBlob(RID)))))
        step(("unref", kind(gpu.submit(P.ResourceUnref(RID)))))
        step(("unref_again", kind(gpu.submit(P.ResourceUnref(RID)))))
        # the same id and offset for a new blob
        step(("create_reused_id", kind(host3d_blob(gpu, RID, CTX, blob_id=2))))
        step(("map@first_again", kind(map_blob(gpu, RID, first))))
        other = pattern(BLOB_SIZE, 9)
        hostmem.write(other, first)
        out["readback_reused"] = hostmem.read(first, BLOB_SIZE) == other
        step(("unmap", kind(gpu.submit(P.ResourceUnmapBlob(RID)))))
        step(("unref", kind(gpu.submit(P.ResourceUnref(RID)))))
        step(("ctx_destroy", kind(gpu.submit(P.CtxDestroy(hdr=P.CtrlHdr(ctx_id=CTX))))))
    return out


def blob_map_twice_and_unref_mapped(address: str) -> dict:
    """A second MAP_BLOB of a mapped blob, UNMAP of an unmapped blob, UNREF of a mapped blob
    (implicit unmap) and the id's reuse afterwards."""
    out: dict = {}
    with _open(address) as gpu:
        hostmem = gpu.hostmem
        virgl_context(gpu, CTX)
        expect_blob(host3d_blob(gpu, RID, CTX, blob_id=1))
        out["map"] = kind(map_blob(gpu, RID, 0))
        hostmem.write(b"gpuhil-map-twice", 0)
        out["map_again"] = kind(map_blob(gpu, RID, 2 * BLOB_SIZE))
        out["first_mapping_intact"] = hostmem.read(0, 16) == b"gpuhil-map-twice"
        out["unmap"] = kind(gpu.submit(P.ResourceUnmapBlob(RID)))
        out["unmap_again"] = kind(gpu.submit(P.ResourceUnmapBlob(RID)))
        out["map_after_unmap"] = kind(map_blob(gpu, RID, 0))
        out["unref_mapped"] = kind(gpu.submit(P.ResourceUnref(RID)))
        out["display_after_unref"] = kind(gpu.submit(P.GetDisplayInfo()))
        out["create_same_id"] = kind(host3d_blob(gpu, RID, CTX, blob_id=2))
        out["map_same_offset"] = kind(map_blob(gpu, RID, 0))
        out["unref"] = kind(gpu.submit(P.ResourceUnref(RID)))
    return out


def unmap_ordering(address: str, fenced: bool) -> dict:
    """Map a blob, then submit [UNMAP_BLOB, GET_DISPLAY_INFO, RESOURCE_CREATE_2D, GET_CAPSET_INFO,
    RESOURCE_UNREF(2D)] in one batch (UNMAP fenced when ``fenced``): each response type and the
    order the device completed them in; then whether the blob can be mapped again."""
    out: dict = {}
    with _open(address) as gpu:
        virgl_context(gpu, CTX)
        expect_blob(host3d_blob(gpu, RID, CTX, blob_id=1))
        expect(gpu, P.ResourceMapBlob(RID, 0), P.CtrlType.RESP_OK_MAP_INFO)
        unmap_hdr = P.CtrlHdr.fenced(50, CTX) if fenced else P.CtrlHdr()
        batch = [P.ResourceUnmapBlob(RID, hdr=unmap_hdr),
                 P.GetDisplayInfo(),
                 P.ResourceCreate2D(RID + 1, P.Format.B8G8R8X8_UNORM, 16, 16),
                 P.GetCapsetInfo(0),
                 P.ResourceUnref(RID + 1)]
        try:
            out["responses"], out["completion_order"] = _completion_order(gpu, batch)
        except _timeout_type() as exc:
            out["responses"], out["completion_order"] = TIMEOUT, str(exc)
            gpu.reset()
            return out
        out["map_again"] = kind(map_blob(gpu, RID, 0))
        out["unmap_again"] = kind(gpu.submit(P.ResourceUnmapBlob(RID)))
        out["unref"] = kind(gpu.submit(P.ResourceUnref(RID)))
    return out


def completion_order(completions) -> list[int]:
    """The indices of a batch's completions in the order the device completed them (its used
    ring order; ``[0, 1, ...]`` when that is the submission order)."""
    return sorted(range(len(completions)), key=lambda i: completions[i].order)


def _completion_order(gpu, batch: list[P.Message]) -> tuple[list[str], list[int]]:
    """The batch with one notify: each response type, and :func:`completion_order`."""
    completions = gpu.transact([P.encode(c) for c in batch],
                               [gpu.response_size(c) for c in batch], timeout=HANG_TIMEOUT)
    return [raw_kind(c.response) for c in completions], completion_order(completions)


# ---- reset ------------------------------------------------------------------------------------

def reset_with_blobs_mapped(address: str) -> dict:
    """Two blobs mapped (one written), a 2D resource and a context; device reset; then: the
    device answers, the old ids are gone, the same ids, offsets and context id work again."""
    out: dict = {}
    with _open(address) as gpu:
        hostmem = gpu.hostmem
        virgl_context(gpu, CTX)
        for n, offset in enumerate((0, 4 * BLOB_SIZE)):
            expect_blob(host3d_blob(gpu, RID + n, CTX, blob_id=n + 1))
            expect(gpu, P.ResourceMapBlob(RID + n, offset), P.CtrlType.RESP_OK_MAP_INFO)
        hostmem.write(pattern(BLOB_SIZE, 3), 0)
        _create_2d(gpu, RID + 2)
        if not reset_and_answer(gpu, out):
            return out
        out["unref_old"] = [kind(gpu.submit(P.ResourceUnref(RID + n))) for n in range(3)]
        out.update(reuse_after_reset(gpu))
    return out


def reset_and_answer(gpu, out: dict) -> bool:
    """Reset the device, then GET_DISPLAY_INFO: its response in ``out["display"]``, or TIMEOUT
    (and ``out["timeout"]``) when the device does not answer any more; whether it answered."""
    gpu.reset()
    try:
        out["display"] = kind(gpu.submit(P.GetDisplayInfo(), timeout=HANG_TIMEOUT))
    except _timeout_type() as exc:
        out["display"], out["timeout"] = TIMEOUT, str(exc)
        return False
    return True


def reuse_after_reset(gpu) -> dict:
    """After a reset: context CTX, a HOST3D blob RID mapped at offset 0, written and read back
    through the window, unmapped and unreferenced (the same ids and offset as before it)."""
    out = {"ctx_create_same_id": kind(gpu.submit(
        P.CtxCreate(b"gpuhil-again", 0, hdr=P.CtrlHdr(ctx_id=CTX))))}
    out["blob_same_id"] = kind(host3d_blob(gpu, RID, CTX, blob_id=1))
    out["map_same_offset"] = kind(map_blob(gpu, RID, 0))
    data = pattern(BLOB_SIZE, 11)
    gpu.hostmem.write(data, 0)
    out["readback"] = gpu.hostmem.read(0, BLOB_SIZE) == data
    out["unmap"] = kind(gpu.submit(P.ResourceUnmapBlob(RID)))
    out["unref"] = kind(gpu.submit(P.ResourceUnref(RID)))
    return out


def reset_while_pending(address: str) -> dict:
    """A command the device leaves pending (a fenced SUBMIT_3D on the timeline of a
    context that does not exist, see ERROR_CASES), then device reset; then the device answers
    and creates again."""
    out: dict = {}
    timeout = _timeout_type()
    with _open(address) as gpu:
        _create_2d(gpu)
        try:
            out["pending"] = kind(gpu.submit(
                P.Submit3D(b"", hdr=P.CtrlHdr.fenced(7, 0xDEAD, ring_idx=0)),
                timeout=HANG_TIMEOUT))
        except timeout:
            out["pending"] = TIMEOUT
        gpu.reset()
        out["display"] = kind(gpu.submit(P.GetDisplayInfo()))
        out["unref_old"] = kind(gpu.submit(P.ResourceUnref(RID)))
        out["create"] = kind(gpu.submit(
            P.ResourceCreate2D(RID, P.Format.B8G8R8X8_UNORM, 16, 16)))
        out["unref"] = kind(gpu.submit(P.ResourceUnref(RID)))
    return out
