"""Payload of the SET_SCANOUT_BLOB cases: a GUEST blob backed by DMA memory (64 x 64, 32 bpp)
put on scanout 0 with good and bad parameters.  Imports only gpuhil and the suite's payload
helpers."""
from __future__ import annotations

from gpuhil import protocol as P
from suites.protocol.payloads import _open, kind

RID, RID_2D = 0x150, 0x151
W = H = 64
SIZE = W * H * 4
#: case -> the SET_SCANOUT_BLOB fields it changes from a valid scanout of the whole blob
CASES: dict[str, dict] = {
    "valid": {},
    "scanout_id_out_of_range": {"scanout_id": P.MAX_SCANOUTS},
    "unknown_resource": {"resource_id": 0xDEAD},
    "not_a_blob": {"resource_id": RID_2D},
    "rect_outside_fb": {"r": P.Rect(8, 0, W, H)},
    "rect_larger_than_fb": {"r": P.Rect(0, 0, W + 16, H)},
    "unknown_format": {"format": 0x7F},
    "offset_past_blob_end": {"offsets": (SIZE, 0, 0, 0)},
    "stride_times_height_past_end": {"strides": (2 * W * 4, 0, 0, 0)},
    "offset_wraps_32_bits": {"offsets": (0xFFFF_F000, 0, 0, 0)},
    "disable": {"resource_id": 0},
}
#: the refusals QEMU makes before it needs the blob's dma-buf
BEFORE_DMABUF = {
    "scanout_id_out_of_range": "RESP_ERR_INVALID_SCANOUT_ID",
    "unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "rect_outside_fb": "RESP_ERR_INVALID_PARAMETER",
    "rect_larger_than_fb": "RESP_ERR_INVALID_PARAMETER",
    "disable": "RESP_OK_NODATA",
}
#: framebuffers that do not fit the format or the blob: any error, never OK
BOUNDS = ("unknown_format", "offset_past_blob_end", "stride_times_height_past_end",
          "offset_wraps_32_bits", "not_a_blob")


def scanout_blob_cases(address) -> dict:
    """Each case's response (in CASES order, each after a disable of scanout 0), and the
    device's answer to GET_DISPLAY_INFO and a 2D create afterwards."""
    valid = dict(r=P.Rect(0, 0, W, H), scanout_id=0, resource_id=RID, width=W, height=H,
                 format=int(P.Format.B8G8R8X8_UNORM), strides=(W * 4, 0, 0, 0),
                 offsets=(0, 0, 0, 0))
    out: dict = {"cases": {}}
    with _open(address) as gpu, gpu.dma(SIZE) as backing:
        flags = int(P.BlobFlag.MAPPABLE | P.BlobFlag.SHAREABLE)
        out["create"] = kind(gpu.submit(P.ResourceCreateBlob(
            RID, P.BlobMem.GUEST, flags, 0, SIZE, (P.MemEntry(backing.iova, SIZE),))))
        out["create_2d"] = kind(gpu.submit(P.ResourceCreate2D(RID_2D, P.Format.B8G8R8X8_UNORM,
                                                              W, H)))
        disable = P.SetScanoutBlob(**{**valid, "resource_id": 0})
        for case, change in CASES.items():
            out["cases"][case] = kind(gpu.submit(P.SetScanoutBlob(**{**valid, **change})))
            gpu.submit(disable)
        out["display"] = kind(gpu.submit(P.GetDisplayInfo()))
        out["unref"] = [kind(gpu.submit(P.ResourceUnref(rid))) for rid in (RID, RID_2D)]
    return out
