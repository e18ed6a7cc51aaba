"""Payload of the many-mappings case: thousands of HOST3D blobs mapped at once at distinct
offsets of the hostmem window, each proven to be its own memory, then all unmapped and
destroyed.  Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from collections import Counter

from gpuhil import protocol as P
from gpuhil.devices.virtgpu import virgl_pipe_resource_create
from gpuhil.raw.host3d import MAPPABLE_SHAREABLE
from suites.protocol.blob_payload import completion_order
from suites.protocol.payloads import CTX, HANG_TIMEOUT, _open, kind, raw_kind, virgl_context

#: the first resource id of the case (ids BASE .. BASE + count - 1)
BASE = 0x1000
PAGE = 4096
#: commands per notify (a 64-entry queue holds 32 two-descriptor chains)
PER_NOTIFY = 32
#: the unmap-behind-a-queue case: a 256-entry queue, 42 blobs x 3 commands per notify
WIDE_QUEUE, BLOBS_PER_NOTIFY = 256, 42


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
    ids = [BASE + i for i in range(count)]
    out: dict = {}
    with _open(address) as gpu:
        hostmem = gpu.hostmem
        out.update(_map_all(gpu, ids, stride))
        for i, rid in enumerate(ids):
            hostmem.write(rid.to_bytes(8, "little"), i * stride)
        wrong = [(rid, hostmem.read(i * stride, 8).hex()) for i, rid in enumerate(ids)
                 if hostmem.read(i * stride, 8) != rid.to_bytes(8, "little")]
        out["tags_wrong"] = wrong[:8]
        out["tags_wrong_count"] = len(wrong)
        out["unmap"] = dict(_batched(gpu, [P.ResourceUnmapBlob(rid) for rid in ids]))
        out["unref"] = dict(_batched(gpu, [P.ResourceUnref(rid) for rid in ids]))
        out["again"] = _again(gpu, count)
    return out


def _map_all(gpu, ids: list[int], stride: int) -> dict:
    """The suite's virgl context, a one-page HOST3D blob per id, blob i mapped at
    ``i * stride``: how many got each response type (``create``, ``map``)."""
    hdr = P.CtrlHdr(ctx_id=CTX)
    virgl_context(gpu, CTX)
    creates = []
    for i, rid in enumerate(ids):
        creates += [P.Submit3D(virgl_pipe_resource_create(PAGE, i + 1), hdr=hdr),
                    P.ResourceCreateBlob(rid, P.BlobMem.HOST3D, int(MAPPABLE_SHAREABLE),
                                         i + 1, PAGE, hdr=hdr)]
    return {"create": dict(_batched(gpu, creates)),
            "map": dict(_batched(gpu, [P.ResourceMapBlob(rid, i * stride)
                                       for i, rid in enumerate(ids)]))}


def _again(gpu, count: int) -> list[str]:
    """One more blob created, mapped at offset 0, unmapped and unreferenced, then the context
    destroyed: each response type (the window is usable again)."""
    hdr = P.CtrlHdr(ctx_id=CTX)
    again = [P.Submit3D(virgl_pipe_resource_create(PAGE, count + 1), hdr=hdr),
             P.ResourceCreateBlob(BASE + count, P.BlobMem.HOST3D, int(MAPPABLE_SHAREABLE),
                                  count + 1, PAGE, hdr=hdr),
             P.ResourceMapBlob(BASE + count, 0), P.ResourceUnmapBlob(BASE + count),
             P.ResourceUnref(BASE + count), P.CtxDestroy(hdr=hdr)]
    return [kind(gpu.submit(cmd)) for cmd in again]


def unmap_behind_a_queue(address, count: int, stride: int) -> dict:
    """``count`` one-page HOST3D blobs mapped at once (blob i at ``i * stride``), then, for
    BLOBS_PER_NOTIFY blobs per notify, each blob's UNMAP_BLOB with its RESOURCE_UNREF and a
    GET_CAPSET_INFO queued right behind it (QEMU finishes an unmap asynchronously and holds
    the commands behind it meanwhile): how many got each response type (``behind``), the
    notifies whose completions left submission order (``reordered``), the slowest UNMAP's
    seconds and a notify's (observations, not verdicts); then the window maps again."""
    ids = [BASE + i for i in range(count)]
    with _open(address, WIDE_QUEUE) as gpu:
        out = _map_all(gpu, ids, stride)
        seen: Counter = Counter()
        out["reordered"], out["slowest_unmap_s"], out["slowest_notify_s"] = [], 0.0, 0.0
        info = P.GetCapsetInfo(0)
        for start in range(0, count, BLOBS_PER_NOTIFY):
            batch = []
            for rid in ids[start:start + BLOBS_PER_NOTIFY]:
                batch += [P.ResourceUnmapBlob(rid), P.ResourceUnref(rid), info]
            done = gpu.transact([P.encode(c) for c in batch],
                                [gpu.response_size(c) for c in batch], timeout=HANG_TIMEOUT)
            seen.update(raw_kind(c.response) for c in done)
            if completion_order(done) != list(range(len(batch))):
                out["reordered"].append((start, completion_order(done)[:12]))
            out["slowest_unmap_s"] = max(out["slowest_unmap_s"], *(c.seconds for c in done[::3]))
            out["slowest_notify_s"] = max(out["slowest_notify_s"], done[-1].seconds)
        out["behind"] = dict(seen)
        out["again"] = _again(gpu, count)
    return out
