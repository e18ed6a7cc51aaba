"""SET_SCANOUT_BLOB: a GUEST blob (DMA memory) on scanout 0 with good and bad framebuffer
parameters.  QEMU scans a blob out only through a dma-buf of it (udmabuf on the host for a
GUEST blob); where it has none it refuses every otherwise valid request ("resource not backed
by dmabuf"), so the framebuffer bounds are checked only where the valid case works."""
from __future__ import annotations

import pytest

from suites.protocol import scanout_payload
from suites.protocol.scanout_payload import BEFORE_DMABUF, BOUNDS

pytestmark = pytest.mark.requires("raw.feature.resource_blob")

@pytest.fixture
def scanouts(raw_gpu, qemu_log):
    out = raw_gpu.call(scanout_payload.scanout_blob_cases)
    out["qemu"] = qemu_log.text()
    assert raw_gpu.machine.alive, out
    assert (out["create"], out["create_2d"]) == ("RESP_OK_NODATA", "RESP_OK_NODATA"), out
    assert out["display"] == "RESP_OK_DISPLAY_INFO", out
    assert out["unref"] == ["RESP_OK_NODATA"] * 2, out
    return out


def test_scanout_blob_refuses_bad_ids_and_rects(scanouts):
    """A scanout id out of range, an unknown resource and a rectangle outside the framebuffer
    get their specific errors and a disable (resource 0) succeeds, whether or not the host can
    scan the blob out, so a bad SET_SCANOUT_BLOB never changes what is displayed."""
    got = {case: scanouts["cases"][case] for case in BEFORE_DMABUF}
    assert got == BEFORE_DMABUF, scanouts


def test_scanout_blob_refuses_framebuffers_outside_the_blob(scanouts):
    """Where the valid blob scanout works, an unknown format, a first offset or stride that
    puts the framebuffer past the blob's end, an offset wrapping 32 bits and a resource that is
    not a blob are refused, so the device never reads past the guest's memory for scanout."""
    valid = scanouts["cases"]["valid"]
    if valid != "RESP_OK_NODATA":
        assert valid.startswith("RESP_ERR_"), scanouts
        if "not backed by dmabuf" in scanouts["qemu"]:
            pytest.skip("QEMU refused the valid blob scanout with 'resource not backed by dmabuf' "
                        "(it scans a blob out through a dma-buf of it: udmabuf on the host for "
                        "a GUEST blob), so the framebuffer bounds are unreachable here")
        pytest.fail(f"the valid SET_SCANOUT_BLOB was refused: {valid}; QEMU: "
                    f"{scanouts['qemu'][-1000:]}")
    got = {case: scanouts["cases"][case] for case in BOUNDS}
    assert all(r.startswith("RESP_ERR_") for r in got.values()), got
