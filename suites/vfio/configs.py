"""The vfio suite's guest configurations and the host-side view of QEMU's ivshmem memfd.

Two vIOMMUs: the named "vfio" configuration (q35 + intel-iommu with interrupt remapping) and a
virtio-iommu guest.  virtio-iommu has no interrupt remapping, so vfio_iommu_type1 refuses to
attach a group (EPERM) unless ``allow_unsafe_interrupts`` is set; that guest sets it on its
kernel command line so that the boot-time capability probe (``vfio.dma_buf``) sees a usable
VFIO, and ``test_iommu_setup`` checks the refusal with the parameter turned off.
"""
from __future__ import annotations

import os

import pytest

from gpuhil.devices.pci_ids import EDU, IVSHMEM
from gpuhil.lab.spec import Iommu, Ivshmem

#: ``@pytest.mark.parametrize("guest", IOMMUS, indirect=True)``: run a test under both vIOMMUs.
IOMMUS = [pytest.param("vfio", id="intel-iommu"), pytest.param("virtio-iommu", id="virtio-iommu")]

IVSHMEM_SIZE = Ivshmem().size


def qemu_memfd(pid: int, size: int) -> str | None:
    """``/proc/<pid>/fd/<n>`` of QEMU's memfd of ``size`` bytes (the ivshmem backend), or None."""
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        path = os.path.join(fd_dir, name)
        try:
            if os.readlink(path).startswith("/memfd:") and os.stat(path).st_size == size:
                return path
        except OSError:
            continue
    return None
