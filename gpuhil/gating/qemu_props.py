"""The GPU device's QOM properties and QEMU's trace events, read over QMP on the host: the
``qemu.*`` capability names.

:func:`qemu_properties` finds the virtio-gpu/virtio-vga device under ``/machine`` and reads
the properties in :data:`QEMU_GPU_PROPERTIES`, then asks which of :data:`QEMU_TRACE_EVENTS`
this QEMU has (``trace-event-get-state``: QEMU 10.0 has no blob map/unmap events, so checks
built on them are a missing capability there, not an ``unknown event`` error).  Re-exported by
:mod:`gpuhil.gating.capabilities`.
"""
from __future__ import annotations

import re
from typing import Any, Callable

__all__ = ["QEMU_GPU_PROPERTIES", "QEMU_TRACE_EVENTS", "qemu_properties", "trace_events"]

#: QOM properties of the GPU device worth recording (others are PCI plumbing).
QEMU_GPU_PROPERTIES = ("blob", "hostmem", "venus", "drm_native_context", "max_outputs", "edid",
                       "iommu_platform", "xres", "yres", "max_hostmem", "stats", "packed",
                       "event_idx", "indirect_desc")
#: QEMU trace events suites capture (``qemu.trace.<event>``: True when this QEMU has it).
QEMU_TRACE_EVENTS = ("virtio_gpu_cmd_res_create_blob", "virtio_gpu_cmd_res_map_blob",
                     "virtio_gpu_cmd_res_unmap_blob", "virtio_gpu_cmd_res_unref")


def _gpu_qom_path(qmp: Callable[..., Any]) -> tuple[str, str] | None:
    for parent in ("/machine/peripheral-anon", "/machine/peripheral"):
        try:
            children = qmp("qom-list", path=parent)
        except Exception:
            continue
        for child in children:
            match = re.fullmatch(r"child<(virtio-(?:gpu|vga)[\w-]*)>", child.get("type", ""))
            if match:
                return f"{parent}/{child['name']}", match.group(1)
    return None


def qemu_properties(qmp: Callable[..., Any]) -> tuple[str | None, dict[str, Any]]:
    """The GPU's QEMU type and its recorded QOM property values (``qmp(command, **args)``)."""
    found = _gpu_qom_path(qmp)
    if found is None:
        return None, trace_events(qmp)
    path, type_name = found
    declared = {p["name"] for p in qmp("device-list-properties", typename=type_name)}
    values: dict[str, Any] = {}
    for name in QEMU_GPU_PROPERTIES:
        if name not in declared:
            continue
        try:
            value = qmp("qom-get", path=path, property=name)
        except Exception:
            continue
        if isinstance(value, (bool, int, str)):
            values[name] = value
    return type_name, {**values, **trace_events(qmp)}


def trace_events(qmp: Callable[..., Any]) -> dict[str, bool]:
    """``trace.<event>`` -> whether this QEMU knows the event (QEMU refuses an unknown name)."""
    out = {}
    for event in QEMU_TRACE_EVENTS:
        try:
            out[f"trace.{event}"] = bool(qmp("trace-event-get-state", name=event))
        except Exception:
            out[f"trace.{event}"] = False
    return out
