"""The capability snapshot: flattening into dotted names, QEMU/guest failure lines, and a real probe
of a lab guest (params, capsets with versions, features, udmabuf, QOM properties)."""
from __future__ import annotations

import pytest

from gpuhil.devices.virtgpu import Capset, Param
from gpuhil.gating.qemu_props import QEMU_TRACE_EVENTS
from gpuhil.gating.capabilities import (
    FEATURE_BITS, QEMU_GPU_PROPERTIES, Capabilities, CapsetInfo, GuestProbe, capset_summary,
    device_init_failure, param_name, probe_machine, qemu_properties,
)
from gpuhil.gating.capexpr import parse
from gpuhil.gating.catalogue import catalogue
from gpuhil.raw.probe import RawProbe
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
    assert probe.render_node == "/dev/dri/renderD128" and probe.kernel == gl_guest.info.kernel
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
    assert all(props[f"trace.{event}"] is True for event in QEMU_TRACE_EVENTS)  # 11.x has them
    with pytest.raises(Exception, match="virtio_gpu_cmd_res_no_such_event"):  # what 10.0 says
        gl_guest.qmp("trace-event-get-state", name="virtio_gpu_cmd_res_no_such_event")
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


RAW = RawProbe("0000:00:05.0", features=(1 << 32) | (1 << 33) | 0b11011, hostmem=256 << 20,
               num_scanouts=1, num_capsets=2, capsets=((2, 2, 1024), (4, 0, 160)))


def test_raw_probe_gives_raw_names():
    """The raw driver's probe flattens into raw.* names: features by name, hostmem, capsets."""
    values = Capabilities("raw", PROBE, raw=RAW).as_dict()
    assert values["raw.feature.resource_blob"] is True and values["raw.feature.edid"] is True
    assert values["raw.feature.resource_uuid"] is False
    assert values["raw.feature.version_1"] and values["raw.feature.access_platform"]
    assert values["raw.hostmem"] == 256 << 20 and values["raw.num_capsets"] == 2
    assert values["raw.capset.virgl2.max_version"] == 2 and "raw.capset.virgl" not in values
    assert parse("raw.feature.resource_blob and raw.hostmem >= 0x10000000").evaluate(values)
    assert "raw.hostmem" not in SNAPSHOT.as_dict()  # not a raw configuration: absent


def test_failed_raw_probe_leaves_the_names_absent():
    """A raw probe that failed gives raw.error and no raw.feature names (so requires skip)."""
    values = Capabilities("raw", PROBE, raw=RawProbe("0000:00:05.0", error="VirtioError: x"))
    values = values.as_dict()
    assert values["raw.error"] == "VirtioError: x" and "raw.feature.edid" not in values
    assert not parse("raw.feature.edid").evaluate(values)


def test_catalogue_lists_every_name_a_snapshot_can_have():
    """Every name as_dict produces (for a snapshot with everything set) is in the catalogue
    `gpuhil capabilities` prints, with a meaning."""
    full = GuestProbe(
        kernel="7.2", render_node="/dev/dri/renderD128",
        params={param_name(m.name): 1 for m in Param},
        capsets=tuple(CapsetInfo(int(c), c.name.lower(), 0) for c in Capset),
        features={name: True for name in FEATURE_BITS}, debugfs={"cap sets": "3"},
        udmabuf=True, udmabuf_size_limit_mb=64, udmabuf_list_limit=1024, vfio_dma_buf=True)
    raw = RawProbe("0000:00:05.0", features=(1 << 64) - 1, hostmem=1, num_scanouts=1,
                   num_capsets=len(Capset), capsets=tuple((int(c), 0, 1) for c in Capset))
    snapshot = Capabilities("raw", full, qemu_device="virtio-gpu-gl-pci",
                            qemu={p: 1 for p in QEMU_GPU_PROPERTIES}, device_error="x", raw=raw)
    names = catalogue()
    missing = set(snapshot.as_dict()) - set(names)
    assert not missing
    assert "raw.error" in names and all(names.values())


def test_capabilities_command_lists_the_catalogue(capsys):
    """`gpuhil capabilities` prints one line per catalogue name, name first."""
    from gpuhil.cli import main

    assert main(["capabilities"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(catalogue())
