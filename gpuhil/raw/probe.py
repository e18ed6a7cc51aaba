"""What the raw driver finds on a machine's virtio-gpu: the ``raw.*`` capability names.

:func:`probe_raw_gpu` runs where the device is (``guest.call(probe_raw_gpu)`` in the lab's
"raw" guest, whose virtio-gpu sits behind a vIOMMU): it binds the virtio-gpu to vfio-pci,
opens it with :class:`~gpuhil.raw.rawgpu.RawGpu`, reads the negotiated features, the config
space, the host-visible window's size and every capset, and gives the device back to its
driver.  :meth:`RawProbe.as_dict` turns the result into the names ``requires`` expressions use
(``raw.feature.resource_blob and raw.hostmem``); :data:`RAW_NAMES` says what each means.

Imported in the guest: standard library and gpuhil only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuhil.devices.pci_ids import VIRTIO_GPU
from gpuhil.devices.vfio_binding import bind_vfio, restore_driver
from gpuhil.errors import GpuhilError
from gpuhil.protocol import (Capset, Feature, GetCapsetInfo, RespOkCapsetInfo,
                             capset_name)
from gpuhil.raw.virtio_pci import TransportFeature

__all__ = ["RAW_FEATURES", "RAW_NAMES", "RawProbe", "probe_raw_gpu", "probe_raw_target"]

#: the feature bits named ``raw.feature.<name>``: virtio-gpu's and the transport's
RAW_FEATURES: dict[str, int] = {
    **{f.name.lower(): int(f) for f in Feature},
    **{f.name.lower(): int(f) for f in (TransportFeature.VERSION_1,
                                        TransportFeature.ACCESS_PLATFORM)},
}

#: every ``raw.*`` name (``<...>`` stands for each value listed in the meaning) -> its meaning
RAW_NAMES: dict[str, str] = {
    "raw.address": "PCI address of the virtio-gpu the raw driver (gpuhil.raw) opened",
    "raw.features": "the feature word the raw driver negotiated (64-bit mask)",
    **{f"raw.feature.{name}": f"the raw driver negotiated "
                               f"{'VIRTIO_GPU_F_' if bit < 24 else 'VIRTIO_F_'}{name.upper()}"
       for name, bit in RAW_FEATURES.items()},
    "raw.hostmem": "bytes of the host-visible shared memory window (0: no RESOURCE_BLOB or "
                   "no window)",
    "raw.num_scanouts": "virtio_gpu_config.num_scanouts",
    "raw.num_capsets": "virtio_gpu_config.num_capsets",
    **{f"raw.capset.{c.name.lower()}": f"GET_CAPSET_INFO lists capset {c.name} ({int(c)})"
       for c in Capset},
    **{f"raw.capset.{c.name.lower()}.max_version": f"capset {c.name}'s capset_max_version"
       for c in Capset},
    "raw.error": "why the raw probe failed (absent when it worked)",
}


@dataclass(frozen=True)
class RawProbe:
    """What :func:`probe_raw_gpu` found (``error`` set, the rest empty, when it failed)."""

    address: str
    features: int = 0
    hostmem: int = 0
    num_scanouts: int = 0
    num_capsets: int = 0
    capsets: tuple[tuple[int, int, int], ...] = ()  # (id, max_version, max_size)
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The ``raw.*`` names and their values (only ``raw.address``/``raw.error`` after a
        failure, so every other name is absent)."""
        out: dict[str, Any] = {"raw.address": self.address}
        if self.error:
            out["raw.error"] = self.error
            return out
        out["raw.features"] = self.features
        for name, bit in RAW_FEATURES.items():
            out[f"raw.feature.{name}"] = bool(self.features >> bit & 1)
        out["raw.hostmem"] = self.hostmem
        out["raw.num_scanouts"] = self.num_scanouts
        out["raw.num_capsets"] = self.num_capsets
        for capset_id, max_version, _ in self.capsets:
            name = capset_name(capset_id)
            out[f"raw.capset.{name}"] = True
            out[f"raw.capset.{name}.max_version"] = max_version
        return out


def _read(address: Any) -> RawProbe:
    from gpuhil.raw.rawgpu import RawGpu

    with RawGpu.open(address) as gpu:
        cfg = gpu.config
        hostmem = len(gpu.hostmem) if gpu.features.has(Feature.RESOURCE_BLOB) else 0
        infos = gpu.submit_batch([GetCapsetInfo(i) for i in range(cfg.num_capsets)])
        capsets = tuple((i.capset_id, i.capset_max_version, i.capset_max_size)
                        for i in infos if isinstance(i, RespOkCapsetInfo))
        return RawProbe(str(address), gpu.features.negotiated, hostmem, cfg.num_scanouts,
                        cfg.num_capsets, capsets)


def probe_raw_gpu() -> RawProbe:
    """Probe the machine's virtio-gpu through the raw driver (run it where the device is);
    the device is bound to vfio-pci for the probe and given back to its driver afterwards
    (GpuhilError if that fails).  A device the raw driver cannot open gives ``error``."""
    address, _, original = bind_vfio(*VIRTIO_GPU)
    try:
        return probe_raw_target(address)
    finally:
        now = restore_driver(address, original)
        if now != original:
            raise GpuhilError(f"{address} went back to {now}, not {original}")


def probe_raw_target(target: Any) -> RawProbe:
    """Probe the device ``target`` names (a PCI address bound to vfio-pci, or a qtest
    machine's :class:`~gpuhil.qtest.transport.QtestGpu`: no binding needed); ``error`` when
    the raw driver cannot open it."""
    try:
        return _read(target)
    except GpuhilError as exc:
        return RawProbe(str(target), error=f"{type(exc).__name__}: {exc}".splitlines()[0])
