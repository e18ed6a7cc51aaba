"""Blob lifecycle at the protocol level: create, map at chosen hostmem offsets, read and write
through the hostmem window, unmap, unref, reuse of ids and offsets, and how responses are
ordered while an unmap is pending (QEMU unmaps a subregion-mapped blob asynchronously: the
UNMAP is suspended and blocks the queue until the memory region is freed)."""
from __future__ import annotations

import pytest

from gpuhil.raw.qemu_log import parse
from suites.protocol import blob_payload, payloads

MAP_CACHES = {int(c) for c in payloads.P.MapCache}
#: what every test here needs: blobs and a host-visible window (probed by the raw driver)
BLOBS = "raw.feature.resource_blob and raw.hostmem"
pytestmark = pytest.mark.requires(BLOBS)


def _offsets(first: int, second: int, id: str):
    """A pair of hostmem offsets, run when the window holds a blob at both."""
    end = max(first, second) + payloads.BLOB_SIZE
    return pytest.param((first, second), id=id,
                        marks=pytest.mark.requires(f"raw.hostmem >= {end:#x}"))


@pytest.mark.parametrize("offsets", [_offsets(0, 0x10_0000, "start-then-1MiB"),
                                     _offsets(0x0FF0_0000, 0x4_0000, "window-end-then-256KiB")])
def test_blob_map_read_write_unmap_reuse(raw_gpu, qemu_log, offsets):
    """A HOST3D blob mapped at a chosen offset is read and written through the hostmem window,
    keeps its bytes when unmapped and mapped elsewhere, and after unref the same id and offset
    serve a new blob, so MAP_BLOB places exactly that blob at exactly that offset."""
    out = raw_gpu.call(blob_payload.blob_lifecycle, offsets)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    steps = dict(out["steps"][:3])
    assert steps == {"create": "RESP_OK_NODATA", "attach": "RESP_OK_NODATA",
                     "map@first": "RESP_OK_MAP_INFO"}, context
    assert out["map_cache"] in MAP_CACHES, context
    assert out["readback_first"], context
    assert out["persisted_second"], context
    assert out["readback_reused"], context
    expected = [("create", "RESP_OK_NODATA"), ("attach", "RESP_OK_NODATA"),
                ("map@first", "RESP_OK_MAP_INFO"), ("unmap", "RESP_OK_NODATA"),
                ("map@second", "RESP_OK_MAP_INFO"), ("unmap", "RESP_OK_NODATA"),
                ("unref", "RESP_OK_NODATA"), ("unref_again", "RESP_ERR_INVALID_RESOURCE_ID"),
                ("create_reused_id", "RESP_OK_NODATA"), ("map@first_again", "RESP_OK_MAP_INFO"),
                ("unmap", "RESP_OK_NODATA"), ("unref", "RESP_OK_NODATA"),
                ("ctx_destroy", "RESP_OK_NODATA")]
    assert out["steps"] == expected, context
    assert not parse(qemu_log.text()).vtd_faults


def test_blob_double_map_and_unref_while_mapped(raw_gpu, qemu_log):
    """A second MAP_BLOB of a mapped blob is refused without disturbing the first mapping, an
    UNMAP of an unmapped blob is harmless, and UNREF of a mapped blob unmaps it implicitly so
    its id and offset can be used again."""
    out = raw_gpu.call(blob_payload.blob_map_twice_and_unref_mapped)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert out["map"] == "RESP_OK_MAP_INFO", context
    assert out["map_again"].startswith("RESP_ERR_"), context
    assert out["first_mapping_intact"], context
    assert (out["unmap"], out["unmap_again"]) == ("RESP_OK_NODATA", "RESP_OK_NODATA"), context
    assert out["map_after_unmap"] == "RESP_OK_MAP_INFO", context
    assert out["unref_mapped"] == "RESP_OK_NODATA", context
    assert out["display_after_unref"] == "RESP_OK_DISPLAY_INFO", context
    assert (out["create_same_id"], out["map_same_offset"], out["unref"]) == \
        ("RESP_OK_NODATA", "RESP_OK_MAP_INFO", "RESP_OK_NODATA"), context


@pytest.mark.parametrize("fenced", [False, True], ids=["unfenced", "fenced"])
def test_responses_while_unmap_pending(raw_gpu, qemu_log, fenced):
    """An UNMAP_BLOB batched with four more commands: every command is answered with its own
    response, the commands behind the pending unmap complete only after it (submission order),
    and the unmap really finished (the blob maps again), fenced or not."""
    out = raw_gpu.call(blob_payload.unmap_ordering, fenced)
    context = f"{out}\nQEMU: {parse(qemu_log.text()).summary()}"
    assert out["responses"] == ["RESP_OK_NODATA", "RESP_OK_DISPLAY_INFO", "RESP_OK_NODATA",
                                "RESP_OK_CAPSET_INFO", "RESP_OK_NODATA"], context
    assert out["completion_order"] == [0, 1, 2, 3, 4], context
    assert out["map_again"] == "RESP_OK_MAP_INFO", context
    assert (out["unmap_again"], out["unref"]) == ("RESP_OK_NODATA", "RESP_OK_NODATA"), context
