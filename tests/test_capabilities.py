"""The capability snapshot: flattening into dotted names, QEMU/guest failure lines, and a real probe
of a lab guest (params, capsets with versions, features, udmabuf, QOM properties)."""
from __future__ import annotations

import pytest

from gpuhil.gating.capabilities import (
    Capabilities, CapsetInfo, GuestProbe, capset_summary, device_init_failure, probe_machine,
    qemu_properties,
)
from gpuhil.pytestplugin.gating import describe_values

PROBE = GuestProbe(
    kernel="7.2.13+deb14-amd64", render_node="/dev/dri/renderD128",
    params={"3d_features": 1, "host_visible": 1, "supported_capset_ids": 0x16},
    param_errors={"blob_alignment": "ENOENT"},
    capsets=(CapsetInfo(1, "virgl", 1), CapsetInfo(2, "virgl2", 2), CapsetInfo(4, "venus", 0)),
    features={"virgl": True, "blob_alignment": False}, udmabuf=True, udmabuf_size_limit_mb=64)
SNAPSHOT = Capabilities("venus", PROBE, host_kernel="6.18.0", qemu_device="virtio-gpu-gl-pci",
                        qemu={"hostmem": 256 << 20, "venus": True})


def test_as_dict_flattens_into_dotted_names():
    values = SNAPSHOT.as_dict()
    assert values["param.3d_features"] == 1
    assert "param.blob_alignment" not in values  # absent, not 0
    assert values["capset.venus"] is True and values["capset.venus.max_version"] == 0
    assert values["capset.virgl2.max_version"] == 2 and "capset.drm" not in values
    assert values["feature.blob_alignment"] is False
    assert values["renderer.venus"] is True and values["renderer.drm_native_context"] is False
    assert values["udmabuf.size_limit_mb"] == 64
    assert values["kernel.guest"] == "7.2.13+deb14-amd64" and values["kernel.host"] == "6.18.0"
    assert values["qemu.hostmem"] == 256 << 20 and values["qemu.device"] == "virtio-gpu-gl-pci"


def test_probed_values_in_reasons():
    assert capset_summary(PROBE) == "virgl v1, virgl2 v2, venus v0"
    assert describe_values(("capset.drm",), SNAPSHOT) == \
        "capset.drm=absent (capsets: virgl v1, virgl2 v2, venus v0)"
    assert describe_values(("param.blob_alignment", "param.host_visible"), SNAPSHOT) == \
        "param.blob_alignment=absent (GETPARAM: ENOENT), param.host_visible=1"


def test_device_init_failure_lines():
    qemu = ("MESA-LOADER: failed to retrieve device information\n"
            "DRM native context support was not enabled in virglrenderer\n"
            "failed to initialize drm rendererqemu-system-x86_64: virgl could not be initialized: -1\n")
    guest = ["[    9.1] [drm:virtio_gpu_init] *ERROR* timed out waiting for cap set 0", "[ 9.2] ok"]
    assert device_init_failure(qemu, guest) == [
        "DRM native context support was not enabled in virglrenderer",
        "failed to initialize drm rendererqemu-system-x86_64: virgl could not be initialized: -1",
        "[    9.1] [drm:virtio_gpu_init] *ERROR* timed out waiting for cap set 0"]
    assert device_init_failure("MESA-LOADER: failed to get driver name for fd 9\n") == []


@pytest.mark.lab
def test_probe_of_a_real_guest(gl_guest):
    probe = gl_guest.call(probe_machine, "/dev/dri/renderD128")
    assert probe.render_node == "/dev/dri/renderD128" and probe.kernel.startswith("7.")
    mask = probe.params["supported_capset_ids"]
    assert sorted(c.id for c in probe.capsets) == [i for i in range(32) if mask & (1 << i)]
    assert probe.params["3d_features"] == int(probe.features["virgl"])
    assert probe.params["resource_blob"] == int(probe.features["resource_blob"])
    assert ("blob_alignment" in probe.params) == probe.features["blob_alignment"]
    assert int(probe.debugfs["cap sets"]) == len(probe.capsets)
    assert probe.udmabuf and probe.udmabuf_size_limit_mb and probe.udmabuf_size_limit_mb > 0
    assert probe.vfio_dma_buf is None  # not asked for
    device, props = qemu_properties(gl_guest.qmp)
    assert device == "virtio-gpu-gl-pci"
    assert props["blob"] is True and props["venus"] is True and props["hostmem"] == 256 << 20
    snapshot = Capabilities("venus", probe, qemu_device=device, qemu=props).as_dict()
    assert snapshot["renderer.venus"] is True


@pytest.mark.lab
def test_vfio_dma_buf_probe_restores_the_driver(vfio_guest):
    before = vfio_guest.call(_ivshmem_driver)
    probe = vfio_guest.call(probe_machine, gpu=False, vfio=True)
    assert probe.vfio_dma_buf is True, probe.vfio_detail
    assert vfio_guest.call(_ivshmem_driver) == before


def _ivshmem_driver() -> str | None:
    from gpuhil.devices import pci

    return pci.find(0x1AF4, 0x1110)[0].driver
