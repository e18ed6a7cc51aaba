"""Host GPUs, discovered with pyudev: vendor, device, driver, render node, PCI slot, IOMMU group.

A GPU is a PCI function of the display class (0x03xxxx), whatever its driver (amdgpu, i915,
vfio-pci, none); its render node is the ``renderD*`` DRM child, when it has one.
:func:`select` picks GPUs by ``--gpuhil-gpu`` selectors (PCI slot, ``vendor:device`` in hex, or
a render node path).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Iterable

__all__ = ["HostGpu", "SelectorError", "host_gpus", "parse_selector", "select"]

DISPLAY_CLASS = 0x03


class SelectorError(ValueError):
    """A GPU selector that is none of: PCI slot, vendor:device, render node path."""


@dataclass(frozen=True)
class HostGpu:
    """One GPU of the host."""

    pci_slot: str
    vendor: int
    device: int
    class_code: int
    driver: str | None
    render_node: str | None
    iommu_group: int | None

    @property
    def ids(self) -> str:
        return f"{self.vendor:04x}:{self.device:04x}"

    def __str__(self) -> str:
        node = self.render_node or "no render node"
        return f"{self.pci_slot} [{self.ids}] driver={self.driver or 'none'} {node} " \
               f"iommu_group={self.iommu_group if self.iommu_group is not None else 'none'}"


def _hex(value: str | bytes | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes):
        value = value.decode()
    return int(value.strip(), 16)


def host_gpus(context=None) -> list[HostGpu]:
    """Every display-class PCI function of this host, in slot order."""
    import pyudev

    context = context or pyudev.Context()
    found = []
    for dev in context.list_devices(subsystem="pci"):
        attrs = dev.attributes
        try:
            class_code = _hex(attrs.get("class"))
        except ValueError:
            continue
        if class_code >> 16 != DISPLAY_CLASS:
            continue
        render = None
        for child in dev.children:
            if child.subsystem == "drm" and (child.sys_name or "").startswith("renderD"):
                render = child.device_node or f"/dev/dri/{child.sys_name}"
                break
        group_link = os.path.join(dev.sys_path, "iommu_group")
        group = int(os.path.basename(os.readlink(group_link))) if os.path.islink(group_link) else None
        found.append(HostGpu(dev.sys_name, _hex(attrs.get("vendor")), _hex(attrs.get("device")),
                             class_code, dev.driver, render, group))
    return sorted(found, key=lambda g: g.pci_slot)


_SLOT = re.compile(r"(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\Z")
_IDS = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4}|\*)\Z")


def parse_selector(selector: str, option: str = "--gpuhil-gpu") -> tuple[str, str]:
    """``("slot", "0000:03:00.0")``, ``("ids", "1002:73bf")`` or ``("node", "/dev/dri/renderD128")``."""
    text = selector.strip()
    if _SLOT.match(text):
        return "slot", text.lower() if text.count(":") == 2 else f"0000:{text.lower()}"
    if _IDS.match(text):
        return "ids", text.lower()
    if text.startswith("/dev/dri/"):
        return "node", text
    why = _why_not(text)
    if why:
        raise SelectorError(f"{option}={selector!r}: {why}")
    raise SelectorError(f"{option}={selector!r}: expected a PCI slot (0000:03:00.0), "
                        f"vendor:device in hex (1002:73bf, 8086:*) or a render node path")


def _why_not(text: str) -> str:
    """What is wrong with a selector that looks like vendor:device or a slot but is neither."""
    parts = text.split(":")
    hexdigits = set("0123456789abcdefABCDEF")
    if len(parts) == 2 and "." not in text:
        for name, part in zip(("vendor", "device"), parts):
            if part == "*" and name == "device":
                continue
            if len(part) != 4 or not set(part) <= hexdigits:
                return f"the {name} id {part!r} needs four hex digits (e.g. 1002:73bf)"
    if "." in text and 2 <= len(parts) <= 3:
        return ("a PCI slot is [domain:]bus:device.function in hex, with a device up to 1f and "
                "a function up to 7 (e.g. 0000:03:00.0)")
    if text.startswith("/dev/") or text.startswith("render"):
        return "a render node is a path under /dev/dri/ (e.g. /dev/dri/renderD128)"
    return ""


def select(gpus: Iterable[HostGpu], selectors: Iterable[str]) -> list[HostGpu]:
    """The GPUs matching any selector (all GPUs when there are no selectors)."""
    parsed = [parse_selector(s) for s in selectors]
    gpus = list(gpus)
    if not parsed:
        return gpus

    def matches(gpu: HostGpu, kind: str, value: str) -> bool:
        if kind == "slot":
            return gpu.pci_slot == value
        if kind == "node":
            return gpu.render_node == value
        vendor, _, device = value.partition(":")
        return gpu.vendor == int(vendor, 16) and (device == "*" or gpu.device == int(device, 16))

    return [g for g in gpus if any(matches(g, k, v) for k, v in parsed)]
