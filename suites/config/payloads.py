"""Guest payloads of the config suite: what the guest sees of the virtio-gpu device QEMU built."""
from __future__ import annotations

import errno
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from gpuhil.errors import IoctlError
from gpuhil.devices.virtgpu import Param, RenderNode

VIRTIO_DEVICES = Path("/sys/bus/virtio/devices")
DRM_CLASS = Path("/sys/class/drm")
VIRTIO_ID_GPU = 16
PCI_CAPABILITY_LIST = 0x34
PCI_CAP_ID_VNDR = 0x09
VIRTIO_PCI_CAP_SHARED_MEMORY_CFG = 8
VIRTIO_GPU_SHM_ID_HOST_VISIBLE = 1


@dataclass(frozen=True)
class DeviceView:
    """The guest's view of its virtio-gpu device: the DRM driver name, every GETPARAM (value or
    errno name), the number of KMS connectors and the size of the host-visible shared memory
    region the PCI function advertises (0 when it has none)."""

    driver: str
    params: dict[str, int | str]
    connectors: int
    host_visible_region: int


def _gpu_pci_dir() -> Path:
    for device in sorted(VIRTIO_DEVICES.glob("virtio*")):
        if int((device / "device").read_text(), 16) == VIRTIO_ID_GPU:
            return (device / "..").resolve()
    raise LookupError("no virtio-gpu device in /sys/bus/virtio/devices")


def host_visible_region(config: bytes) -> int:
    """The length of the virtio shared memory capability with id HOST_VISIBLE in a PCI config
    space (``struct virtio_pci_cap64``: 32-bit length at +12, high half at +20), or 0."""
    offset, seen = config[PCI_CAPABILITY_LIST] & ~3, set()
    while offset and offset not in seen and offset + 24 <= len(config):
        seen.add(offset)
        cap_id, next_cap, _len, cfg_type, _bar, shm_id = config[offset:offset + 6]
        if (cap_id, cfg_type, shm_id) == (PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_SHARED_MEMORY_CFG,
                                          VIRTIO_GPU_SHM_ID_HOST_VISIBLE):
            low, = struct.unpack_from("<I", config, offset + 12)
            high, = struct.unpack_from("<I", config, offset + 20)
            return high << 32 | low
        offset = next_cap & ~3
    return 0


def device_view(path: str) -> DeviceView:
    """What the guest sees of the virtio-gpu device behind the render node ``path``."""
    params: dict[str, int | str] = {}
    with RenderNode(path) as node:
        driver = node.version().name
        for member in Param:
            try:
                params[member.name] = node.getparam(member)
            except IoctlError as exc:
                params[member.name] = errno.errorcode.get(exc.errno, str(exc.errno))
    cards = [p.name for p in DRM_CLASS.iterdir() if re.fullmatch(r"card\d+", p.name)]
    connectors = sum(len(list(DRM_CLASS.glob(f"{card}-*"))) for card in cards)
    config = (_gpu_pci_dir() / "config").read_bytes()
    return DeviceView(driver, params, connectors, host_visible_region(config))
