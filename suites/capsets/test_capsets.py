"""Capsets and GETPARAM: what the guest driver reports agrees with the device and with itself.

Device work runs in the guest (``suites/capsets/payloads.py``); the host compares.
"""
from __future__ import annotations

import errno
import struct

import pytest

from gpuhil.errors import IoctlError
from suites.capsets import payloads

KNOWN_CAPSETS = {"virgl": 1, "virgl2": 2, "gfxstream_vulkan": 3, "venus": 4, "cross_domain": 5,
                 "drm": 6}


def _capset_params(names=KNOWN_CAPSETS):
    return [pytest.param(name, marks=pytest.mark.requires(f"capset.{name}"), id=name)
            for name in names]


@pytest.mark.parametrize("guest", ["venus", "virgl"], indirect=True)
def test_getparam_agrees_with_device_features(guest, virtgpu):
    """GETPARAM's feature parameters equal the virtio feature bits the device negotiated (with
    blob and without), so userspace that trusts GETPARAM sees what the device really offers."""
    found = virtgpu.call(payloads.params_and_features)
    params, features = found["params"], found["features"]
    assert features, "no virtio-gpu device in /sys/bus/virtio/devices"
    assert params["FEATURES_3D"] == int(features["virgl"])
    assert params["RESOURCE_BLOB"] == int(features["resource_blob"])
    assert params["CONTEXT_INIT"] == int(features["context_init"])
    # the debug name rides on CONTEXT_INIT; cross-device sharing needs resource UUIDs
    assert params["EXPLICIT_DEBUG_NAME"] == int(features["context_init"])
    assert params["CROSS_DEVICE"] == int(features["resource_uuid"])
    assert params["CAPSET_QUERY_FIX"] == 1
    # BLOB_ALIGNMENT exists only with VIRTIO_GPU_F_BLOB_ALIGNMENT; without it the kernel says ENOENT.
    assert (params["BLOB_ALIGNMENT"] != "ENOENT") == features["blob_alignment"]
    hostmem = virtgpu.capabilities.qemu.get("hostmem")
    if hostmem is not None:
        assert params["HOST_VISIBLE"] == int(hostmem > 0 and features["resource_blob"])


@pytest.mark.parametrize("guest", ["venus", "virgl"], indirect=True)
def test_supported_capset_ids_agree_with_get_caps(guest, virtgpu):
    """Every id in SUPPORTED_CAPSET_IDs answers GET_CAPS for versions 0..max and EINVAL above,
    and every other id answers EINVAL, so the mask is the whole truth about the capsets."""
    mask = virtgpu.call(payloads.supported_capset_ids)
    matrix = virtgpu.call(payloads.get_caps_matrix)
    for capset_id, row in matrix.items():
        if mask & (1 << capset_id):
            accepted = row.count("ok")
            assert accepted >= 1, f"capset {capset_id} is advertised but GET_CAPS v0 fails: {row}"
            assert row == ["ok"] * accepted + ["EINVAL"] * (len(row) - accepted), \
                f"capset {capset_id}: versions are not 0..max then EINVAL: {row}"
        else:
            assert set(row) == {"EINVAL"}, f"capset {capset_id} is not advertised: {row}"
    assert guest.call(payloads.debugfs_cap_sets) == bin(mask).count("1")


@pytest.mark.parametrize("name", _capset_params())
def test_highest_capset_version_works_and_next_fails(virtgpu, name):
    """GET_CAPS at the capset's highest version succeeds and one above fails with EINVAL, and
    the highest version is the one probed at session start (it does not drift)."""
    capset_id = KNOWN_CAPSETS[name]
    row = virtgpu.call(payloads.get_caps_matrix, range(capset_id, capset_id + 1))[capset_id]
    highest = row.count("ok") - 1
    assert row[highest] == "ok" and row[highest + 1] == "EINVAL"
    assert highest == virtgpu.capabilities.capset(name).max_version


@pytest.mark.parametrize("name", _capset_params(["virgl", "virgl2"]))
def test_virgl_capset_header_is_its_max_version(virtgpu, name):
    """virgl's caps start with their own max_version, which equals the highest GET_CAPS version,
    whichever version was asked for, so Mesa picks the right caps layout."""
    capset_id = KNOWN_CAPSETS[name]
    highest = virtgpu.capabilities.capset(name).max_version
    for version in range(highest + 1):
        data = virtgpu.call(payloads.capset_payload, capset_id, version)
        assert struct.unpack_from("<I", data)[0] == highest


@pytest.mark.requires("capset.venus")
def test_venus_capset_header_is_sane(virtgpu):
    """The venus capset names wire format version 1 or later and a Vulkan 1.x API version, so a
    guest Vulkan driver can negotiate with the host."""
    data = virtgpu.call(payloads.capset_payload, KNOWN_CAPSETS["venus"], 0)
    wire_format, vk_xml = struct.unpack_from("<2I", data)
    assert wire_format >= 1
    variant, major, minor = vk_xml >> 29, (vk_xml >> 22) & 0x7F, (vk_xml >> 12) & 0x3FF
    assert (variant, major) == (0, 1) and minor >= 1, f"vk_xml_version {vk_xml:#x}"


@pytest.mark.parametrize("name", _capset_params())
def test_truncated_get_caps_is_a_prefix(virtgpu, name):
    """A GET_CAPS with a short buffer returns the first bytes of the full payload and the full
    payload stays within 4 KiB, so callers may read the header first."""
    capset_id = KNOWN_CAPSETS[name]
    full = virtgpu.call(payloads.capset_payload, capset_id, 0, 4096)
    head = virtgpu.call(payloads.capset_payload, capset_id, 0, 16)
    assert head == full[:16]
    assert full.rstrip(b"\0"), "the capset payload is empty"


@pytest.mark.parametrize("name", _capset_params())
def test_get_caps_of_size_zero_is_einval(virtgpu, name):
    """GET_CAPS with a zero-byte buffer fails with EINVAL (the kernel refuses size 0) rather
    than succeeding with nothing copied."""
    with pytest.raises(IoctlError) as exc:
        virtgpu.call(payloads.capset_payload, KNOWN_CAPSETS[name], 0, 0)
    assert exc.value.op == "GET_CAPS" and exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("name", _capset_params())
def test_capset_payload_is_bounded(virtgpu, name):
    """A 64 KiB GET_CAPS returns the 4 KiB payload followed only by zeros, and the probed payload
    size is within it: the host's capset has a fixed size and nothing past it is copied."""
    capset_id = KNOWN_CAPSETS[name]
    large = virtgpu.call(payloads.capset_payload, capset_id, 0, 1 << 16)
    small = virtgpu.call(payloads.capset_payload, capset_id, 0, 4096)
    assert large[:4096] == small and not any(large[4096:])
    extent = len(small.rstrip(b"\0"))
    assert 0 < extent <= 4096
    probed = virtgpu.capabilities.capset(name)
    assert probed.payload_bytes == len(virtgpu.call(payloads.capset_payload, capset_id,
                                                    probed.max_version).rstrip(b"\0"))


@pytest.mark.guest("drm")
@pytest.mark.requires("capset.drm")
def test_drm_capset_header_is_sane(virtgpu):
    """The DRM native-context capset names wire format version 1 or later and a non-zero
    context type (the host GPU driver it forwards to), so the guest picks the right driver."""
    data = virtgpu.call(payloads.capset_payload, KNOWN_CAPSETS["drm"], 0)
    wire_format, context_type = struct.unpack_from("<2I", data)
    assert wire_format >= 1 and context_type != 0, (wire_format, context_type)
