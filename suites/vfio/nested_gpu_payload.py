"""Payloads that drive a virtio-gpu of a QEMU run inside this guest (the nested tier): the
raw driver runs next to the inner QEMU (:meth:`gpuhil.nested.inner_qemu.InnerQemu.gpu`), on
the guest's udmabuf, which the host lacks.  Imports only the standard library, gpuhil and the
protocol suite's scanout payload."""
from __future__ import annotations

from gpuhil import protocol as P
from gpuhil.devices.pci_ids import IVSHMEM
from suites.protocol.scanout_payload import H, SIZE, W, scanout_blob_cases

#: the 2-D device with blob resources (QEMU makes their dma-bufs with udmabuf), on memfd RAM
BLOB_2D = "virtio-gpu-pci,blob=on,max_outputs=1"
RAM_MIB = 256
RID = 0x160


def _inner(devices: list[str]):
    """(an inner QEMU with ``devices`` on memfd RAM, "") or (None, why this guest's QEMU
    cannot run under qtest: the caller reports it as ``unavailable``)."""
    from gpuhil.nested.inner_qemu import InnerQemu, InnerQemuUnavailable

    try:
        return InnerQemu(devices, ram_mib=RAM_MIB), ""
    except InnerQemuUnavailable as exc:
        return None, str(exc)


def scanout_cases_on_2d_device(_address: str) -> dict:
    """The protocol suite's SET_SCANOUT_BLOB cases on the 2-D blob device of an inner QEMU,
    and that QEMU's stderr (``qemu``)."""
    inner, why = _inner([BLOB_2D])
    if inner is None:
        return {"unavailable": why}
    with inner:
        out = scanout_blob_cases(inner.gpu())
        out["qemu"] = inner.stderr()
    return out


def blob_in_vfio_bar(address: str) -> dict:
    """Seed 001: an inner QEMU with the 2-D blob device and vfio-pci of ivshmem ``address``; a
    GUEST blob backed by RAM (the control), then one whose only memory entry is ivshmem's BAR 2
    (its guest-physical range, assigned by gpuhil), each created, put on scanout 0 with
    SET_SCANOUT_BLOB, flushed, taken off and unreferenced: each response by blob, the
    device's answer to GET_DISPLAY_INFO afterwards and QEMU's stderr (``qemu``)."""
    from gpuhil.raw.rawgpu import RawGpu

    out: dict = {}
    inner, why = _inner([f"vfio-pci,host={address}", BLOB_2D])
    if inner is None:
        return {"unavailable": why}
    with inner:
        bar = next(f for f in inner.functions() if (f.vendor, f.device) == IVSHMEM).bars[2]
        with RawGpu.open(inner.gpu()) as gpu, gpu.dma(SIZE) as backing:
            for n, (label, gpa) in enumerate((("ram", backing.iova), ("vfio_bar", bar.address))):
                out[label] = _scan_out(gpu, RID + n, gpa)
            out["display"] = P.ctrl_name(gpu.submit(P.GetDisplayInfo()))
        out["bar"] = {"address": bar.address, "size": bar.size}
        out["qemu"] = inner.stderr()
    return out


def _scan_out(gpu, rid: int, gpa: int) -> dict:
    flags = int(P.BlobFlag.MAPPABLE | P.BlobFlag.SHAREABLE)
    fb = P.Rect(0, 0, W, H)
    steps = {
        "create": P.ResourceCreateBlob(rid, P.BlobMem.GUEST, flags, 0, SIZE,
                                       (P.MemEntry(gpa, SIZE),)),
        "scanout": P.SetScanoutBlob(fb, 0, rid, W, H, int(P.Format.B8G8R8X8_UNORM),
                                    (W * 4, 0, 0, 0), (0, 0, 0, 0)),
        "flush": P.ResourceFlush(fb, rid),
        "disable": P.SetScanoutBlob(fb, 0, 0, W, H, int(P.Format.B8G8R8X8_UNORM),
                                    (W * 4, 0, 0, 0), (0, 0, 0, 0)),
        "unref": P.ResourceUnref(rid),
    }
    return {step: P.ctrl_name(gpu.submit(cmd)) for step, cmd in steps.items()}
