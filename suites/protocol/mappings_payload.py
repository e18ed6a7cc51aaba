"""Payload of the many-mappings case: thousands of HOST3D blobs mapped at once at distinct
offsets of the hostmem window, each proven to be its own memory, then all unmapped and
destroyed.  Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from collections import Counter

from gpuhil import protocol as P
from gpuhil.devices.virtgpu import virgl_pipe_resource_create
from gpuhil.raw.host3d import MAPPABLE_SHAREABLE
from suites.protocol.payloads import CTX, _open, kind, virgl_context

#: the first resource id of the case (ids BASE .. BASE + count - 1)
BASE = 0x1000
PAGE = 4096
#: commands per notify (a 64-entry queue holds 32 two-descriptor chains)
PER_NOTIFY = 32


def _batched(gpu, commands: list[P.Message]) -> Counter:
    """Submit ``commands`` PER_NOTIFY at a time; how many got each response type."""
    seen: Counter = Counter()
    for start in range(0, len(commands), PER_NOTIFY):
        seen.update(kind(r) for r in gpu.submit_batch(commands[start:start + PER_NOTIFY]))
    return seen


def many_mappings(address, count: int, stride: int) -> dict:
    """``count`` one-page HOST3D blobs, blob i mapped at ``i * stride`` of the hostmem window
    (all mapped at once), an 8-byte tag written through the window into each and read back
    from every one after all were written; then every blob unmapped and unreferenced, and one
    more blob mapped at offset 0 (the window is usable again)."""
    hdr = P.CtrlHdr(ctx_id=CTX)
    ids = [BASE + i for i in range(count)]
    out: dict = {}
    with _open(address) as gpu:
        hostmem = gpu.hostmem
        virgl_context(gpu, CTX)
        creates = []
        for i, rid in enumerate(ids):
            creates += [P.Submit3D(virgl_pipe_resource_create(PAGE, i + 1), hdr=hdr),
                        P.ResourceCreateBlob(rid, P.BlobMem.HOST3D, int(MAPPABLE_SHAREABLE),
                                             i + 1, PAGE, hdr=hdr)]
        out["create"] = dict(_batched(gpu, creates))
        out["map"] = dict(_batched(gpu, [P.ResourceMapBlob(rid, i * stride)
                                         for i, rid in enumerate(ids)]))
        for i, rid in enumerate(ids):
            hostmem.write(rid.to_bytes(8, "little"), i * stride)
        wrong = [(rid, hostmem.read(i * stride, 8).hex()) for i, rid in enumerate(ids)
                 if hostmem.read(i * stride, 8) != rid.to_bytes(8, "little")]
        out["tags_wrong"] = wrong[:8]
        out["tags_wrong_count"] = len(wrong)
        out["unmap"] = dict(_batched(gpu, [P.ResourceUnmapBlob(rid) for rid in ids]))
        out["unref"] = dict(_batched(gpu, [P.ResourceUnref(rid) for rid in ids]))
        again = [P.Submit3D(virgl_pipe_resource_create(PAGE, count + 1), hdr=hdr),
                 P.ResourceCreateBlob(BASE + count, P.BlobMem.HOST3D, int(MAPPABLE_SHAREABLE),
                                      count + 1, PAGE, hdr=hdr),
                 P.ResourceMapBlob(BASE + count, 0), P.ResourceUnmapBlob(BASE + count),
                 P.ResourceUnref(BASE + count), P.CtxDestroy(hdr=hdr)]
        out["again"] = [kind(gpu.submit(cmd)) for cmd in again]
    return out
