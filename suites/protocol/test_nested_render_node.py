"""The lab-machine path in miniature: QEMU run inside the ``virgl`` lab guest with
virtio-gpu-gl rendering on the guest's own DRM render node (Mesa's virgl driver over the
guest's virtio-gpu), driven by the raw driver next to it, answers the protocol suite's
conformance cases as the host's device tier does.  Observed on QEMU 11.1.3 (quiet machine): the
inner QEMU is up in 4.8 s, offers the VIRGL and VIRGL2 capsets (the device has no venus=on),
and every context (default, VIRGL, VIRGL2) goes through its life cycle."""
from __future__ import annotations

import pytest

from gpuhil.devices.virtgpu import Capset
from suites.protocol import nested_payload

pytestmark = [pytest.mark.guest("virgl"), pytest.mark.requires("capset.virgl")]


def test_conformance_on_the_guests_render_node(virtgpu, record_property):
    """The inner QEMU answers GET_DISPLAY_INFO and a known capset for every index, takes a 2-D
    resource through its whole life cycle and a context per capset through create, submit,
    fenced submit and destroy, all OK: the commands a lab machine's QEMU must serve work on a
    real render node, not only on the host's llvmpipe."""
    out = virtgpu.call(nested_payload.conformance_on_render_node)
    if "unavailable" in out:
        pytest.skip(f"the guest's QEMU has no qtest accelerator: {out['unavailable']}")
    record_property("inner_qemu_start_s", out["start_seconds"])
    queries = out["queries"]
    assert queries["display"][0] == "RESP_OK_DISPLAY_INFO", out
    ids = [entry["id"] for entry in queries["capsets"][:-1]]
    assert int(Capset.VIRGL) in ids and all(entry["info"] == "RESP_OK_CAPSET_INFO"
                                            for entry in queries["capsets"][:-1]), out
    assert out["lifecycle_2d"] == [(name, "RESP_OK_NODATA") for name, _ in out["lifecycle_2d"]], out
    for init, steps in out["contexts"].items():
        assert all(resp.startswith("RESP_OK_NODATA") for _, resp in steps), (init, steps, out["qemu"])
