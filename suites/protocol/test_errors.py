"""Errors: invalid resource ids, context ids, scanout ids, parameters and sizes each get their
error response, and the device stays usable (it answers and creates again) afterwards.

The expected responses are what the virtio-gpu spec implies and what QEMU's own 2-D path answers
for the same mistake (hw/display/virtio-gpu.c); where QEMU 11.1's virgl path
(virtio-gpu-virgl.c) answers otherwise the test keeps the correct expectation and the
expectations file records the difference.
"""
from __future__ import annotations

import pytest

from gpuhil.raw.qemu_log import parse
from suites.protocol import errors_payload

# the guest's intel-iommu driver logs the DMA faults the device takes on unmapped IOVAs on purpose
pytestmark = pytest.mark.kernel_log_allowed(r"DMAR: ", r"dmar_fault: \d+ callbacks suppressed")

ANY_ERROR = "any RESP_ERR_*"

#: case -> the response it must get (ANY_ERROR: the spec names no specific error)
EXPECTED: dict[str, str] = {
    "unknown_command": "RESP_ERR_UNSPEC",
    "unref_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "create_2d_resource_id_zero": "RESP_ERR_INVALID_RESOURCE_ID",
    "create_2d_duplicate_id": "RESP_ERR_INVALID_RESOURCE_ID",
    "attach_backing_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "attach_backing_too_many_entries": ANY_ERROR,
    "attach_backing_entries_missing": ANY_ERROR,
    "attach_backing_unmapped_iova": ANY_ERROR,
    "detach_backing_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "transfer_2d_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "flush_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "set_scanout_bad_scanout_id": "RESP_ERR_INVALID_SCANOUT_ID",
    "set_scanout_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "set_scanout_rect_outside_resource": "RESP_ERR_INVALID_PARAMETER",
    "get_edid_bad_scanout": "RESP_ERR_INVALID_PARAMETER",
    "get_capset_unknown_id": "RESP_ERR_INVALID_PARAMETER",
    "ctx_destroy_unknown_context": "RESP_ERR_INVALID_CONTEXT_ID",
    "ctx_attach_unknown_context": "RESP_ERR_INVALID_CONTEXT_ID",
    "ctx_create_unknown_capset": ANY_ERROR,
    "submit_3d_unknown_context": "RESP_ERR_INVALID_CONTEXT_ID",
    "submit_3d_size_mismatch": "RESP_ERR_INVALID_PARAMETER",
    "submit_3d_too_large": "RESP_ERR_INVALID_PARAMETER",
    "create_blob_resource_id_zero": "RESP_ERR_INVALID_RESOURCE_ID",
    "create_blob_duplicate_id": "RESP_ERR_INVALID_RESOURCE_ID",
    "create_blob_bad_blob_mem": ANY_ERROR,
    "create_blob_unknown_blob_id": ANY_ERROR,
    "map_blob_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "map_blob_not_a_blob": ANY_ERROR,
    "map_blob_offset_past_hostmem": "RESP_ERR_INVALID_PARAMETER",
    "map_blob_offset_wraps": "RESP_ERR_INVALID_PARAMETER",
    "unmap_blob_unknown_resource": "RESP_ERR_INVALID_RESOURCE_ID",
    "truncated_create_2d": ANY_ERROR,
    "truncated_unref": ANY_ERROR,
    "header_only_8_bytes": ANY_ERROR,
    "fenced_ring_idx_unknown_context": ANY_ERROR,
    "fenced_fence_id_above_32_bits": "RESP_OK_NODATA",
}

#: what a case needs of the raw device (blob cases: RESOURCE_BLOB and a hostmem window)
NEEDS = {
    "get_edid_bad_scanout": "raw.feature.edid",
    "ctx_create_unknown_capset": "raw.feature.context_init",
    "fenced_ring_idx_unknown_context": "raw.feature.context_init",
    **{name: "raw.feature.resource_blob and raw.hostmem" for name in EXPECTED if "blob" in name},
}


def _case(name: str):
    marks = [pytest.mark.requires(NEEDS[name])] if name in NEEDS else []
    return pytest.param(name, id=name, marks=marks)


def test_every_case_has_an_expectation():
    """The payload's case table and this expectation table name the same cases, so no case
    runs unchecked."""
    assert set(EXPECTED) == set(errors_payload.ERROR_CASES)


@pytest.mark.parametrize("case", [_case(name) for name in sorted(EXPECTED)])
def test_error_response(raw_gpu, qemu_log, case):
    """The invalid command gets its error response (not OK, not silence), and afterwards the
    device answers GET_DISPLAY_INFO and creates and destroys a resource, so one bad command
    neither corrupts nor wedges it."""
    out = raw_gpu.call(errors_payload.error_case, case)
    log = parse(qemu_log.text())
    context = f"{out}\nQEMU: {log.summary()}"
    assert raw_gpu.machine.alive, f"QEMU died: {context}"
    follow_up = (out["display_after"], out["create_after"], out["unref_after"])
    assert follow_up == ("RESP_OK_DISPLAY_INFO", "RESP_OK_NODATA", "RESP_OK_NODATA"), context
    want = EXPECTED[case]
    if want == ANY_ERROR:
        assert out["response"].startswith("RESP_ERR_"), context
    else:
        assert out["response"] == want, context


@pytest.mark.guest("raw")  # the vIOMMU's fault report: VFIO transport only
def test_unmapped_iova_is_a_vtd_fault_not_a_crash(raw_gpu):
    """ATTACH_BACKING naming an IOVA the vIOMMU does not map is reported as a DMA fault (by the
    guest's DMAR driver, and by QEMU's vtd_ code, which prints only the first fault of its
    life) and leaves the device working, so a driver bug that points the device at the wrong
    address is visible and harmless (whether the command is refused is
    test_error_response[attach_backing_unmapped_iova])."""
    guest = raw_gpu.machine
    mark = guest.kmsg_mark("protocol: unmapped IOVA")
    out = raw_gpu.call(errors_payload.error_case, "attach_backing_unmapped_iova")
    kernel = [line for line in guest.kernel_log(mark) if "fault addr 0x7f00000000" in line]
    qemu = parse(guest.qemu_stderr()).vtd_faults
    assert kernel or any("iova=0x7f00000000" in line for line in qemu), \
        f"no DMA fault reported; QEMU vtd lines since boot: {qemu}"
    assert (out["display_after"], out["create_after"], out["unref_after"]) == \
        ("RESP_OK_DISPLAY_INFO", "RESP_OK_NODATA", "RESP_OK_NODATA"), out


def test_qemu_names_a_truncated_command_in_the_tests_stderr(raw_gpu, qemu_log):
    """A RESOURCE_CREATE_2D cut after its header makes QEMU (run with ``-d guest_errors``)
    print its own complaint, "command size incorrect", into this test's QEMU stderr slice, so
    a report shows QEMU's reason beside the error response."""
    out = raw_gpu.call(errors_payload.error_case, "truncated_create_2d")
    assert out["response"].startswith("RESP_ERR_"), out
    text = qemu_log.text()
    assert "command size incorrect" in text, f"QEMU stderr of this test: {text[-2000:]!r}"
