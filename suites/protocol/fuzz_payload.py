"""The fuzzer's payload: one batch of raw requests on a device, then the state the oracle
(:mod:`suites.protocol.fuzz`) checks.  Imports only gpuhil and the suite's payload helpers, so
it runs in a guest (VFIO transport) as in this process (qtest transport).

:func:`fuzz_batch` opens the device for the batch (a reset device: the guest path's unit);
:func:`fuzz_on` runs a batch on a device the caller keeps open, so the device tier can run
thousands of batches without paying a device reset each (QEMU re-initialises its renderer on
the first command after one, 15-35 ms here).
"""
from __future__ import annotations

from gpuhil import protocol as P
from suites.protocol.payloads import (FB_HEIGHT, FB_WIDTH, HANG_TIMEOUT, RESPONSE_MAX, RID,
                                      TIMEOUT, _open, _timeout_type, kind, raw_kind)

#: bytes of DMA memory :func:`fuzz_on` needs (the health check's 2D resource backing)
BACKING_SIZE = FB_WIDTH * FB_HEIGHT * 4


def fuzz_batch(address: str, requests: list[bytes], resource_ids: list[int],
               context_ids: list[int], per_notify: int = 1) -> dict:
    """:func:`fuzz_on` on the device at ``address``, opened (and so reset) for this batch."""
    with _open(address) as gpu, gpu.dma(BACKING_SIZE) as backing:
        return fuzz_on(gpu, backing.iova, requests, resource_ids, context_ids, per_notify)


def fuzz_on(gpu, backing_iova: int, requests: list[bytes], resource_ids: list[int],
            context_ids: list[int], per_notify: int = 1) -> dict:
    """Submit the requests (raw bytes), ``per_notify`` at a time, and record each response
    type (TIMEOUT: not answered; the device is reset after it, and with ``per_notify`` above
    1 every request of that notify counts as unanswered); then UNREF every id in
    resource_ids and CTX_DESTROY every context id (so the host can check the device's state
    against what was answered, and the device holds none of them afterwards); then a 2D
    create, attach, transfer, unref and GET_DISPLAY_INFO (the device still works)."""
    out: dict = {"responses": [], "timeouts": []}
    timeout = _timeout_type()
    for start in range(0, len(requests), per_notify):
        chunk = requests[start:start + per_notify]
        try:
            done = gpu.transact(chunk, [RESPONSE_MAX] * len(chunk), timeout=HANG_TIMEOUT)
            out["responses"] += [raw_kind(c.response) for c in done]
        except timeout as exc:
            out["responses"] += [TIMEOUT] * len(chunk)
            out["timeouts"].append((start, str(exc)))
            gpu.reset()
    teardown = [P.ResourceUnref(rid) for rid in resource_ids] + \
        [P.CtxDestroy(hdr=P.CtrlHdr(ctx_id=ctx)) for ctx in context_ids]
    health = [
        P.ResourceCreate2D(RID + 0x80, P.Format.B8G8R8X8_UNORM, FB_WIDTH, FB_HEIGHT),
        P.ResourceAttachBacking(RID + 0x80, (P.MemEntry(backing_iova, BACKING_SIZE),)),
        P.TransferToHost2D(P.Rect(0, 0, FB_WIDTH, FB_HEIGHT), 0, RID + 0x80),
        P.ResourceUnref(RID + 0x80),
        P.GetDisplayInfo(),
    ]
    # one notify for all of them: the device answers in order, as one by one
    answers = [kind(r) for r in gpu.submit_batch(teardown + health)]
    out["unref"] = dict(zip(resource_ids, answers))
    out["ctx_destroy"] = dict(zip(context_ids, answers[len(resource_ids):len(teardown)]))
    out["health"] = answers[len(teardown):]
    return out
