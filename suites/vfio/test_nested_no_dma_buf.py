"""QEMU's VFIO BARs on a kernel without VFIO dma-buf (seed 004's other side, from the user of
the device): the guest kernel's VFIO_DEVICE_FEATURE_DMA_BUF (Linux 6.19 and later) is probed;
where the kernel has it, the inner QEMU is given the answer a kernel before it gives (ENOTTY for
the feature, through a seccomp filter, gpuhil.nested.seccomp), where it lacks it, the kernel
as it is.  Either way QEMU must fall back to a plain mmap, say so once, and the device must work."""
from __future__ import annotations

import pytest

from suites.vfio import nested_payload
from suites.vfio.configs import IOMMUS

pytestmark = pytest.mark.parametrize("guest", IOMMUS, indirect=True)


def test_without_vfio_dma_buf_qemu_falls_back_to_mmap_and_the_device_works(vfio, capabilities):
    """The inner QEMU makes no dma-buf, says once for the device that the kernel has no VFIO
    dma-buf and it uses the mmap fallback, still mmaps both of ivshmem's BARs, reads back what
    it wrote there and frees the group: older kernels are what most users' hosts run."""
    has_feature = capabilities.as_dict().get("vfio.dma_buf") is True
    out = vfio.call(nested_payload.without_dma_buf, 2, has_feature)
    if "unavailable" in out:
        pytest.skip(out["unavailable"])
    if "dma_bufs" not in out:
        pytest.skip(f"QEMU {out['qemu_version']} in the guest tries no dma-buf per VFIO BAR "
                    f"(since 11.0)")
    assert out["dma_bufs"] == [], out
    # as found on 11.1.3: one warning per device, not one per BAR
    fallbacks = [line for line in out["dma_buf_lines"] if "using mmap fallback" in line]
    assert len(fallbacks) == 1 and "VFIO dma-buf not supported in kernel" in fallbacks[0], out
    if "vfio_region_mmap" in out["traces"]:  # both BARs still mapped, not trapped
        assert sorted(line.split(" BAR ")[1].split()[0] for line in out["mmap_lines"]) \
            == ["0", "2"], out
    assert out["readback_equal"] is True, out
    assert (out["process_gone"], out["group_after"]) == (True, "free"), out
