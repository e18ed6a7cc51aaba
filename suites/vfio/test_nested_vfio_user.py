"""vfio-user, the other side of seed 004's gate: QEMU's vfio-user I/O backend does not set
``VFIO_IO_CAP_DMA_BUF``, so a ``vfio-user-pci`` device maps the server's BAR with no dma-buf
and no fallback message, where the kernel-VFIO backend makes one dma-buf per mmapped BAR
(:mod:`suites.vfio.test_nested_qemu`).

Debian (sid and stable) and PyPI package no vfio-user server (checked 2026-12-07 in sid's
Packages index and on PyPI), so the server is gpuhil's own
(:class:`gpuhil.nested.vfio_user_server.VfioUserServer`: one function, a 64 KiB memfd RAM BAR
0), run beside the inner QEMU in the lab guest."""
from __future__ import annotations

import pytest

from gpuhil.nested.vfio_user_server import GET_REGION_INFO, REGION_READ, VERSION
from suites.vfio import nested_payload


@pytest.mark.parametrize("guest", ["vfio"], indirect=True)
def test_vfio_user_device_maps_its_bar_without_a_dma_buf(guest):
    """An inner QEMU with vfio-user-pci realizes the device from the server (version, region
    info, config reads), mmaps BAR 0 from the server's memfd, holds no dma-buf and prints no
    dma-buf fallback: the backend gate keeps QEMU from asking a backend that cannot export."""
    if not guest.call(nested_payload.has_device, "vfio-user-pci"):
        pytest.skip(f"the guest's QEMU {guest.call(nested_payload.qemu_version)} has no "
                    f"vfio-user-pci device")
    out = guest.call(nested_payload.vfio_user_protocol)
    assert out["server_error"] is None, out
    assert {VERSION, GET_REGION_INFO, REGION_READ} <= set(out["commands"]), out
    assert out["bar_mapped"] is True, out
    assert out["dma_bufs"] == [] and out["dma_buf_lines"] == [], out
    assert out["traced"] is None or out["traced"] > 0, out
    assert out["socket_gone"] is True, out
