"""Blob lifecycles: GUEST, HOST3D and HOST3D_GUEST blobs across flags and sizes, from one page
to the whole hostmem window, and the errors the kernel gives for invalid ones.

Device work runs in the guest (``suites/blob/payloads.py``); HOST3D blobs are created the way
Mesa creates them, with an inline virgl PIPE_RESOURCE_CREATE on a VIRGL2 context.  The hostmem
window size comes from the capability snapshot (QEMU's ``hostmem`` property), never a constant.
"""
from __future__ import annotations

import pytest

from gpuhil.devices.virtgpu import BlobFlag, BlobMem, virgl_pipe_resource_create
from suites.blob import HOST3D_NEEDS, payloads
from gpuhil.blob_traces import MAP, REQUIRES as TRACES, UNMAP, TraceCapture, unmap_sequences, well_formed

PAGE = payloads.PAGE
MiB = 1 << 20
M, S = BlobFlag.MAPPABLE, BlobFlag.SHAREABLE


def _case(blob_mem: BlobMem, flags: BlobFlag, whole_window: bool):
    needs = "param.resource_blob" if blob_mem == BlobMem.GUEST else HOST3D_NEEDS
    name = "-".join([blob_mem.name.lower().replace("_", "")]
                    + [f.name.lower() for f in BlobFlag if f & flags])
    return pytest.param(blob_mem, flags, whole_window, marks=pytest.mark.requires(needs), id=name)


CASES = [
    _case(BlobMem.GUEST, M | S, True),
    _case(BlobMem.GUEST, M, False),
    _case(BlobMem.GUEST, S, False),
    _case(BlobMem.HOST3D, M | S, True),
    _case(BlobMem.HOST3D, M, True),
    _case(BlobMem.HOST3D, S, False),
    _case(BlobMem.HOST3D_GUEST, M | S, True),
    _case(BlobMem.HOST3D_GUEST, S, False),
]


