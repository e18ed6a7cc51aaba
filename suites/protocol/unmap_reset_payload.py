"""Payload of the reset-during-unmap cases: a mapped HOST3D blob taken to one point of QEMU's
unmap state machine (MAPPED, UNMAP_BLOB sent and not yet answered, a fenced UNMAP_BLOB left
pending, UNMAP_BLOB answered), then a device reset, then the same id, offset and context again.
Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from gpuhil import protocol as P
from gpuhil.patterns import pattern
from suites.protocol.payloads import (BLOB_SIZE, CTX, HANG_TIMEOUT, RID, TIMEOUT, _open,
                                      _timeout_type, expect, expect_blob, host3d_blob, kind,
                                      virgl_context)
from suites.protocol.reset_payload import reset_and_answer, reuse_after_reset

#: where the reset comes, in the order of the state machine
POINTS = ("mapped", "unmap_sent", "unmap_fenced_pending", "unmap_answered")


def reset_during_unmap(address, point: str) -> dict:
    """Map a blob at offset 0 and write it; take it to ``point``; reset; then the device
    answers, the old id is gone, and a new blob with the same id maps at the same offset and
    holds what is written through the window."""
    if point not in POINTS:
        raise ValueError(f"point {point!r}: not one of {', '.join(POINTS)}")
    out: dict = {"point": point}
    with _open(address) as gpu:
        hostmem = gpu.hostmem
        virgl_context(gpu, CTX)
        expect_blob(host3d_blob(gpu, RID, CTX, blob_id=1))
        expect(gpu, P.ResourceMapBlob(RID, 0), P.CtrlType.RESP_OK_MAP_INFO)
        hostmem.write(pattern(BLOB_SIZE, 3), 0)
        if point == "unmap_sent":
            gpu.send([P.ResourceUnmapBlob(RID).encode()], [64])  # not waited for
        elif point == "unmap_fenced_pending":
            try:
                out["fenced_unmap"] = kind(gpu.submit(P.ResourceUnmapBlob(RID), fence=True,
                                                      timeout=HANG_TIMEOUT))
            except _timeout_type():
                out["fenced_unmap"] = TIMEOUT
        elif point == "unmap_answered":
            out["unmap"] = kind(gpu.submit(P.ResourceUnmapBlob(RID)))
        if not reset_and_answer(gpu, out):
            return out
        out["unref_old"] = kind(gpu.submit(P.ResourceUnref(RID)))
        out.update(reuse_after_reset(gpu))
    return out
