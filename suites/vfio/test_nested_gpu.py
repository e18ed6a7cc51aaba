"""virtio-gpu of a QEMU run inside the lab guest (the nested tier), driven by the raw driver
next to it: what needs the guest's udmabuf (the host has none) and QEMU's own VFIO devices.

Observed on QEMU 11.1.3 in Linux 7.2 (the guest root's QEMU):

- the 2-D ``virtio-gpu-pci,blob=on`` on memfd RAM scans a GUEST blob out (udmabuf), and
  refuses every framebuffer outside the blob or of an unknown format with
  ERR_INVALID_PARAMETER (``virtio_gpu_scanout_blob_to_fb: invalid fb bounds``), a 2-D resource
  with ERR_UNSPEC (``no backing storage``);
- seed 001 without its series: a GUEST blob whose memory is a vfio-pci BAR is refused at
  CREATE_BLOB with ERR_UNSPEC (``virtio_gpu_create_mapping_iov: failed to map MMIO memory for
  element 0``); scanout and flush of it are ERR_INVALID_RESOURCE_ID, the device keeps working.
"""
from __future__ import annotations

import pytest

from suites.protocol.scanout_payload import BEFORE_DMABUF, BOUNDS
from suites.vfio import nested_gpu_payload

pytestmark = [pytest.mark.guest("vfio"), pytest.mark.requires("vfio.dma_buf and udmabuf")]

OK = "RESP_OK_NODATA"
SCANNED_OUT = {"create": OK, "scanout": OK, "flush": OK, "disable": OK, "unref": OK}


def _checked(out: dict) -> dict:
    if "unavailable" in out:
        pytest.skip(f"the guest's QEMU has no qtest accelerator: {out['unavailable']}")
    return out


def test_blob_scanout_bounds_on_the_2d_device_with_udmabuf(vfio):
    """On the 2-D device with blob resources (udmabuf in the guest), a GUEST blob is scanned out
    and every framebuffer that does not fit the blob or its format is refused with an error, so
    the bounds the host tier cannot reach (no host udmabuf) are checked where QEMU has one."""
    out = _checked(vfio.call(nested_gpu_payload.scanout_cases_on_2d_device))
    assert (out["create"], out["create_2d"]) == (OK, OK), out
    assert out["cases"]["valid"] == OK, out
    assert {case: out["cases"][case] for case in BEFORE_DMABUF} == BEFORE_DMABUF, out
    assert all(out["cases"][case].startswith("RESP_ERR_") for case in BOUNDS), out
    assert "invalid fb bounds" in out["qemu"], out
    assert (out["display"], out["unref"]) == ("RESP_OK_DISPLAY_INFO", [OK, OK]), out


def test_guest_blob_in_a_vfio_bar_is_scanned_out_or_refused_by_name(vfio, record_property):
    """Seed 001: a GUEST blob whose memory is ivshmem's BAR (through QEMU's vfio-pci) is either
    scanned out like a blob in RAM (a QEMU with the 'dma-buf from VFIO ranges' series) or
    refused at CREATE_BLOB with QEMU naming the MMIO mapping it cannot make, never accepted
    half-way, and the device keeps scanning out RAM blobs either way."""
    out = _checked(vfio.call(nested_gpu_payload.blob_in_vfio_bar))
    assert out["ram"] == SCANNED_OUT, out
    accepted = out["vfio_bar"]["create"] == OK
    record_property("vfio_blob_accepted", accepted)
    if accepted:
        assert out["vfio_bar"] == SCANNED_OUT, out
    else:
        assert out["vfio_bar"] == {"create": "RESP_ERR_UNSPEC",
                                   "scanout": "RESP_ERR_INVALID_RESOURCE_ID",
                                   "flush": "RESP_ERR_INVALID_RESOURCE_ID",
                                   "disable": OK, "unref": "RESP_ERR_INVALID_RESOURCE_ID"}, out
        assert "failed to map MMIO memory for element 0" in out["qemu"], out
    assert out["display"] == "RESP_OK_DISPLAY_INFO", out
