"""udmabuf dma-buf mappings, DMA_BUF_IOCTL_SYNC and sync files.

The dma-buf and the memfd are two views of the same shmem pages; DMA_BUF_IOCTL_SYNC brackets
CPU access (drivers/dma-buf/dma-buf.c checks its flags; udmabuf's END needs a mapping made by an
earlier START); EXPORT/IMPORT_SYNC_FILE move fences in and out of the buffer's reservation.
"""
from __future__ import annotations

import pytest

from suites.dmabuf import payloads


def test_memfd_and_dmabuf_mappings_are_coherent(udmabuf):
    """Stores through the memfd mapping or pwrite show in the dma-buf mapping and the reverse, on
    every page, also for dma-bufs made at an offset and mappings at a page offset."""
    out = udmabuf.machine.call(payloads.coherency)
    assert out == {
        "dmabuf_reads_memfd_stores": True, "memfd_reads_dmabuf_stores": True,
        "dmabuf_sees_pwrite": b"pwrite", "pread_sees_dmabuf": b"dmabuf-store",
        "offset_view": True, "window": True,
    }


def test_dmabuf_mmap_bounds(udmabuf):
    """A dma-buf maps whole, in part and read-only, but not past its size (EINVAL), and it has no
    read(2) (EINVAL): the mapping is the only CPU path."""
    out = udmabuf.machine.call(payloads.mmap_outcomes)
    assert out == {"whole": "ok", "last-page": "ok", "read-only": "ok",
                   "longer-than-buffer": "EINVAL", "offset-past-end": "EINVAL", "read(2)": "EINVAL"}


def test_pages_outlive_the_memfd_and_mappings_outlive_the_fds(udmabuf):
    """The dma-buf keeps the pages after the memfd is closed, and a mapping keeps working after the
    dma-buf fd is closed too, so importers never see freed memory."""
    out = udmabuf.machine.call(payloads.lifetime)
    assert out == {"after_memfd_close": b"kept-by-dmabuf", "after_dmabuf_close": b"kept-by-dmabuf",
                   "write_after_close": b"still-mapped"}


def test_sync_ioctl_flags(udmabuf):
    """SYNC accepts START/END with READ, WRITE or both and refuses no access bits, unknown bits and
    an END on a buffer that never had a START (udmabuf has no mapping to sync yet): EINVAL."""
    out = udmabuf.machine.call(payloads.sync_ioctl_outcomes)
    assert out == {
        "START|READ": "ok", "START|WRITE": "ok", "START|RW": "ok",
        "END|READ": "ok", "END|WRITE": "ok", "END|RW": "ok",
        "START": "EINVAL", "END": "EINVAL", "unknown-bit": "EINVAL", "high-bit": "EINVAL",
        "fresh:END|RW": "EINVAL",
    }


def test_sync_file_export_and_import(udmabuf):
    """An idle udmabuf exports signalled fences, a fence from one buffer imports into another as a
    read or write fence, bad flags and non-fence fds are EINVAL, and the dma-buf fd polls ready."""
    out = udmabuf.machine.call(payloads.sync_file_outcomes)
    if "unsupported" in out:
        pytest.skip(f"the guest kernel has no dma-buf sync-file ioctls, probed: {out['unsupported']}")
    assert out == {
        "export_read_signaled": True, "import_write": "ok", "import_read": "ok",
        "import_no_flags": "EINVAL", "import_unknown_flag": "EINVAL",
        "import_memfd_as_fence": "EINVAL", "import_closed_fd": "EINVAL",
        "export_rw_after_import_signaled": True,
        "export_no_flags": "EINVAL", "export_unknown_flag": "EINVAL", "export_on_memfd": "ENOTTY",
        "poll_in": True, "poll_out": True,
    }


@pytest.mark.requires("capset.virgl2")
def test_gpu_fence_round_trip_through_a_udmabuf(udmabuf, virtgpu):
    """A virtio-gpu EXECBUFFER out-fence imported into a udmabuf gates the buffer's exported READ
    fence and its poll, and that exported fence can gate the next submission, so implicit sync
    between a GPU and a udmabuf consumer works through sync files."""
    out = virtgpu.call(payloads.gpu_fence_through_udmabuf)
    assert out == {"exported_signaled": True, "gpu_fence_signaled": True, "dmabuf_readable": True,
                   "chained_signaled": True, "all_fences_signaled": True}
