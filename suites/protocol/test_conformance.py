"""Conformance: every command the device advertises gets the response type and payload the
virtio-gpu spec and the device's negotiated features imply (raw virtqueue, no guest driver)."""
from __future__ import annotations

from gpuhil.raw.qemu_log import parse
import pytest

from suites.protocol import payloads

EDID_HEADER = bytes.fromhex("00ffffffffffff00")


def test_features_and_config(raw_gpu, facts):
    """The device negotiated VERSION_1, and ACCESS_PLATFORM exactly where it sits behind the
    vIOMMU (VFIO; under qtest there is no IOMMU to honour), and its config space names at
    least one scanout, so the raw driver set the device up right."""
    assert facts["features"] >> 32 & 1, f"VERSION_1 missing from {facts['features']:#x}"
    behind_iommu = raw_gpu.transport == "vfio"
    assert bool(facts["features"] >> 33 & 1) == behind_iommu, \
        f"ACCESS_PLATFORM {'missing from' if behind_iommu else 'negotiated in'} " \
        f"{facts['features']:#x} on the {raw_gpu.transport} transport"
    assert 1 <= facts["num_scanouts"] <= payloads.P.MAX_SCANOUTS


def test_get_display_info(facts):
    """GET_DISPLAY_INFO answers OK_DISPLAY_INFO whose enabled scanouts lie within num_scanouts
    and have a size, so a driver can size its framebuffers from it."""
    kind, pmodes = facts["display"]
    assert kind == "RESP_OK_DISPLAY_INFO"
    assert len(pmodes) == payloads.P.MAX_SCANOUTS
    enabled = [n for n, mode in enumerate(pmodes) if mode[4]]
    assert enabled, f"no scanout enabled: {pmodes[:facts['num_scanouts']]}"
    for n in enabled:
        assert n < facts["num_scanouts"]
        assert pmodes[n][2] > 0 and pmodes[n][3] > 0, f"scanout {n}: {pmodes[n]}"
    assert all(mode == (0, 0, 0, 0, 0, 0) for mode in pmodes[facts["num_scanouts"]:])


@pytest.mark.requires("raw.feature.edid")
def test_get_edid(facts):
    """With VIRTIO_GPU_F_EDID every scanout answers GET_EDID with OK_EDID holding a valid EDID
    base block (header, checksum), so guests can read the monitor's modes."""
    assert sorted(facts["edid"]) == list(range(facts["num_scanouts"]))
    for scanout, (kind, edid) in facts["edid"].items():
        assert kind == "RESP_OK_EDID", f"scanout {scanout}"
        assert len(edid) >= 128 and len(edid) % 128 == 0, f"scanout {scanout}: {len(edid)} bytes"
        assert edid[:8] == EDID_HEADER
        assert sum(edid[:128]) % 256 == 0, "EDID base block checksum"


def test_capset_info_and_capsets(facts):
    """Every capset index below num_capsets answers OK_CAPSET_INFO with a distinct known id and
    a size, and GET_CAPSET at its max version returns OK_CAPSET with exactly max_size bytes;
    the index past the end answers OK_CAPSET_INFO all zero (QEMU's documented behaviour)."""
    capsets = facts["capsets"]
    assert len(capsets) == facts["num_capsets"] + 1
    ids = []
    for entry in capsets[:-1]:
        assert entry["info"] == "RESP_OK_CAPSET_INFO", entry
        assert entry["id"] in {int(c) for c in payloads.P.Capset}, entry
        assert entry["max_size"] > 0, entry
        assert entry["capset"] == "RESP_OK_CAPSET", entry
        assert len(entry["data"]) == entry["max_size"], entry["index"]
        ids.append(entry["id"])
    assert len(set(ids)) == len(ids), f"capset ids repeat: {ids}"
    past = capsets[-1]
    assert (past["info"], past["id"], past["max_version"], past["max_size"]) == \
        ("RESP_OK_CAPSET_INFO", 0, 0, 0)


def test_2d_resource_lifecycle(raw_gpu, qemu_log):
    """A 2D resource goes through create, backing, transfer, scanout, flush, scanout off,
    detach and unref with OK_NODATA at every step, so the classic display path works."""
    steps = raw_gpu.call(payloads.resource_2d_lifecycle)
    assert steps == [(name, "RESP_OK_NODATA") for name, _ in steps], parse(qemu_log.text()).summary()
    assert not parse(qemu_log.text()).vtd_faults


def test_context_lifecycle(raw_gpu, facts):
    """For the default context and every capset (CONTEXT_INIT), a context is created, takes a
    resource, runs an empty SUBMIT_3D, answers a fenced one echoing FLAG_FENCE and the fence id,
    lets the resource go and is destroyed, all with OK_NODATA."""
    inits = [0]
    if facts["features"] >> int(payloads.P.Feature.CONTEXT_INIT) & 1:
        inits += [entry["id"] for entry in facts["capsets"][:-1]]
    results = raw_gpu.call(payloads.context_lifecycle, inits)
    fence = int(payloads.P.HdrFlag.FENCE)
    for n, init in enumerate(inits):
        steps = dict(results[init])
        assert steps["Submit3D(fenced)"].startswith("RESP_OK_NODATA "), (init, steps)
        flags = int(steps["Submit3D(fenced)"].split("flags=")[1].split()[0], 16)
        assert flags & fence and f"fence_id={1000 + n}" in steps["Submit3D(fenced)"], steps
        del steps["Submit3D(fenced)"]
        assert steps == {name: "RESP_OK_NODATA" for name in steps}, (init, steps)


def test_cursor_queue(raw_gpu, qemu_log):
    """UPDATE_CURSOR and MOVE_CURSOR on the cursor queue are consumed with no response data (the
    spec gives the cursor queue no responses) and the control queue still answers after."""
    out = raw_gpu.call(payloads.cursor_queue)
    assert out["cursor"] == [0, 0, 0], "used.len of the cursor commands"
    assert out["control_after"] == "RESP_OK_DISPLAY_INFO"
    assert "cursor size incorrect" not in qemu_log.text()
