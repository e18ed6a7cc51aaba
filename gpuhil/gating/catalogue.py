"""Every capability name ``@pytest.mark.requires`` accepts, with what it means: the catalogue
``gpuhil capabilities`` prints (and a test keeps complete: every name
:meth:`~gpuhil.gating.capabilities.Capabilities.as_dict` can produce is listed here).

Names are grouped by where they come from: the guest's render node (``param.*``,
``capset.*``), the virtio device as the guest driver sees it (``feature.*``, ``debugfs.*``),
udmabuf and VFIO, QEMU's QOM properties and trace events (``qemu.*``), and the raw driver (``raw.*``, on a
raw configuration only).  A name that was not probed is absent: false, and every comparison
with it is false.
"""
from __future__ import annotations

import difflib
from typing import Iterable

from gpuhil.gating.capabilities import FEATURE_BITS, QEMU_GPU_PROPERTIES, param_name
from gpuhil.gating.qemu_props import QEMU_TRACE_EVENTS

__all__ = ["catalogue", "unknown_names"]


def catalogue() -> dict[str, str]:
    """Capability name -> its meaning, in a stable order."""
    from gpuhil.devices.virtgpu import Capset, Param
    from gpuhil.protocol import capset_name
    from gpuhil.raw.probe import RAW_NAMES

    names: dict[str, str] = {
        "configuration": "the guest configuration (or 'local') the snapshot was probed on",
        "kernel.guest": "kernel release of the machine with the device (compare as a version)",
        "kernel.host": "kernel release of the host running QEMU",
        "render_node": "the virtio-gpu render node the guest driver made",
    }
    for member in Param:
        names[f"param.{param_name(member.name)}"] = \
            f"DRM_IOCTL_VIRTGPU_GETPARAM(VIRTGPU_PARAM_{member.name}) (absent when it fails)"
    for capset in Capset:
        names[f"capset.{capset_name(capset)}"] = \
            f"the render node lists capset {capset.name} ({int(capset)})"
        names[f"capset.{capset_name(capset)}.max_version"] = \
            f"the highest version GET_CAPS accepts for capset {capset.name}"
    for name in FEATURE_BITS:
        names[f"feature.{name}"] = \
            f"the guest driver negotiated VIRTIO_GPU_F_{name.upper()} (sysfs features)"
    names.update({
        "debugfs.cap_sets": "capsets the guest driver counted (debugfs virtio-gpu-features)",
        "renderer.venus": "the device serves Venus (capset venus)",
        "renderer.drm_native_context": "the device serves DRM native contexts (capset drm)",
        "renderer.virgl": "the device serves virgl (capset virgl or virgl2)",
        "udmabuf": "/dev/udmabuf exists",
        "udmabuf.size_limit_mb": "the udmabuf module's size_limit_mb parameter",
        "udmabuf.list_limit": "the udmabuf module's list_limit parameter",
        "vfio.dma_buf": "VFIO_DEVICE_FEATURE_DMA_BUF is supported on a lab PCI device",
        "qemu.device": "QEMU type of the GPU device (virtio-gpu-gl-pci ...)",
        "qemu.qtest": "QEMU has the qtest accelerator (the device tier can run)",
    })
    for prop in QEMU_GPU_PROPERTIES:
        names[f"qemu.{prop}"] = f"the GPU device's QOM property {prop!r}"
    for event in QEMU_TRACE_EVENTS:
        names[f"qemu.trace.{event}"] = f"this QEMU has the trace event {event} (trace-event-get-state)"
    names["device.error"] = "why the GPU's renderer could not initialize (absent when it did)"
    names.update(RAW_NAMES)
    return names


def unknown_names(names: Iterable[str]) -> str | None:
    """None when every name is in the catalogue, else what is wrong: the unknown names, the
    nearest known ones, and every known name (a typo must not pass as a never-probed name)."""
    known = catalogue()
    unknown = [name for name in names if name not in known]
    if not unknown:
        return None
    hints = [f"{name!r} (did you mean {' or '.join(repr(m) for m in close)}?)"
             if (close := difflib.get_close_matches(name, known, n=2)) else repr(name)
             for name in unknown]
    return (f"unknown capability name{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
            f"known names: {', '.join(known)}")
