"""Payloads of the protocol suite's reset cases: a device reset with blobs mapped or commands
pending, then the same ids, offsets and context again.
Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from gpuhil import protocol as P
from gpuhil.patterns import pattern
from suites.protocol.payloads import (BLOB_SIZE, CTX, HANG_TIMEOUT, RID, TIMEOUT, _create_2d,
                                      _open, _timeout_type, expect, expect_blob, host3d_blob,
                                      kind, map_blob, virgl_context)


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
