"""Device reset with blobs mapped and while a command is pending: afterwards the device answers,
has forgotten the old resources, and serves the same ids, offsets and contexts again."""
from __future__ import annotations

import pytest

from gpuhil.raw.qemu_log import parse
from suites.protocol import reset_payload, unmap_reset_payload


@pytest.mark.requires("raw.feature.resource_blob and raw.hostmem")
def test_reset_with_blobs_mapped(raw_gpu, qemu_log):
    """A reset with two blobs mapped, a 2D resource and a context leaves QEMU running and the
    device answering; the old ids are gone and the same context id, resource id and hostmem
    offset work again (read back through the window), so reset really tears blobs down."""
    out = raw_gpu.call(reset_payload.reset_with_blobs_mapped)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert raw_gpu.machine.alive, context
    assert out["display"] == "RESP_OK_DISPLAY_INFO", context
    assert out["unref_old"] == ["RESP_ERR_INVALID_RESOURCE_ID"] * 3, context
    assert out["ctx_create_same_id"] == "RESP_OK_NODATA", context
    assert (out["blob_same_id"], out["map_same_offset"]) == \
        ("RESP_OK_NODATA", "RESP_OK_MAP_INFO"), context
    assert out["readback"], context
    assert (out["unmap"], out["unref"]) == ("RESP_OK_NODATA", "RESP_OK_NODATA"), context


@pytest.mark.requires("raw.feature.context_init")
def test_reset_while_command_pending(raw_gpu, qemu_log):
    """A reset while a fenced command waits for a fence that never comes leaves QEMU running,
    drops the old resource and lets the device answer and create again, so a wedged queue is
    recoverable by reset."""
    out = raw_gpu.call(reset_payload.reset_while_pending)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert raw_gpu.machine.alive, context
    assert out["display"] == "RESP_OK_DISPLAY_INFO", context
    assert out["unref_old"] == "RESP_ERR_INVALID_RESOURCE_ID", context
    assert (out["create"], out["unref"]) == ("RESP_OK_NODATA", "RESP_OK_NODATA"), context


@pytest.mark.requires("raw.feature.resource_blob and raw.hostmem")
@pytest.mark.parametrize("point", unmap_reset_payload.POINTS)
def test_reset_at_each_point_of_the_unmap_state_machine(raw_gpu, qemu_log, point):
    """A reset with the blob mapped, with its UNMAP_BLOB sent but not answered, with a fenced
    UNMAP_BLOB left pending, or after the unmap was answered leaves QEMU running and the
    device answering, the old blob gone, and the same id and hostmem offset usable again (read
    back through the window), so no unmap state survives a reset."""
    out = raw_gpu.call(unmap_reset_payload.reset_during_unmap, point)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert raw_gpu.machine.alive, context
    assert out["display"] == "RESP_OK_DISPLAY_INFO", context
    assert out["unref_old"] == "RESP_ERR_INVALID_RESOURCE_ID", context
    assert (out["ctx_create_same_id"], out["blob_same_id"], out["map_same_offset"]) == \
        ("RESP_OK_NODATA", "RESP_OK_NODATA", "RESP_OK_MAP_INFO"), context
    assert out["readback"], context
    assert (out["unmap"], out["unref"]) == ("RESP_OK_NODATA",) * 2, context
