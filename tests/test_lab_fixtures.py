"""The device fixtures hold what their contract promises."""
from __future__ import annotations

import pytest

from gpuhil.devices import pci_ids
from gpuhil.lab.guest import Guest
from tests import lab_payloads

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]

VIRTIO_GPU = str(pci_ids.VIRTIO_GPU)
IVSHMEM, EDU = str(pci_ids.IVSHMEM), str(pci_ids.EDU)


def test_gl_guest_has_the_3d_gpu_and_its_render_node(gl_guest: Guest):
    assert VIRTIO_GPU in gl_guest.call(lab_payloads.pci_ids)
    assert gl_guest.run(["test", "-c", "/dev/dri/renderD128"]).returncode == 0
    features = "\n".join(gl_guest.kernel_log())
    assert "+virgl" in features and "+resource_blob" in features and "+host_visible" in features


def test_vfio_guest_has_vtd_groups_ivshmem_and_edu(vfio_guest: Guest):
    ids = vfio_guest.call(lab_payloads.pci_ids)
    assert IVSHMEM in ids and EDU in ids
    assert vfio_guest.call(lab_payloads.iommu_group_of, IVSHMEM) == [IVSHMEM]
    assert vfio_guest.call(lab_payloads.iommu_group_of, EDU) == [EDU]
    assert "intel_iommu=on" in vfio_guest.run(["cat", "/proc/cmdline"]).stdout.decode()


def test_virtio_iommu_guest_boots_with_its_devices_behind_it(lab_setup, tmp_path):
    """`--vfio virtio-iommu`: the 9p and serial devices sit behind virtio-iommu, so the guest only
    boots when the initramfs loaded virtio-iommu first; ivshmem gets its own group."""
    from gpuhil.lab.spec import GuestSpec, Iommu, Ivshmem
    from tests.conftest import boot_guest

    guest = boot_guest(GuestSpec(iommu=Iommu.VIRTIO, devices=(Ivshmem(),)), lab_setup, tmp_path,
                       "viommu")
    try:
        assert guest.call(lab_payloads.iommu_group_of, IVSHMEM) == [IVSHMEM]
    finally:
        guest.close()
