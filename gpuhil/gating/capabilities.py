"""The capability snapshot: what a (guest) machine's virtio-gpu stack can do, probed at run time.

:func:`probe_machine` runs where the device is (in a lab guest through ``guest.call``, or in
process on a ``local`` target) and reads GETPARAM values, the capsets and their highest
versions, the virtio device feature bits, the driver's debugfs summary, udmabuf and its limits,
VFIO DMA_BUF export (on a device it binds to vfio-pci and restores) and the kernel release;
on a raw configuration :func:`gpuhil.raw.probe.probe_raw_gpu` adds what the raw driver found.
:func:`qemu_properties` (:mod:`gpuhil.gating.qemu_props`) reads the GPU's QOM properties over
QMP on the host.  The result is one :class:`Capabilities`; :meth:`Capabilities.as_dict`
flattens it into dotted names (``capset.venus``, ``param.host_visible``, ``kernel.guest``,
``raw.feature.resource_blob``) that ``requires`` expressions and reports use;
:mod:`gpuhil.gating.catalogue` lists them all.  A name that was not found is absent from that
dict.

This module is imported in the guest: standard library and gpuhil only, no pytest.
"""
from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuhil.devices.pci_ids import EDU, IVSHMEM
from gpuhil.gating.qemu_props import QEMU_GPU_PROPERTIES, qemu_properties
from gpuhil.errors import GpuhilError, IoctlError

if TYPE_CHECKING:
    from gpuhil.raw.probe import RawProbe

__all__ = [
    "Capabilities", "CapsetInfo", "DEVICE_INIT_FAILURES", "DeviceInitError", "FEATURE_BITS",
    "GuestProbe", "QEMU_GPU_PROPERTIES", "capset_summary", "device_init_failure", "probe_machine",
    "qemu_properties",
]

#: virtio-gpu device feature bits (``VIRTIO_GPU_F_*``) by name.
FEATURE_BITS = {"virgl": 0, "edid": 1, "resource_uuid": 2, "resource_blob": 3,
                "context_init": 4, "blob_alignment": 5}
VIRTIO_ID_GPU = 16
VIRTIO_DEVICES = Path("/sys/bus/virtio/devices")
DEBUGFS = Path("/sys/kernel/debug")

#: What QEMU (or virglrenderer through it) prints when the GPU's renderer cannot start; after
#: that the guest waits for capsets that never come (QEMU.md §3.1, LAB.md §4 item 7).
DEVICE_INIT_FAILURES = (
    "DRM native context support was not enabled in virglrenderer",
    "Render server support was not enabled in virglrenderer",
    "drm requires egl display and virglrenderer",
    "failed to initialize drm renderer",
    "virgl could not be initialized",
)
#: The guest driver's side of the same failure.
GUEST_CAPSET_TIMEOUT = "timed out waiting for cap set"

MAX_CAPSET_VERSION_PROBED = 16


