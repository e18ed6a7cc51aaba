"""Guest payloads of the capsets suite: each opens the render node, asks, and returns plain data."""
from __future__ import annotations

from pathlib import Path

from gpuhil.errors import IoctlError
from gpuhil.devices.virtgpu import Param, RenderNode
from gpuhil.attempts import errno_name

VIRTIO_DEVICES = Path("/sys/bus/virtio/devices")
VIRTIO_ID_GPU = 16
FEATURE_BITS = {"virgl": 0, "edid": 1, "resource_uuid": 2, "resource_blob": 3,
                "context_init": 4, "blob_alignment": 5}
VERSIONS_TRIED = 16




def params_and_features(path: str) -> dict:
    """Every GETPARAM (value or errno name) and the device's negotiated feature bits from sysfs."""
    params: dict[str, int | str] = {}
    with RenderNode(path) as node:
        for member in Param:
            try:
                params[member.name] = node.getparam(member)
            except IoctlError as exc:
                params[member.name] = errno_name(exc)
    features = {}
    for device in sorted(VIRTIO_DEVICES.glob("virtio*")):
        if int((device / "device").read_text(), 16) == VIRTIO_ID_GPU:
            bits = (device / "features").read_text().strip()
            features = {name: bits[bit] == "1" for name, bit in FEATURE_BITS.items()}
    return {"params": params, "features": features}


def get_caps_matrix(path: str, ids: range = range(32)) -> dict[int, list[str]]:
    """GET_CAPS(id, version) for every id and versions 0..16: "ok" or the errno name."""
    out: dict[int, list[str]] = {}
    with RenderNode(path) as node:
        for capset_id in ids:
            row = []
            for version in range(VERSIONS_TRIED + 1):
                try:
                    node.get_caps(capset_id, version, 64)
                    row.append("ok")
                except IoctlError as exc:
                    row.append(errno_name(exc))
            out[capset_id] = row
    return out


def supported_capset_ids(path: str) -> int:
    """GETPARAM(SUPPORTED_CAPSET_IDs)."""
    with RenderNode(path) as node:
        return node.getparam(Param.SUPPORTED_CAPSET_IDS)


def capset_payload(path: str, capset_id: int, version: int, size: int = 4096) -> bytes:
    """GET_CAPS data of ``size`` bytes."""
    with RenderNode(path) as node:
        return node.get_caps(capset_id, version, size)


def debugfs_cap_sets() -> int | None:
    """The driver's own capset count (debugfs virtio-gpu-features 'cap sets')."""
    from gpuhil.devices.debugfs import DEBUGFS as debugfs, ensure_mounted

    ensure_mounted(debugfs, required=False)
    for path in sorted(debugfs.glob("dri/*/virtio-gpu-features")):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "cap sets":
                return int(value)
    return None
