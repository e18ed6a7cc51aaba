"""Payloads of the protocol suite's blob cases: HOST3D blobs mapped, read and written through
the hostmem window, unmapped (also with commands queued behind the unmap) and reused.
Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from gpuhil import protocol as P
from gpuhil.patterns import pattern
from suites.protocol.payloads import (BLOB_SIZE, CTX, HANG_TIMEOUT, RID, TIMEOUT, _open,
                                      _timeout_type, expect, expect_blob, host3d_blob, kind,
                                      map_blob, raw_kind, virgl_context)


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