class DeviceInitError(GpuhilError):
    """The GPU device exists but its renderer could not initialize (a capability gap of the
    host, not a hang): ``lines`` are what QEMU and the guest printed about it."""

    def __init__(self, message: str, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(message + "".join(f"\n    {line}" for line in lines))


def device_init_failure(qemu_output: str, guest_log: list[str] | None = None) -> list[str]:
    """The lines of ``qemu_output`` (and the guest kernel log) that say the renderer failed."""
    found = [line.strip() for line in qemu_output.splitlines()
             if any(mark in line for mark in DEVICE_INIT_FAILURES)]
    found += [line.strip() for line in guest_log or () if GUEST_CAPSET_TIMEOUT in line]
    return found


@dataclass(frozen=True)
class CapsetInfo:
    """One capset the device advertises: its highest version GET_CAPS accepts and the
    first words of its payload (v0 header; e.g. virgl's own ``max_version``)."""

    id: int
    name: str
    max_version: int
    header: tuple[int, ...] = ()  # the first four little-endian u32 of GET_CAPS(version=max)
    payload_bytes: int = 0        # up to the last non-zero byte of a 4 KiB GET_CAPS


@dataclass(frozen=True)
class GuestProbe:
    """What :func:`probe_machine` found on the machine that has the device."""

    kernel: str
    render_node: str | None = None
    driver_version: str | None = None
    params: dict[str, int] = field(default_factory=dict)         # absent when GETPARAM fails
    param_errors: dict[str, str] = field(default_factory=dict)   # name -> errno name
    capsets: tuple[CapsetInfo, ...] = ()
    features: dict[str, bool] = field(default_factory=dict)
    feature_bits: str | None = None                              # sysfs 'features' string
    debugfs: dict[str, str] = field(default_factory=dict)        # virtio-gpu-features lines
    udmabuf: bool = False
    udmabuf_size_limit_mb: int | None = None
    udmabuf_list_limit: int | None = None
    vfio_dma_buf: bool | None = None                             # None: no device was probed
    vfio_detail: str = ""


@dataclass(frozen=True)
class Capabilities:
    """The snapshot of one machine configuration (a guest spec, or the local machine)."""

    configuration: str
    probe: GuestProbe
    host_kernel: str = field(default_factory=lambda: os.uname().release)
    qemu_device: str | None = None
    qemu: dict[str, Any] = field(default_factory=dict)
    device_error: str | None = None
    raw: RawProbe | None = None  # the raw driver's probe, on a raw configuration

    def capset(self, name: str) -> CapsetInfo | None:
        return next((c for c in self.probe.capsets if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        """Flat dotted names -> values; names that were not found are left out (absent)."""
        out: dict[str, Any] = {"configuration": self.configuration,
                               "kernel.guest": self.probe.kernel, "kernel.host": self.host_kernel}
        p = self.probe
        if p.render_node:
            out["render_node"] = p.render_node
        for name, value in p.params.items():
            out[f"param.{name}"] = value
        for c in p.capsets:
            out[f"capset.{c.name}"] = True
            out[f"capset.{c.name}.max_version"] = c.max_version
        for name, present in p.features.items():
            out[f"feature.{name}"] = present
        if p.debugfs.get("cap sets", "").isdigit():
            out["debugfs.cap_sets"] = int(p.debugfs["cap sets"])
        names = {c.name for c in p.capsets}
        if p.capsets or self.device_error:
            out["renderer.venus"] = "venus" in names
            out["renderer.drm_native_context"] = "drm" in names
            out["renderer.virgl"] = bool(names & {"virgl", "virgl2"})
        out["udmabuf"] = p.udmabuf
        if p.udmabuf_size_limit_mb is not None:
            out["udmabuf.size_limit_mb"] = p.udmabuf_size_limit_mb
        if p.udmabuf_list_limit is not None:
            out["udmabuf.list_limit"] = p.udmabuf_list_limit
        if p.vfio_dma_buf is not None:
            out["vfio.dma_buf"] = p.vfio_dma_buf
        if self.qemu_device:
            out["qemu.device"] = self.qemu_device
        for name, value in self.qemu.items():
            out[f"qemu.{name}"] = value
        if self.device_error:
            out["device.error"] = self.device_error
        if self.raw is not None:
            out.update(self.raw.as_dict())
        return out


def capset_summary(probe: GuestProbe) -> str:
    """``virgl v1, virgl2 v2, venus v0`` (or ``none``)."""
    return ", ".join(f"{c.name} v{c.max_version}" for c in probe.capsets) or "none"


# --- probing where the device is ---------------------------------------------------------------

def param_name(member_name: str) -> str:
    """The capability name (``param.<this>``) of a virtgpu.Param member."""
    return "3d_features" if member_name == "FEATURES_3D" else member_name.lower()


def _probe_render_node(node_path: str | None) -> dict[str, Any]:
    from gpuhil.devices.virtgpu import Param, RenderNode
    from gpuhil.protocol import capset_name

    found: dict[str, Any] = {}
    with RenderNode.open(node_path) as node:
        found["render_node"] = node.path
        version = node.version()
        found["driver_version"] = f"{version.name} {version.major}.{version.minor}.{version.patchlevel}"
        params: dict[str, int] = {}
        errors: dict[str, str] = {}
        for member in Param:
            try:
                params[param_name(member.name)] = node.getparam(member)
            except IoctlError as exc:
                errors[param_name(member.name)] = errno.errorcode.get(exc.errno, str(exc.errno))
        found["params"], found["param_errors"] = params, errors
        capsets = []
        mask = params.get("supported_capset_ids", 0)
        for capset_id in (i for i in range(32) if mask & (1 << i)):
            name = capset_name(capset_id)
            max_version, data = -1, b""
            for version_no in range(MAX_CAPSET_VERSION_PROBED + 1):
                try:
                    data = node.get_caps(capset_id, version_no)
                except IoctlError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    break
                max_version = version_no
            header = struct.unpack_from("<4I", data) if len(data) >= 16 else ()
            capsets.append(CapsetInfo(capset_id, name, max_version, header,
                                      len(data.rstrip(b"\0"))))
        found["capsets"] = tuple(capsets)
    return found


def _virtio_gpu_features(devices: Path = VIRTIO_DEVICES) -> tuple[dict[str, bool], str | None]:
    for device in sorted(devices.glob("virtio*")) if devices.is_dir() else ():
        try:
            if int((device / "device").read_text(), 16) != VIRTIO_ID_GPU:
                continue
            bits = (device / "features").read_text().strip()
        except (OSError, ValueError):
            continue
        return ({name: len(bits) > bit and bits[bit] == "1" for name, bit in FEATURE_BITS.items()},
                bits)
    return {}, None


def _debugfs_summary(debugfs: Path = DEBUGFS) -> dict[str, str]:
    from gpuhil.devices.debugfs import ensure_mounted
    ensure_mounted(debugfs, required=False)
    for path in sorted(debugfs.glob("dri/*/virtio-gpu-features")):
        try:
            text = path.read_text()
        except OSError:
            continue
        return {k.strip(): v.strip() for k, _, v in (l.partition(":") for l in text.splitlines()) if v}
    return {}


def _probe_vfio_dma_buf() -> tuple[bool | None, str]:
    """DEVICE_FEATURE PROBE of DMA_BUF on the first ivshmem/edu device, bound to vfio-pci and
    restored afterwards; None when the machine has no such device behind an IOMMU."""
    from gpuhil.devices import pci
    from gpuhil.devices.vfio import Container, Extension, Feature, Group

    candidates = pci.find(*IVSHMEM) + pci.find(*EDU)
    candidates = [d for d in candidates if d.iommu_group is not None]
    if not candidates:
        return None, "no ivshmem or edu device behind an IOMMU"
    device = candidates[0]
    try:
        pci.modprobe("vfio-pci", "vfio_iommu_type1")
        with device.bound_to("vfio-pci"):
            with Container() as container, Group.of(device.address) as group:
                group.set_container(container)
                container.set_iommu(Extension.TYPE1v2)
                with group.device(device.address) as vfio_device:
                    return vfio_device.supports_feature(Feature.DMA_BUF), device.address
    except GpuhilError as exc:
        return False, f"{device.address}: {exc}"


def probe_machine(render_node: str | None = None, *, gpu: bool = True, vfio: bool = False) -> GuestProbe:
    """Probe this machine (run it where the device is: ``guest.call(probe_machine, ...)``).

    ``gpu``: open the virtio-gpu render node (the driver must be loaded); ``vfio``: bind a lab
    PCI device to vfio-pci to probe DMA_BUF export.
    """
    from gpuhil.devices import udmabuf

    found: dict[str, Any] = {"kernel": os.uname().release}
    features, bits = _virtio_gpu_features()
    found["features"], found["feature_bits"] = features, bits
    if gpu and bits is not None:
        found.update(_probe_render_node(render_node))
        found["debugfs"] = _debugfs_summary()
    found["udmabuf"] = os.path.exists(udmabuf.DEFAULT_PATH)
    limits = udmabuf.limits()
    found["udmabuf_size_limit_mb"] = limits.size_limit_mb
    found["udmabuf_list_limit"] = limits.list_limit
    if vfio:
        found["vfio_dma_buf"], found["vfio_detail"] = _probe_vfio_dma_buf()
    return GuestProbe(**found)
