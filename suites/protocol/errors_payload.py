"""Payloads of the protocol suite's error cases: each case prepares state, submits one malformed
or refused command and records the response; the device is reset between cases.
Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from typing import Callable

from gpuhil import protocol as P
from suites.protocol.payloads import (CTX, HANG_TIMEOUT, RESPONSE_MAX, RID, TIMEOUT, UNWRITTEN,
                                      _create_2d, _missing_type, _open, _timeout_type,
                                      expect_blob, host3d_blob, kind, raw_kind, virgl_context)


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
