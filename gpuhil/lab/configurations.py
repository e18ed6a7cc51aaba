"""The named guest configurations: the one catalogue the plugin, the CLI, the tests and the
suites pick guests from (``@pytest.mark.guest("venus")``, ``--gpuhil-guest``, ``gpuhil lab boot``),
and the named device-tier configurations (:data:`DEVICE_CONFIGURATIONS`: QEMU under qtest with
a GPU and no guest, ``@pytest.mark.guest("qtest-venus")``).

A spec that is not in the catalogue gets a label derived from its contents
(:func:`label_of`), the same in every worker and every run.
"""
from __future__ import annotations

import hashlib

from gpuhil.lab.qtest_spec import QtestSpec
from gpuhil.lab.spec import (
    MiB, VENUS_GPU, VIRGL_GPU, Edu, GpuModel, GpuSpec, GuestSpec, Iommu, Ivshmem,
)

__all__ = ["CONFIGURATIONS", "DEVICE_CONFIGURATIONS", "GPUS", "IOMMUS", "is_raw_spec", "label_of"]

#: The GPUs by name (``gpuhil lab boot --gpu NAME``).
GPUS: dict[str, GpuSpec | None] = {"venus": VENUS_GPU, "virgl": VIRGL_GPU, "none": None}

#: The vIOMMUs by name (``gpuhil lab boot --vfio NAME``).
IOMMUS: dict[str, Iommu] = {"vtd": Iommu.INTEL, "virtio-iommu": Iommu.VIRTIO}

#: The PCI devices a vIOMMU guest gets for VFIO: ivshmem-plain (memfd) and edu.
VFIO_DEVICES = (Ivshmem(), Edu())

CONFIGURATIONS: dict[str, GuestSpec] = {
    "plain": GuestSpec(),
    "venus": GuestSpec(gpu=VENUS_GPU),
    "virgl": GuestSpec(gpu=VIRGL_GPU),
    "blob2d": GuestSpec(gpu=GpuSpec(GpuModel.VIRTIO_GPU_GL, blob=True, hostmem=256 * MiB)),
    "drm": GuestSpec(gpu=GpuSpec(GpuModel.VIRTIO_GPU_GL, blob=True, hostmem=256 * MiB,
                                 drm_native_context=True)),
    "vfio": GuestSpec(iommu=Iommu.INTEL, devices=VFIO_DEVICES),
    # virtio-iommu has no interrupt remapping: vfio_iommu_type1 refuses a group (EPERM) unless
    # allow_unsafe_interrupts is set, so the guest sets it and the boot-time probe sees VFIO.
    "virtio-iommu": GuestSpec(iommu=Iommu.VIRTIO, devices=VFIO_DEVICES,
                              kernel_args=("vfio_iommu_type1.allow_unsafe_interrupts=1",)),
    # virtio-gpu behind the vIOMMU, left to vfio-pci for the raw driver (raw_gpu fixture)
    "raw": GuestSpec(gpu=GpuSpec(GpuModel.VIRTIO_GPU_GL, blob=True, hostmem=256 * MiB,
                                 venus=True, iommu_platform=True),
                     iommu=Iommu.INTEL, kernel_args=("iommu=nopt",)),
}

#: QEMU under qtest, no guest: the device tier of the raw path (RawGpu over qtest).  Guest RAM
#: is 512 MiB, room for the raw driver's rings, arena and resource backing.
DEVICE_CONFIGURATIONS: dict[str, QtestSpec] = {
    # the "raw" guest's device without the vIOMMU: venus + virgl, blobs, 256 MiB hostmem
    "qtest-venus": QtestSpec(gpu=VENUS_GPU, ram_mib=512),
    "qtest-virgl": QtestSpec(gpu=VIRGL_GPU, ram_mib=512),
    "qtest-blob": QtestSpec(gpu=GpuSpec(GpuModel.VIRTIO_GPU_GL, blob=True, hostmem=256 * MiB),
                            ram_mib=512),
}


def label_of(spec: GuestSpec | QtestSpec) -> str:
    """The catalogue name of ``spec``, else ``custom:<device>:<digest of the spec>`` (stable
    across workers and runs, unlike ``hash()``)."""
    for label, known in [*CONFIGURATIONS.items(), *DEVICE_CONFIGURATIONS.items()]:
        if known == spec:
            return label
    gpu = spec.gpu.device_arg() if spec.gpu else "nogpu"
    kind = "qtest:" if isinstance(spec, QtestSpec) else ""
    return f"custom:{kind}{gpu}:{hashlib.sha256(repr(spec).encode()).hexdigest()[:8]}"


def is_raw_spec(spec: GuestSpec | QtestSpec) -> bool:
    """A configuration whose virtio-gpu is for the raw driver: behind a vIOMMU with
    iommu_platform=on (its virtio_gpu driver is never loaded), or on a qtest machine."""
    if isinstance(spec, QtestSpec):
        return spec.gpu is not None
    return spec.gpu is not None and bool(spec.gpu.iommu_platform) and spec.iommu is not None
