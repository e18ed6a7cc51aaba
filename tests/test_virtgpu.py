"""Render node: what can be checked without the device (missing node, wrong fd type, closed
objects, the ABI table's self-consistency, the virgl inline command)."""
import errno
import struct

import pytest

from gpuhil import _virtgpu
from gpuhil.errors import ClosedError, IoctlError, Unsupported
from gpuhil.devices.virtgpu import (BlobFlag, BlobMem, Capset, Param, RenderNode, Resource, SyncObj,
                            find_render_nodes, virgl_pipe_resource_create)


def test_missing_node_is_an_error_naming_the_path(tmp_path):
    path = str(tmp_path / "renderD128")
    with pytest.raises(IoctlError) as exc:
        RenderNode(path)
    assert exc.value.errno == errno.ENOENT and exc.value.op == "open"
    assert path in str(exc.value)


def test_no_render_node_found_names_the_pattern(tmp_path):
    with pytest.raises(IoctlError) as exc:
        RenderNode.open(dri=tmp_path)
    assert exc.value.errno == errno.ENOENT
    assert f"{tmp_path}/renderD*" in str(exc.value)
    assert "found: none" in str(exc.value)


def test_find_render_nodes_orders_by_minor(tmp_path):
    for name in ("renderD129", "card0", "renderD128", "renderD1000"):
        (tmp_path / name).touch()
    assert [p.name for p in find_render_nodes(tmp_path)] == ["renderD128", "renderD129",
                                                              "renderD1000"]


@pytest.fixture
def not_drm():
    with RenderNode("/dev/null") as node:
        yield node


def test_getparam_on_a_non_drm_fd_is_unsupported_with_the_param_name(not_drm):
    with pytest.raises(Unsupported) as exc:
        not_drm.getparam(Param.SUPPORTED_CAPSET_IDS)
    assert exc.value.errno == errno.ENOTTY
    assert str(exc.value).startswith("GETPARAM(param=SUPPORTED_CAPSET_IDS): ENOTTY")


def test_unknown_param_number_is_shown_as_a_number(not_drm):
    with pytest.raises(Unsupported) as exc:
        not_drm.getparam(77)
    assert exc.value.args_ == {"param": 77}


def test_create_blob_error_carries_symbolic_arguments(not_drm):
    with pytest.raises(IoctlError) as exc:
        not_drm.create_blob(BlobMem.HOST3D, 0, BlobFlag.MAPPABLE | BlobFlag.SHAREABLE,
                            blob_id=7, cmd=b"\0" * 8)
    assert str(exc.value).startswith("RESOURCE_CREATE_BLOB(blob_mem=HOST3D, size=0, "
                                     "blob_flags=MAPPABLE|SHAREABLE, blob_id=7, cmd_size=8, "
                                     "blob_hints=0): ENOTTY")


def test_context_init_error_names_each_parameter(not_drm):
    with pytest.raises(Unsupported) as exc:
        not_drm.context_init(capset_id=Capset.VENUS, num_rings=2, poll_rings_mask=3,
                             debug_name="gpuhil")
    assert exc.value.op == "CONTEXT_INIT"
    assert exc.value.args_ == {"CAPSET_ID": "VENUS", "NUM_RINGS": 2, "POLL_RINGS_MASK": 3,
                               "DEBUG_NAME": "gpuhil"}


@pytest.mark.parametrize("call, op", [
    (lambda n: n.version(), "VERSION"),
    (lambda n: n.get_caps(Capset.VIRGL2, 2), "GET_CAPS"),
    (lambda n: n.create_resource(width=64, height=64), "RESOURCE_CREATE"),
    (lambda n: n.map_offset(1), "MAP"),
    (lambda n: n.wait(1, nowait=True), "WAIT"),
    (lambda n: n.transfer_to_host(1, (0, 0, 0, 4, 4, 1)), "TRANSFER_TO_HOST"),
    (lambda n: n.transfer_from_host(1, (0, 0, 0, 4, 4, 1)), "TRANSFER_FROM_HOST"),
    (lambda n: n.execbuffer(b"\0" * 4, [1, 2], fence_out=True, ring_idx=0), "EXECBUFFER"),
    (lambda n: n.gem_close(1), "GEM_CLOSE"),
    (lambda n: n.prime_handle_to_fd(1), "PRIME_HANDLE_TO_FD"),
    (lambda n: n.prime_fd_to_handle(0), "PRIME_FD_TO_HANDLE"),
    (lambda n: n.syncobj(), "SYNCOBJ_CREATE"),
    (lambda n: n.syncobj_destroy(1), "SYNCOBJ_DESTROY"),
    (lambda n: n.wait_syncobjs([1], 0.01), "SYNCOBJ_WAIT"),
    (lambda n: n.syncobj_signal([1]), "SYNCOBJ_SIGNAL"),
    (lambda n: n.syncobj_reset([1]), "SYNCOBJ_RESET"),
])
def test_every_ioctl_on_a_non_drm_fd_fails_with_its_name(not_drm, call, op):
    with pytest.raises(Unsupported) as exc:
        call(not_drm)
    assert exc.value.op == op and exc.value.errno == errno.ENOTTY


