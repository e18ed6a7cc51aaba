"""Skips of the protocol suite, decided from the device's probed feature word and hostmem size."""
from __future__ import annotations

import pytest

from gpuhil import protocol as P


def feature(facts: dict, bit: str) -> bool:
    """Whether the device negotiated the VIRTIO_GPU_F_<bit> feature."""
    return bool(facts["features"] >> int(P.Feature[bit]) & 1)


def require_feature(facts: dict, bit: str) -> None:
    """Skip, with the probed feature word, unless the device has VIRTIO_GPU_F_<bit>."""
    if not feature(facts, bit):
        pytest.skip(f"the device does not offer VIRTIO_GPU_F_{bit} "
                    f"(probed features: {facts['features']:#x})")


def require_blobs(facts: dict) -> None:
    """Skip unless the device has RESOURCE_BLOB and a hostmem window (probed)."""
    require_feature(facts, "RESOURCE_BLOB")
    if not facts["hostmem_size"]:
        pytest.skip(f"the device has no hostmem window (probed size: {facts['hostmem_size']})")
