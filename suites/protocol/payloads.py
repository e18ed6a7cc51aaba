"""Guest payloads of the protocol suite.

Each function takes the PCI address of the virtio-gpu function bound to vfio-pci (the ``raw_gpu``
fixture passes it first), drives the device through :class:`gpuhil.raw.rawgpu.RawGpu`, and returns
plain data: response types as ``CtrlType`` names (``"RESP_OK_NODATA"``, gpuhil.protocol's
``ctrl_name``), fields as ints and tuples.  The host side asserts.  HOST3D blobs come from
:mod:`gpuhil.raw.host3d`; a command that prepares a case and is refused raises its
``CommandRefused``.  Only the standard library and gpuhil are imported.
"""
from __future__ import annotations

from gpuhil import protocol as P
from gpuhil.raw import host3d
from gpuhil.raw.driver import UNWRITTEN, response_name as raw_kind  # also for the other payloads
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


def _create_2d(gpu, rid: int = RID) -> None:
    expect(gpu, P.ResourceCreate2D(rid, P.Format.B8G8R8X8_UNORM, FB_WIDTH, FB_HEIGHT))


def expect_blob(resp: P.Message) -> None:
    """CommandRefused unless a HOST3D CREATE_BLOB answered OK_NODATA."""
    if kind(resp) != "RESP_OK_NODATA":
        raise CommandRefused("HOST3D ResourceCreateBlob", kind(resp), "RESP_OK_NODATA")