@pytest.mark.requires(TRACES)
@pytest.mark.parametrize("blob_mem, flags, whole_window", CASES)
def test_blob_lifecycle(guest, virtgpu, hostmem_window, blob_mem, flags, whole_window):
    """A blob goes through create, WAIT, RESOURCE_INFO, MAP, mmap with a read-back pattern,
    PRIME export and dma-buf mmap coherent both ways under SYNC, then close, for one page, an
    unaligned size, 1 MiB and (for the main flag sets) the whole hostmem window, so every size
    userspace may ask for works end to end."""
    sizes = [PAGE, 3 * PAGE + 100, MiB] + ([hostmem_window] if whole_window else [])
    with TraceCapture(guest) as traces:
        results = virtgpu.call(payloads.lifecycles, int(blob_mem), int(flags), sizes)
        traces.settle(r.res_handle for r in results)
    host_mapped = blob_mem == BlobMem.HOST3D and bool(flags & M)
    # GUEST and HOST3D_GUEST blobs are guest pages: the kernel maps them whatever MAPPABLE says;
    # HOST3D blobs live in the hostmem window and only MAPPABLE ones are placed there.
    mappable = blob_mem != BlobMem.HOST3D or bool(flags & M)
    for r in results:
        rounded = -(-r.size // PAGE) * PAGE
        where = f"{blob_mem.name} flags={flags!r} size={r.size}"
        assert (r.info_size, r.info_blob_mem) == (rounded, blob_mem), where
        assert r.res_handle > 0 and r.idle and r.map_offset > 0, where
        assert r.after_close == "ENOENT", where
        assert r.export == "ok" and r.exporter == "virtio_gpu" and r.dmabuf_size == rounded, where
        if mappable:
            assert r.mmap == "ok" and r.readback, where
            assert r.first_page_mmap == "ok" and r.first_page_matches, where
            assert r.oversized_mmap == "EINVAL", where
            assert r.dmabuf_mmap == "ok" and r.dmabuf_sees_blob and r.blob_sees_dmabuf, where
            if rounded > PAGE:
                assert r.dmabuf_past_end == "EINVAL", where
        else:
            assert r.mmap == "EINVAL" and r.dmabuf_mmap == "EINVAL", where
    if host_mapped:
        assert virtgpu.call(payloads.whole_window_fits, hostmem_window), \
            "hostmem is still held after every blob was closed"
        sequences = unmap_sequences(traces.events_seen())
        ids = {r.res_handle for r in results}
        mapped = {res: seq for res, seq in sequences.items() if res in ids}
        assert set(mapped) == ids, f"MAP_BLOB traces for {sorted(mapped)}, blobs {sorted(ids)}"
        for res, maps in mapped.items():
            assert len(maps) == 1 and well_formed(maps[0]), \
                f"res {res}: unmap mapping_state sequence {maps} (want one 0 -> 2 per map)"
    else:
        assert not [e for e in traces.events_seen() if e.event in (MAP, UNMAP)], \
            "a blob that is not a mappable HOST3D blob was mapped into the hostmem window"


@pytest.mark.parametrize("blob_mem", [
    pytest.param(BlobMem.GUEST, id="guest", marks=pytest.mark.requires("param.resource_blob")),
    pytest.param(BlobMem.HOST3D, id="host3d", marks=pytest.mark.requires(HOST3D_NEEDS)),
    pytest.param(BlobMem.HOST3D_GUEST, id="host3d-guest", marks=pytest.mark.requires(HOST3D_NEEDS)),
])
def test_dmabuf_mmap_at_an_offset_shows_that_offset(virtgpu, blob_mem):
    """mmap of a blob's dma-buf at page offset N shows page N (dma-buf mmap takes an offset
    within the buffer), while the GEM fake offset only maps whole objects (EINVAL past its
    start), so importers that map part of a buffer read the right bytes."""
    found = virtgpu.call(payloads.offset_mappings, int(blob_mem), 4)
    assert found["gem"] == ["EINVAL"] * 3
    assert found["dmabuf"] == ["0x40", "0x41", "0x42", "0x43"], \
        f"page N of the dma-buf mapped at offset N shows {found['dmabuf']}"


@pytest.mark.requires(HOST3D_NEEDS)
def test_hostmem_window_matches_qemu(virtgpu, hostmem_window):
    """The guest driver's host-visible region is exactly QEMU's hostmem window, so sizing
    blobs by the probed window is sizing them by what the guest can place."""
    found = virtgpu.call(payloads.window_probe)
    assert found["host_visible"] == 1
    assert found["length"] == hostmem_window, f"guest region {found}, QEMU hostmem {hostmem_window}"


def _host3d(size: int, flags: int = M, cmd_size: int | None = None) -> dict:
    cmd = virgl_pipe_resource_create(size & 0xFFFFFFFF, 1)
    if cmd_size is not None:
        cmd = cmd[:cmd_size]
    return dict(blob_mem=BlobMem.HOST3D, size=size, flags=flags, blob_id=1, cmd=cmd, context=True)


#: (id, create_errno arguments, expected errno): what verify_blob() and the allocators of
#: drivers/gpu/drm/virtio (virtgpu_ioctl.c, virtgpu_object.c, virtgpu_vram.c) answer.
#: HOST3D cases with a size the host must not allocate carry no command.
INVALID = [
    ("blob-mem-0", dict(blob_mem=0, size=PAGE), "EINVAL"),
    ("blob-mem-4", dict(blob_mem=4, size=PAGE), "EINVAL"),
    ("unknown-flag", dict(blob_mem=BlobMem.GUEST, size=PAGE, flags=0x10), "EINVAL"),
    ("guest-with-blob-id", dict(blob_mem=BlobMem.GUEST, size=PAGE, blob_id=7), "EINVAL"),
    ("guest-with-cmd", dict(blob_mem=BlobMem.GUEST, size=PAGE, cmd=b"\0" * 4), "EINVAL"),
    ("guest-size-0", dict(blob_mem=BlobMem.GUEST, size=0, flags=M), "ENOSPC"),
    ("guest-size-wraps", dict(blob_mem=BlobMem.GUEST, size=(1 << 64) - PAGE, flags=M), "EINVAL"),
    ("host3d-cmd-not-dwords", _host3d(PAGE, cmd_size=6), "EINVAL"),
    ("host3d-size-0", _host3d(0), "ENOSPC"),
    ("host3d-guest-size-0", dict(_host3d(0), blob_mem=BlobMem.HOST3D_GUEST), "ENOSPC"),
    ("host3d-window-plus-page", "window+page", "ENOSPC"),
    ("host3d-size-wraps", _host3d((1 << 64) - PAGE, cmd_size=0), "ENOSPC"),
]


def _invalid_params():
    for name, arguments, expected in INVALID:
        guest_only = isinstance(arguments, dict) and not arguments.get("context")
        needs = "param.resource_blob" if guest_only else HOST3D_NEEDS
        yield pytest.param(arguments, expected, id=name, marks=pytest.mark.requires(needs))


@pytest.mark.kernel_log_allowed(r"\*ERROR\* response 0x12")
@pytest.mark.parametrize("arguments, expected", list(_invalid_params()))
def test_invalid_blob_is_refused_with_the_kernel_errno(request, virtgpu, arguments, expected):
    """An invalid blob type, flag, id/command combination or size fails RESOURCE_CREATE_BLOB
    with the errno the driver's checks give (EINVAL for bad arguments, ENOSPC for sizes that
    cannot be placed) instead of succeeding or wedging the device."""
    if arguments == "window+page":
        arguments = _host3d(request.getfixturevalue("hostmem_window") + PAGE)
    assert virtgpu.call(payloads.create_errno, **arguments) == expected
    # the device still works afterwards
    assert virtgpu.call(payloads.create_errno, BlobMem.GUEST, PAGE, int(M)) == "ok"


@pytest.mark.requires(HOST3D_NEEDS)
def test_unmappable_host3d_larger_than_the_window_is_allowed(virtgpu, hostmem_window):
    """A HOST3D blob that is not MAPPABLE takes no hostmem, so it may be larger than the
    window; only mappable ones are bounded by it."""
    size = hostmem_window + PAGE
    assert virtgpu.call(payloads.create_errno, **_host3d(size, flags=S)) == "ok"


@pytest.mark.requires("param.resource_blob and param.cross_device == 0")
@pytest.mark.parametrize("blob_mem", [BlobMem.GUEST, BlobMem.HOST3D, BlobMem.HOST3D_GUEST],
                         ids=["guest", "host3d", "host3d-guest"])
def test_cross_device_without_resource_uuid_is_einval(virtgpu, blob_mem):
    """CROSS_DEVICE needs the device's resource UUID feature; without it (GETPARAM
    CROSS_DEVICE 0) every blob type asking for it is refused with EINVAL."""
    arguments = dict(blob_mem=blob_mem, size=PAGE, flags=M | S | BlobFlag.CROSS_DEVICE)
    if blob_mem != BlobMem.GUEST:
        arguments.update(blob_id=1, cmd=virgl_pipe_resource_create(PAGE, 1), context=True)
    assert virtgpu.call(payloads.create_errno, **arguments) == "EINVAL"


@pytest.mark.requires("param.resource_blob and param.cross_device")
def test_cross_device_guest_blob_lifecycle(virtgpu):
    """With the resource UUID feature a CROSS_DEVICE blob goes through the whole lifecycle."""
    results = virtgpu.call(payloads.lifecycles, int(BlobMem.GUEST),
                           int(M | S | BlobFlag.CROSS_DEVICE), [PAGE, MiB])
    assert all(r.readback and r.dmabuf_sees_blob and r.after_close == "ENOENT" for r in results)


@pytest.mark.guest("virgl")
@pytest.mark.requires("not param.resource_blob")
@pytest.mark.parametrize("blob_mem", [BlobMem.GUEST, BlobMem.HOST3D], ids=["guest", "host3d"])
def test_blobs_without_the_blob_feature_are_einval(virtgpu, blob_mem):
    """On a device without VIRTIO_GPU_F_RESOURCE_BLOB every blob create is EINVAL, so
    userspace cannot get a blob the device would not understand."""
    assert virtgpu.call(payloads.create_errno, blob_mem, PAGE, int(M)) == "EINVAL"