def test_execbuffer_error_shows_the_flags_it_computed(not_drm):
    with pytest.raises(Unsupported) as exc:
        not_drm.execbuffer(b"\0" * 4, fence_out=True, ring_idx=1)
    assert exc.value.args_["flags"] == "FENCE_FD_OUT|RING_IDX"
    assert exc.value.args_["ring_idx"] == 1


def test_closed_node_raises_closed_and_close_is_idempotent():
    node = RenderNode("/dev/null")
    resource = Resource(node, 1, 1, 4096)
    syncobj = SyncObj(node, 1)
    node.close()
    node.close()
    assert node.closed and resource.closed and syncobj.closed
    resource.close()
    syncobj.close()
    for call in (lambda: node.getparam(Param.FEATURES_3D), node.fileno, node.version,
                 lambda: node.create_blob(BlobMem.GUEST, 4096), resource.info, resource.mmap,
                 resource.export, lambda: syncobj.wait(0)):
        with pytest.raises(ClosedError):
            call()


def test_closed_resource_refuses_use_while_the_node_lives(not_drm):
    resource = Resource(not_drm, 5, 5, 4096)
    resource._closed = True
    with pytest.raises(ClosedError):
        resource.map_offset()
    resource.close()


def test_abi_ioctl_numbers_encode_their_struct_sizes():
    abi = _virtgpu.ABI
    pairs = {
        "DRM_IOCTL_VIRTGPU_MAP": "struct drm_virtgpu_map",
        "DRM_IOCTL_VIRTGPU_EXECBUFFER": "struct drm_virtgpu_execbuffer",
        "DRM_IOCTL_VIRTGPU_GETPARAM": "struct drm_virtgpu_getparam",
        "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE": "struct drm_virtgpu_resource_create",
        "DRM_IOCTL_VIRTGPU_RESOURCE_INFO": "struct drm_virtgpu_resource_info",
        "DRM_IOCTL_VIRTGPU_TRANSFER_FROM_HOST": "struct drm_virtgpu_3d_transfer_from_host",
        "DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST": "struct drm_virtgpu_3d_transfer_to_host",
        "DRM_IOCTL_VIRTGPU_WAIT": "struct drm_virtgpu_3d_wait",
        "DRM_IOCTL_VIRTGPU_GET_CAPS": "struct drm_virtgpu_get_caps",
        "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB": "struct drm_virtgpu_resource_create_blob",
        "DRM_IOCTL_VIRTGPU_CONTEXT_INIT": "struct drm_virtgpu_context_init",
        "DRM_IOCTL_VERSION": "struct drm_version",
        "DRM_IOCTL_GEM_CLOSE": "struct drm_gem_close",
        "DRM_IOCTL_PRIME_HANDLE_TO_FD": "struct drm_prime_handle",
        "DRM_IOCTL_SYNCOBJ_CREATE": "struct drm_syncobj_create",
        "DRM_IOCTL_SYNCOBJ_WAIT": "struct drm_syncobj_wait",
        "DRM_IOCTL_SYNCOBJ_SIGNAL": "struct drm_syncobj_array",
    }
    for ioctl, struct_name in pairs.items():
        assert (abi[ioctl] >> 16) & 0x3FFF == abi[f"sizeof({struct_name})"], ioctl


def test_abi_has_the_7_2_layouts_that_changed_since_6_1():
    abi = _virtgpu.ABI
    assert abi["sizeof(struct drm_virtgpu_resource_create_blob)"] == 56
    assert abi["offsetof(struct drm_virtgpu_resource_create_blob, blob_hints)"] == 48
    assert abi["DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB"] == 0xC038644A
    assert abi["sizeof(struct drm_syncobj_wait)"] == 40
    assert abi["VIRTGPU_PARAM_BLOB_ALIGNMENT"] == 9


def test_virgl_pipe_resource_create_layout():
    words = struct.unpack("<12I", virgl_pipe_resource_create(65536, blob_id=9))
    assert words[0] == 48 | (11 << 16)
    target, fmt, bind, width, height, depth, array_size = words[1:8]
    assert (target, fmt, width, height, depth, array_size) == (0, 64, 65536, 1, 1, 1)
    assert bind != 0
    assert words[10] == 6          # MAP_PERSISTENT (1 << 1) | MAP_COHERENT (1 << 2)
    assert words[11] == 9          # blob_id last
