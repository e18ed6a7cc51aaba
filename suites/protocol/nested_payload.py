"""Payload of the lab-machine case: QEMU run inside a lab guest with the GL device rendering on
that guest's own render node (``-display egl-headless``), as a GPU lab machine's QEMU renders
on its physical GPU, and the protocol suite's conformance payloads run on it next to that QEMU.
Imports only gpuhil and the suite's payload helpers."""
from __future__ import annotations

from suites.protocol.payloads import context_lifecycle, device_queries, resource_2d_lifecycle

GL_DEVICE = "virtio-gpu-gl-pci,blob=on,hostmem=256M"
RAM_MIB = 512


def conformance_on_render_node(path: str) -> dict:
    """An inner QEMU whose virglrenderer renders on the render node ``path``: the device
    queries, the 2-D resource life cycle and the context life cycle for the default context
    and every capset, its stderr (``qemu``) and start time; ``unavailable``: why no inner QEMU
    could run here."""
    from gpuhil.nested.inner_qemu import InnerQemu, InnerQemuUnavailable

    try:
        inner = InnerQemu([GL_DEVICE], ram_mib=RAM_MIB,
                          display=f"egl-headless,rendernode={path}")
    except InnerQemuUnavailable as exc:
        return {"unavailable": str(exc)}
    with inner:
        target = inner.gpu()
        out: dict = {"start_seconds": inner.start_seconds, "queries": device_queries(target)}
        out["lifecycle_2d"] = resource_2d_lifecycle(target)
        inits = [0] + [entry["id"] for entry in out["queries"]["capsets"][:-1]]
        out["contexts"] = context_lifecycle(target, inits)
        out["qemu"] = inner.stderr()
    return out
