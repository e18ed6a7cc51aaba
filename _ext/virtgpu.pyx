# cython: binding=False, always_allow_keywords=False
"""Render-node ioctls of the virtio-gpu DRM driver and the DRM core (gpuhil._virtgpu).

``RenderNodeFd`` owns an open ``/dev/dri/renderD*`` descriptor and issues every ioctl as one
method; gpuhil.devices.virtgpu.RenderNode subclasses it and adds the typed objects.  Methods whose name
starts with ``_`` return raw tuples for that layer; the others are already the public API.
Failures raise :class:`gpuhil.errors.IoctlError` / ``Unsupported`` naming the ioctl and its
arguments symbolically; ioctls that can block run without the GIL.
"""
import enum

from libc.errno cimport errno
from libc.stdint cimport uint32_t, int32_t, uint64_t, int64_t, uintptr_t, INT64_MAX
from cpython.buffer cimport PyBuffer_Release, PyObject_GetBuffer, PyBUF_SIMPLE
from libc.stdlib cimport malloc, free
from posix.fcntl cimport open as c_open, O_RDWR, O_CLOEXEC
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from posix.unistd cimport close as c_close

from kernel cimport abi_table, gpuhil_abi_entry, gpuhil_ioctl
from virtgpu_drm cimport *

from gpuhil.errors import ClosedError, UNSUPPORTED_ERRNOS, ioctl_error
from gpuhil.symbols import enum_name, flag_names

cdef extern from *:
    """
    _Static_assert(sizeof(struct drm_virtgpu_3d_transfer_to_host) == sizeof(struct drm_virtgpu_3d_transfer_from_host)
                   && offsetof(struct drm_virtgpu_3d_transfer_to_host, layer_stride)
                      == offsetof(struct drm_virtgpu_3d_transfer_from_host, layer_stride),
                   "one code path fills both TRANSFER structs");
    #define GPUHIL_BLOB "struct drm_virtgpu_resource_create_blob"
    #define GPUHIL_BLOB_O(f) {"offsetof(" GPUHIL_BLOB ", " #f ")", offsetof(gpuhil_virtgpu_resource_create_blob_t, f)}
    #define GPUHIL_WAIT_O(f) {"offsetof(struct drm_syncobj_wait, " #f ")", offsetof(gpuhil_drm_syncobj_wait_t, f)}
    static const gpuhil_abi_entry gpuhil_virtgpu_abi[] = {
        /* DRM core */
        GPUHIL_S(struct drm_version),
        GPUHIL_O(struct drm_version, version_major),
        GPUHIL_O(struct drm_version, version_minor),
        GPUHIL_O(struct drm_version, version_patchlevel),
        GPUHIL_O(struct drm_version, name_len),
        GPUHIL_O(struct drm_version, name),
        GPUHIL_O(struct drm_version, date_len),
        GPUHIL_O(struct drm_version, date),
        GPUHIL_O(struct drm_version, desc_len),
        GPUHIL_O(struct drm_version, desc),
        GPUHIL_S(struct drm_gem_close),
        GPUHIL_O(struct drm_gem_close, handle),
        GPUHIL_O(struct drm_gem_close, pad),
        GPUHIL_S(struct drm_prime_handle),
        GPUHIL_O(struct drm_prime_handle, handle),
        GPUHIL_O(struct drm_prime_handle, flags),
        GPUHIL_O(struct drm_prime_handle, fd),
        GPUHIL_S(struct drm_syncobj_create),
        GPUHIL_O(struct drm_syncobj_create, handle),
        GPUHIL_O(struct drm_syncobj_create, flags),
        GPUHIL_S(struct drm_syncobj_destroy),
        GPUHIL_O(struct drm_syncobj_destroy, handle),
        GPUHIL_O(struct drm_syncobj_destroy, pad),
        GPUHIL_S(struct drm_syncobj_array),
        GPUHIL_O(struct drm_syncobj_array, handles),
        GPUHIL_O(struct drm_syncobj_array, count_handles),
        GPUHIL_O(struct drm_syncobj_array, pad),
        GPUHIL_N("sizeof(struct drm_syncobj_wait)", sizeof(gpuhil_drm_syncobj_wait_t)),
        GPUHIL_WAIT_O(handles),
        GPUHIL_WAIT_O(timeout_nsec),
        GPUHIL_WAIT_O(count_handles),
        GPUHIL_WAIT_O(flags),
        GPUHIL_WAIT_O(first_signaled),
        GPUHIL_WAIT_O(pad),
        GPUHIL_WAIT_O(deadline_nsec),
        GPUHIL_C(DRM_IOCTL_VERSION),
        GPUHIL_C(DRM_IOCTL_GEM_CLOSE),
        GPUHIL_C(DRM_IOCTL_PRIME_HANDLE_TO_FD),
        GPUHIL_C(DRM_IOCTL_PRIME_FD_TO_HANDLE),
        GPUHIL_C(DRM_IOCTL_SYNCOBJ_CREATE),
        GPUHIL_C(DRM_IOCTL_SYNCOBJ_DESTROY),
        GPUHIL_C(DRM_IOCTL_SYNCOBJ_RESET),
        GPUHIL_C(DRM_IOCTL_SYNCOBJ_SIGNAL),
        GPUHIL_N("DRM_IOCTL_SYNCOBJ_WAIT", GPUHIL_IOCTL_SYNCOBJ_WAIT),
        GPUHIL_C(DRM_CLOEXEC),
        GPUHIL_C(DRM_RDWR),
        GPUHIL_C(DRM_SYNCOBJ_CREATE_SIGNALED),
        GPUHIL_C(DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL),
        GPUHIL_C(DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT),
        GPUHIL_C(DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE),
        /* virtgpu_drm.h */
        GPUHIL_S(struct drm_virtgpu_map),
        GPUHIL_O(struct drm_virtgpu_map, offset),
        GPUHIL_O(struct drm_virtgpu_map, handle),
        GPUHIL_O(struct drm_virtgpu_map, pad),
        GPUHIL_S(struct drm_virtgpu_execbuffer_syncobj),
        GPUHIL_O(struct drm_virtgpu_execbuffer_syncobj, handle),
        GPUHIL_O(struct drm_virtgpu_execbuffer_syncobj, flags),
        GPUHIL_O(struct drm_virtgpu_execbuffer_syncobj, point),
        GPUHIL_S(struct drm_virtgpu_execbuffer),
        GPUHIL_O(struct drm_virtgpu_execbuffer, flags),
        GPUHIL_O(struct drm_virtgpu_execbuffer, size),
        GPUHIL_O(struct drm_virtgpu_execbuffer, command),
        GPUHIL_O(struct drm_virtgpu_execbuffer, bo_handles),
        GPUHIL_O(struct drm_virtgpu_execbuffer, num_bo_handles),
        GPUHIL_O(struct drm_virtgpu_execbuffer, fence_fd),
        GPUHIL_O(struct drm_virtgpu_execbuffer, ring_idx),
        GPUHIL_O(struct drm_virtgpu_execbuffer, syncobj_stride),
        GPUHIL_O(struct drm_virtgpu_execbuffer, num_in_syncobjs),
        GPUHIL_O(struct drm_virtgpu_execbuffer, num_out_syncobjs),
        GPUHIL_O(struct drm_virtgpu_execbuffer, in_syncobjs),
        GPUHIL_O(struct drm_virtgpu_execbuffer, out_syncobjs),
        GPUHIL_S(struct drm_virtgpu_getparam),
        GPUHIL_O(struct drm_virtgpu_getparam, param),
        GPUHIL_O(struct drm_virtgpu_getparam, value),
        GPUHIL_S(struct drm_virtgpu_resource_create),
        GPUHIL_O(struct drm_virtgpu_resource_create, target),
        GPUHIL_O(struct drm_virtgpu_resource_create, format),
        GPUHIL_O(struct drm_virtgpu_resource_create, bind),
        GPUHIL_O(struct drm_virtgpu_resource_create, width),
        GPUHIL_O(struct drm_virtgpu_resource_create, height),
        GPUHIL_O(struct drm_virtgpu_resource_create, depth),
        GPUHIL_O(struct drm_virtgpu_resource_create, array_size),
        GPUHIL_O(struct drm_virtgpu_resource_create, last_level),
        GPUHIL_O(struct drm_virtgpu_resource_create, nr_samples),
        GPUHIL_O(struct drm_virtgpu_resource_create, flags),
        GPUHIL_O(struct drm_virtgpu_resource_create, bo_handle),
        GPUHIL_O(struct drm_virtgpu_resource_create, res_handle),
        GPUHIL_O(struct drm_virtgpu_resource_create, size),
        GPUHIL_O(struct drm_virtgpu_resource_create, stride),
        GPUHIL_S(struct drm_virtgpu_resource_info),
        GPUHIL_O(struct drm_virtgpu_resource_info, bo_handle),
        GPUHIL_O(struct drm_virtgpu_resource_info, res_handle),
        GPUHIL_O(struct drm_virtgpu_resource_info, size),
        GPUHIL_O(struct drm_virtgpu_resource_info, blob_mem),
        GPUHIL_S(struct drm_virtgpu_3d_box),
        GPUHIL_O(struct drm_virtgpu_3d_box, x),
        GPUHIL_O(struct drm_virtgpu_3d_box, y),
        GPUHIL_O(struct drm_virtgpu_3d_box, z),
        GPUHIL_O(struct drm_virtgpu_3d_box, w),
        GPUHIL_O(struct drm_virtgpu_3d_box, h),
        GPUHIL_O(struct drm_virtgpu_3d_box, d),
        GPUHIL_S(struct drm_virtgpu_3d_transfer_to_host),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_to_host, bo_handle),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_to_host, box),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_to_host, level),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_to_host, offset),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_to_host, stride),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_to_host, layer_stride),
        GPUHIL_S(struct drm_virtgpu_3d_transfer_from_host),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_from_host, bo_handle),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_from_host, box),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_from_host, level),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_from_host, offset),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_from_host, stride),
        GPUHIL_O(struct drm_virtgpu_3d_transfer_from_host, layer_stride),
        GPUHIL_S(struct drm_virtgpu_3d_wait),
        GPUHIL_O(struct drm_virtgpu_3d_wait, handle),
        GPUHIL_O(struct drm_virtgpu_3d_wait, flags),
        GPUHIL_S(struct drm_virtgpu_get_caps),
        GPUHIL_O(struct drm_virtgpu_get_caps, cap_set_id),
        GPUHIL_O(struct drm_virtgpu_get_caps, cap_set_ver),
        GPUHIL_O(struct drm_virtgpu_get_caps, addr),
        GPUHIL_O(struct drm_virtgpu_get_caps, size),
        GPUHIL_O(struct drm_virtgpu_get_caps, pad),
        GPUHIL_N("sizeof(" GPUHIL_BLOB ")", sizeof(gpuhil_virtgpu_resource_create_blob_t)),
        GPUHIL_BLOB_O(blob_mem),
        GPUHIL_BLOB_O(blob_flags),
        GPUHIL_BLOB_O(bo_handle),
        GPUHIL_BLOB_O(res_handle),
        GPUHIL_BLOB_O(size),
        GPUHIL_BLOB_O(pad),
        GPUHIL_BLOB_O(cmd_size),
        GPUHIL_BLOB_O(cmd),
        GPUHIL_BLOB_O(blob_id),
        GPUHIL_BLOB_O(blob_hints),
        GPUHIL_BLOB_O(pad2),
        GPUHIL_S(struct drm_virtgpu_context_set_param),
        GPUHIL_O(struct drm_virtgpu_context_set_param, param),
        GPUHIL_O(struct drm_virtgpu_context_set_param, value),
        GPUHIL_S(struct drm_virtgpu_context_init),
        GPUHIL_O(struct drm_virtgpu_context_init, num_params),
        GPUHIL_O(struct drm_virtgpu_context_init, pad),
        GPUHIL_O(struct drm_virtgpu_context_init, ctx_set_params),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_MAP),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_EXECBUFFER),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_GETPARAM),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_RESOURCE_CREATE),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_RESOURCE_INFO),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_TRANSFER_FROM_HOST),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_WAIT),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_GET_CAPS),
        GPUHIL_N("DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB", GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB),
        GPUHIL_C(DRM_IOCTL_VIRTGPU_CONTEXT_INIT),
        GPUHIL_C(VIRTGPU_PARAM_3D_FEATURES),
        GPUHIL_C(VIRTGPU_PARAM_CAPSET_QUERY_FIX),
        GPUHIL_C(VIRTGPU_PARAM_RESOURCE_BLOB),
        GPUHIL_C(VIRTGPU_PARAM_HOST_VISIBLE),
        GPUHIL_C(VIRTGPU_PARAM_CROSS_DEVICE),
        GPUHIL_C(VIRTGPU_PARAM_CONTEXT_INIT),
        GPUHIL_C(VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs),
        GPUHIL_C(VIRTGPU_PARAM_EXPLICIT_DEBUG_NAME),
        GPUHIL_C(VIRTGPU_PARAM_BLOB_ALIGNMENT),
        GPUHIL_C(VIRTGPU_EXECBUF_FENCE_FD_IN),
        GPUHIL_C(VIRTGPU_EXECBUF_FENCE_FD_OUT),
        GPUHIL_C(VIRTGPU_EXECBUF_RING_IDX),
        GPUHIL_C(VIRTGPU_EXECBUF_SYNCOBJ_RESET),
        GPUHIL_C(VIRTGPU_WAIT_NOWAIT),
        GPUHIL_C(VIRTGPU_DRM_CAPSET_VIRGL),
        GPUHIL_C(VIRTGPU_DRM_CAPSET_VIRGL2),
        GPUHIL_C(VIRTGPU_DRM_CAPSET_GFXSTREAM_VULKAN),
        GPUHIL_C(VIRTGPU_DRM_CAPSET_VENUS),
        GPUHIL_C(VIRTGPU_DRM_CAPSET_CROSS_DOMAIN),
        GPUHIL_C(VIRTGPU_DRM_CAPSET_DRM),
        GPUHIL_C(VIRTGPU_BLOB_MEM_GUEST),
        GPUHIL_C(VIRTGPU_BLOB_MEM_HOST3D),
        GPUHIL_C(VIRTGPU_BLOB_MEM_HOST3D_GUEST),
        GPUHIL_C(VIRTGPU_BLOB_FLAG_USE_MAPPABLE),
        GPUHIL_C(VIRTGPU_BLOB_FLAG_USE_SHAREABLE),
        GPUHIL_C(VIRTGPU_BLOB_FLAG_USE_CROSS_DEVICE),
        GPUHIL_C(DRM_VIRTGPU_BLOB_FLAG_HINT_DEFER_MAPPING),
        GPUHIL_C(VIRTGPU_CONTEXT_PARAM_CAPSET_ID),
        GPUHIL_C(VIRTGPU_CONTEXT_PARAM_NUM_RINGS),
        GPUHIL_C(VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK),
        GPUHIL_C(VIRTGPU_CONTEXT_PARAM_DEBUG_NAME),
        GPUHIL_C(VIRTGPU_EVENT_FENCE_SIGNALED),
        {NULL, 0}
    };
    """
    const gpuhil_abi_entry gpuhil_virtgpu_abi[]


#: C expression (canonical Linux 7.2 uapi names) -> value this module was compiled with.
ABI = abi_table(gpuhil_virtgpu_abi)


# ---------------------------------------------------------------------------------------------
# Symbolic values (also used to name arguments in error messages)


class Param(enum.IntEnum):
    """GETPARAM parameters (``VIRTGPU_PARAM_*``; FEATURES_3D is ``VIRTGPU_PARAM_3D_FEATURES``)."""
    FEATURES_3D = VIRTGPU_PARAM_3D_FEATURES
    CAPSET_QUERY_FIX = VIRTGPU_PARAM_CAPSET_QUERY_FIX
    RESOURCE_BLOB = VIRTGPU_PARAM_RESOURCE_BLOB
    HOST_VISIBLE = VIRTGPU_PARAM_HOST_VISIBLE
    CROSS_DEVICE = VIRTGPU_PARAM_CROSS_DEVICE
    CONTEXT_INIT = VIRTGPU_PARAM_CONTEXT_INIT
    SUPPORTED_CAPSET_IDS = VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs
    EXPLICIT_DEBUG_NAME = VIRTGPU_PARAM_EXPLICIT_DEBUG_NAME
    BLOB_ALIGNMENT = VIRTGPU_PARAM_BLOB_ALIGNMENT


class Capset(enum.IntEnum):
    """Capability-set ids (``VIRTGPU_DRM_CAPSET_*``)."""
    VIRGL = VIRTGPU_DRM_CAPSET_VIRGL
    VIRGL2 = VIRTGPU_DRM_CAPSET_VIRGL2
    GFXSTREAM_VULKAN = VIRTGPU_DRM_CAPSET_GFXSTREAM_VULKAN
    VENUS = VIRTGPU_DRM_CAPSET_VENUS
    CROSS_DOMAIN = VIRTGPU_DRM_CAPSET_CROSS_DOMAIN
    DRM = VIRTGPU_DRM_CAPSET_DRM


class BlobMem(enum.IntEnum):
    """``drm_virtgpu_resource_create_blob.blob_mem``."""
    GUEST = VIRTGPU_BLOB_MEM_GUEST
    HOST3D = VIRTGPU_BLOB_MEM_HOST3D
    HOST3D_GUEST = VIRTGPU_BLOB_MEM_HOST3D_GUEST


class BlobFlag(enum.IntFlag):
    """``blob_flags`` (``VIRTGPU_BLOB_FLAG_USE_*``)."""
    MAPPABLE = VIRTGPU_BLOB_FLAG_USE_MAPPABLE
    SHAREABLE = VIRTGPU_BLOB_FLAG_USE_SHAREABLE
    CROSS_DEVICE = VIRTGPU_BLOB_FLAG_USE_CROSS_DEVICE


class BlobHint(enum.IntFlag):
    """``blob_hints`` (``DRM_VIRTGPU_BLOB_FLAG_HINT_*``)."""
    DEFER_MAPPING = DRM_VIRTGPU_BLOB_FLAG_HINT_DEFER_MAPPING


class ContextParam(enum.IntEnum):
    """CONTEXT_INIT parameters (``VIRTGPU_CONTEXT_PARAM_*``)."""
    CAPSET_ID = VIRTGPU_CONTEXT_PARAM_CAPSET_ID
    NUM_RINGS = VIRTGPU_CONTEXT_PARAM_NUM_RINGS
    POLL_RINGS_MASK = VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK
    DEBUG_NAME = VIRTGPU_CONTEXT_PARAM_DEBUG_NAME


class ExecFlag(enum.IntFlag):
    """EXECBUFFER flags (``VIRTGPU_EXECBUF_*``)."""
    FENCE_FD_IN = VIRTGPU_EXECBUF_FENCE_FD_IN
    FENCE_FD_OUT = VIRTGPU_EXECBUF_FENCE_FD_OUT
    RING_IDX = VIRTGPU_EXECBUF_RING_IDX


class ExecSyncobjFlag(enum.IntFlag):
    """``drm_virtgpu_execbuffer_syncobj.flags``."""
    RESET = VIRTGPU_EXECBUF_SYNCOBJ_RESET


class SyncobjWaitFlag(enum.IntFlag):
    """SYNCOBJ_WAIT flags (``DRM_SYNCOBJ_WAIT_FLAGS_*``)."""
    WAIT_ALL = DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL
    WAIT_FOR_SUBMIT = DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT
    WAIT_AVAILABLE = DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE


class PrimeFlag(enum.IntFlag):
    """PRIME_HANDLE_TO_FD flags (``DRM_CLOEXEC``, ``DRM_RDWR``)."""
    RDWR = DRM_RDWR
    CLOEXEC = DRM_CLOEXEC


#: GETPARAM failures that mean "this kernel does not know the parameter".
GETPARAM_UNSUPPORTED = UNSUPPORTED_ERRNOS | {22, 2}   # EINVAL, ENOENT
cdef int _EBUSY = 16
cdef int _ETIME = 62


cdef int _fail(str op, dict args, int err) except -1:
    raise ioctl_error(op, args, err)


cdef int64_t _monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef uint32_t *_u32_array(object values, Py_ssize_t *count) except? NULL:
    cdef Py_ssize_t n = len(values)
    cdef Py_ssize_t i
    cdef uint32_t *out
    count[0] = n
    if n == 0:
        return NULL
    out = <uint32_t *>malloc(<size_t>n * sizeof(uint32_t))
    if out == NULL:
        raise MemoryError()
    for i in range(n):
        out[i] = values[i]
    return out


cdef drm_virtgpu_execbuffer_syncobj *_syncobj_array(list entries) except? NULL:
    cdef Py_ssize_t n = len(entries)
    cdef Py_ssize_t i
    cdef drm_virtgpu_execbuffer_syncobj *out
    if n == 0:
        return NULL
    out = <drm_virtgpu_execbuffer_syncobj *>malloc(<size_t>n * sizeof(drm_virtgpu_execbuffer_syncobj))
    if out == NULL:
        raise MemoryError()
    for i in range(n):
        handle, flags, point = entries[i]
        out[i].handle = handle
        out[i].flags = flags
        out[i].point = point
    return out


cdef class RenderNodeFd:
    """An open DRM render node (``/dev/dri/renderD*``) and its ioctls.

    Opening a missing node raises IoctlError for op ``open`` naming the path.  Closing is
    deterministic and idempotent; every later call raises ClosedError.  GEM handles, contexts
    and syncobjs die with the descriptor, while existing mmaps stay valid.
    """
    cdef readonly int fd
    cdef readonly str path

    def __cinit__(self, str path, *args, **kwargs):
        cdef bytes bpath = path.encode()
        cdef const char *cpath = bpath
        cdef int fd
        self.fd = -1
        self.path = path
        with nogil:
            fd = c_open(cpath, O_RDWR | O_CLOEXEC)
        if fd < 0:
            _fail("open", {"path": path}, errno)
        self.fd = fd

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self.fd < 0

    def fileno(self) -> int:
        """The render node's file descriptor."""
        self._check()
        return self.fd

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    cdef inline int _check(self) except -1:
        if self.fd < 0:
            raise ClosedError(f"render node {self.path} is closed")
        return 0

    # ---- DRM core ----

    def _version(self) -> tuple:
        """DRM_IOCTL_VERSION -> (major, minor, patchlevel, name, date, desc)."""
        cdef drm_version v
        cdef int r
        cdef bytearray name, date, desc
        self._check()
        v.name_len = v.date_len = v.desc_len = 0
        v.name = v.date = v.desc = NULL
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_VERSION, &v)
        if r < 0:
            _fail("VERSION", {}, -r)
        name = bytearray(v.name_len + 1)
        date = bytearray(v.date_len + 1)
        desc = bytearray(v.desc_len + 1)
        v.name = name
        v.date = date
        v.desc = desc
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_VERSION, &v)
        if r < 0:
            _fail("VERSION", {}, -r)
        return (v.version_major, v.version_minor, v.version_patchlevel,
                bytes(name[:v.name_len]).decode(errors="replace"),
                bytes(date[:v.date_len]).decode(errors="replace"),
                bytes(desc[:v.desc_len]).decode(errors="replace"))

    def gem_close(self, uint32_t handle) -> None:
        """DRM_IOCTL_GEM_CLOSE: drop a GEM handle."""
        cdef drm_gem_close arg
        cdef int r
        self._check()
        arg.handle = handle
        arg.pad = 0
        with nogil:
            r = gpuhil_ioctl(self.fd, DRM_IOCTL_GEM_CLOSE, &arg)
        if r < 0:
            _fail("GEM_CLOSE", {"handle": handle}, -r)

    def prime_handle_to_fd(self, uint32_t handle, uint32_t flags=DRM_CLOEXEC | DRM_RDWR) -> int:
        """DRM_IOCTL_PRIME_HANDLE_TO_FD: export a GEM handle as a dma-buf fd."""
        cdef drm_prime_handle arg
        cdef int r
        self._check()
        arg.handle = handle
        arg.flags = flags
        arg.fd = -1
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &arg)
        if r < 0:
            _fail("PRIME_HANDLE_TO_FD", {"handle": handle, "flags": flag_names(flags, PrimeFlag)}, -r)
        return arg.fd

    def prime_fd_to_handle(self, int fd) -> int:
        """DRM_IOCTL_PRIME_FD_TO_HANDLE: import a dma-buf fd; returns its GEM handle."""
        cdef drm_prime_handle arg
        cdef int r
        self._check()
        arg.handle = 0
        arg.flags = 0
        arg.fd = fd
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &arg)
        if r < 0:
            _fail("PRIME_FD_TO_HANDLE", {"fd": fd}, -r)
        return arg.handle

    def syncobj_create(self, bint signaled=False) -> int:
        """DRM_IOCTL_SYNCOBJ_CREATE; returns the syncobj handle."""
        cdef drm_syncobj_create arg
        cdef int r
        self._check()
        arg.handle = 0
        arg.flags = DRM_SYNCOBJ_CREATE_SIGNALED if signaled else 0
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_SYNCOBJ_CREATE, &arg)
        if r < 0:
            _fail("SYNCOBJ_CREATE", {"flags": "SIGNALED" if signaled else 0}, -r)
        return arg.handle

    def syncobj_destroy(self, uint32_t handle) -> None:
        """DRM_IOCTL_SYNCOBJ_DESTROY."""
        cdef drm_syncobj_destroy arg
        cdef int r
        self._check()
        arg.handle = handle
        arg.pad = 0
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_SYNCOBJ_DESTROY, &arg)
        if r < 0:
            _fail("SYNCOBJ_DESTROY", {"handle": handle}, -r)

    cdef int _syncobj_array_op(self, str op, unsigned long request, object handles) except -1:
        cdef drm_syncobj_array arg
        cdef Py_ssize_t n
        cdef uint32_t *arr
        cdef int r
        self._check()
        arr = _u32_array(handles, &n)
        arg.handles = <uintptr_t>arr
        arg.count_handles = <uint32_t>n
        arg.pad = 0
        r = gpuhil_ioctl(self.fd, request, &arg)
        free(arr)
        if r < 0:
            _fail(op, {"handles": list(handles)}, -r)
        return 0

    def syncobj_reset(self, handles) -> None:
        """DRM_IOCTL_SYNCOBJ_RESET: drop the fences of the given syncobjs."""
        self._syncobj_array_op("SYNCOBJ_RESET", DRM_IOCTL_SYNCOBJ_RESET, handles)

    def syncobj_signal(self, handles) -> None:
        """DRM_IOCTL_SYNCOBJ_SIGNAL: give the syncobjs an already-signalled fence."""
        self._syncobj_array_op("SYNCOBJ_SIGNAL", DRM_IOCTL_SYNCOBJ_SIGNAL, handles)

    def syncobj_wait(self, handles, int64_t timeout_ns, uint32_t flags=0) -> int:
        """DRM_IOCTL_SYNCOBJ_WAIT for ``timeout_ns`` (relative; <0 = forever).

        Returns the index of the first signalled syncobj (0 with WAIT_ALL), or -1 on timeout.
        """
        cdef gpuhil_drm_syncobj_wait_t arg
        cdef Py_ssize_t n
        cdef uint32_t *arr
        cdef int r
        self._check()
        arr = _u32_array(handles, &n)
        arg.handles = <uintptr_t>arr
        arg.count_handles = <uint32_t>n
        arg.flags = flags
        arg.first_signaled = 0
        arg.pad = 0
        arg.deadline_nsec = 0
        with nogil:
            if timeout_ns < 0:
                arg.timeout_nsec = INT64_MAX
            else:
                arg.timeout_nsec = _monotonic_ns() + timeout_ns
            r = gpuhil_ioctl(self.fd, GPUHIL_IOCTL_SYNCOBJ_WAIT, &arg)
        free(arr)
        if r == -_ETIME:
            return -1
        if r < 0:
            _fail("SYNCOBJ_WAIT", {"handles": list(handles), "timeout_ns": timeout_ns,
                                   "flags": flag_names(flags, SyncobjWaitFlag)}, -r)
        return arg.first_signaled

    # ---- virtgpu ----

    def getparam(self, uint64_t param) -> int:
        """DRM_IOCTL_VIRTGPU_GETPARAM; an unknown parameter raises Unsupported."""
        cdef drm_virtgpu_getparam arg
        cdef int value = 0
        cdef int r
        if self.fd < 0:
            self._check()
        arg.param = param
        arg.value = <uintptr_t>&value
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_GETPARAM, &arg)
        if r < 0:
            raise ioctl_error("GETPARAM", {"param": enum_name(param, Param)}, -r,
                              unsupported=GETPARAM_UNSUPPORTED)
        return value

    def get_caps(self, uint32_t capset_id, uint32_t version=0, uint32_t size=4096) -> bytes:
        """DRM_IOCTL_VIRTGPU_GET_CAPS: ``size`` bytes of the capset (zero past the host's data)."""
        cdef bytearray buf = bytearray(size)
        cdef char *p = buf
        cdef drm_virtgpu_get_caps arg
        cdef int r
        self._check()
        arg.cap_set_id = capset_id
        arg.cap_set_ver = version
        arg.addr = <uintptr_t>p
        arg.size = size
        arg.pad = 0
        with nogil:
            r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_GET_CAPS, &arg)
        if r < 0:
            _fail("GET_CAPS", {"capset_id": enum_name(capset_id, Capset), "version": version,
                               "size": size}, -r)
        return bytes(buf)

    def context_init_params(self, params) -> None:
        """DRM_IOCTL_VIRTGPU_CONTEXT_INIT with raw ``(param, value)`` pairs, in order.

        A ``bytes`` value is passed as a pointer to a NUL-terminated copy (DEBUG_NAME).
        """
        cdef Py_ssize_t n = len(params)
        cdef Py_ssize_t i
        cdef drm_virtgpu_context_set_param *arr = NULL
        cdef drm_virtgpu_context_init arg
        cdef list keep = []
        cdef bytes text
        cdef const char *tp
        cdef int r
        self._check()
        if n:
            arr = <drm_virtgpu_context_set_param *>malloc(<size_t>n * sizeof(drm_virtgpu_context_set_param))
            if arr == NULL:
                raise MemoryError()
        try:
            for i in range(n):
                param, value = params[i]
                arr[i].param = param
                if isinstance(value, (bytes, bytearray)):
                    text = bytes(value) + b"\0"
                    keep.append(text)
                    tp = text
                    arr[i].value = <uintptr_t>tp
                else:
                    arr[i].value = value
            arg.num_params = <uint32_t>n
            arg.pad = 0
            arg.ctx_set_params = <uintptr_t>arr
            with nogil:
                r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_CONTEXT_INIT, &arg)
        finally:
            free(arr)
        if r < 0:
            shown = {enum_name(p, ContextParam): (v.decode(errors="replace") if isinstance(v, (bytes, bytearray))
                                              else (enum_name(v, Capset) if p == VIRTGPU_CONTEXT_PARAM_CAPSET_ID else v))
                     for p, v in params}
            _fail("CONTEXT_INIT", shown, -r)

    def context_init(self, capset_id=None, num_rings=None, poll_rings_mask=None,
                     debug_name=None) -> None:
        """DRM_IOCTL_VIRTGPU_CONTEXT_INIT with the given parameters (None = not sent)."""
        params = []
        if capset_id is not None:
            params.append((VIRTGPU_CONTEXT_PARAM_CAPSET_ID, int(capset_id)))
        if num_rings is not None:
            params.append((VIRTGPU_CONTEXT_PARAM_NUM_RINGS, int(num_rings)))
        if poll_rings_mask is not None:
            params.append((VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK, int(poll_rings_mask)))
        if debug_name is not None:
            params.append((VIRTGPU_CONTEXT_PARAM_DEBUG_NAME,
                           debug_name.encode() if isinstance(debug_name, str) else bytes(debug_name)))
        self.context_init_params(params)

    def _resource_create(self, uint32_t target, uint32_t format, uint32_t bind, uint32_t width,
                         uint32_t height, uint32_t depth, uint32_t array_size, uint32_t last_level,
                         uint32_t nr_samples, uint32_t flags, uint32_t size, uint32_t stride) -> tuple:
        """DRM_IOCTL_VIRTGPU_RESOURCE_CREATE -> (bo_handle, res_handle, size, stride)."""
        cdef drm_virtgpu_resource_create arg
        cdef int r
        self._check()
        arg.target = target
        arg.format = format
        arg.bind = bind
        arg.width = width
        arg.height = height
        arg.depth = depth
        arg.array_size = array_size
        arg.last_level = last_level
        arg.nr_samples = nr_samples
        arg.flags = flags
        arg.bo_handle = 0
        arg.res_handle = 0
        arg.size = size
        arg.stride = stride
        with nogil:
            r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_RESOURCE_CREATE, &arg)
        if r < 0:
            _fail("RESOURCE_CREATE", {"target": target, "format": format, "bind": bind,
                                      "width": width, "height": height, "depth": depth,
                                      "array_size": array_size, "last_level": last_level,
                                      "nr_samples": nr_samples, "flags": flags, "size": size,
                                      "stride": stride}, -r)
        return (arg.bo_handle, arg.res_handle, arg.size, arg.stride)

    def _create_blob(self, uint32_t blob_mem, uint64_t size, uint32_t blob_flags=0,
                     uint64_t blob_id=0, cmd=None, uint32_t blob_hints=0) -> tuple:
        """DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB (56-byte struct) -> (bo_handle, res_handle).

        ``cmd`` (bytes-like or None) is the inline context command."""
        cdef gpuhil_virtgpu_resource_create_blob_t arg
        cdef Py_buffer view
        cdef int r
        self._check()
        arg.blob_mem = blob_mem
        arg.blob_flags = blob_flags
        arg.bo_handle = 0
        arg.res_handle = 0
        arg.size = size
        arg.pad = 0
        arg.cmd_size = 0
        arg.cmd = 0
        arg.blob_id = blob_id
        arg.blob_hints = blob_hints
        arg.pad2 = 0
        if cmd is None:
            with nogil:
                r = gpuhil_ioctl(self.fd, GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, &arg)
        else:
            PyObject_GetBuffer(cmd, &view, PyBUF_SIMPLE)
            arg.cmd_size = <uint32_t>view.len
            arg.cmd = <uintptr_t>view.buf if view.len else 0
            with nogil:
                r = gpuhil_ioctl(self.fd, GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB, &arg)
            PyBuffer_Release(&view)
        if r < 0:
            _fail("RESOURCE_CREATE_BLOB", {
                "blob_mem": enum_name(blob_mem, BlobMem), "size": size,
                "blob_flags": flag_names(blob_flags, BlobFlag), "blob_id": blob_id,
                "cmd_size": arg.cmd_size, "blob_hints": flag_names(blob_hints, BlobHint)}, -r)
        return (arg.bo_handle, arg.res_handle)

    def _resource_info(self, uint32_t handle) -> tuple:
        """DRM_IOCTL_VIRTGPU_RESOURCE_INFO -> (bo_handle, res_handle, size, blob_mem)."""
        cdef drm_virtgpu_resource_info arg
        cdef int r
        self._check()
        arg.bo_handle = handle
        arg.res_handle = 0
        arg.size = 0
        arg.blob_mem = 0
        r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_RESOURCE_INFO, &arg)
        if r < 0:
            _fail("RESOURCE_INFO", {"bo_handle": handle}, -r)
        return (arg.bo_handle, arg.res_handle, arg.size, arg.blob_mem)

    def map_offset(self, uint32_t handle) -> int:
        """DRM_IOCTL_VIRTGPU_MAP: the fake mmap offset of a GEM object on this fd."""
        cdef drm_virtgpu_map arg
        cdef int r
        self._check()
        arg.handle = handle
        arg.pad = 0
        arg.offset = 0
        with nogil:
            r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_MAP, &arg)
        if r < 0:
            _fail("MAP", {"handle": handle}, -r)
        return arg.offset

    def wait(self, uint32_t handle, bint nowait=False) -> bool:
        """DRM_IOCTL_VIRTGPU_WAIT: True when the object is idle, False if still busy (EBUSY)."""
        cdef drm_virtgpu_3d_wait arg
        cdef int r
        self._check()
        arg.handle = handle
        arg.flags = VIRTGPU_WAIT_NOWAIT if nowait else 0
        with nogil:
            r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_WAIT, &arg)
        if r == -_EBUSY:
            return False
        if r < 0:
            _fail("WAIT", {"handle": handle, "flags": "NOWAIT" if nowait else 0}, -r)
        return True

    cdef int _transfer(self, str op, unsigned long request, uint32_t handle, box,
                       uint32_t level, uint32_t offset, uint32_t stride,
                       uint32_t layer_stride) except -1:
        # TRANSFER_TO_HOST and TRANSFER_FROM_HOST take structs of one layout (asserted in C).
        cdef drm_virtgpu_3d_transfer_to_host arg
        cdef int r
        self._check()
        arg.bo_handle = handle
        arg.box.x, arg.box.y, arg.box.z, arg.box.w, arg.box.h, arg.box.d = box
        arg.level = level
        arg.offset = offset
        arg.stride = stride
        arg.layer_stride = layer_stride
        with nogil:
            r = gpuhil_ioctl(self.fd, request, &arg)
        if r < 0:
            _fail(op, {"bo_handle": handle, "box": tuple(box), "level": level, "offset": offset,
                       "stride": stride, "layer_stride": layer_stride}, -r)
        return 0

    def transfer_to_host(self, uint32_t handle, box=(0, 0, 0, 0, 0, 0), uint32_t level=0,
                         uint32_t offset=0, uint32_t stride=0, uint32_t layer_stride=0) -> None:
        """DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST of ``box`` = (x, y, z, w, h, d)."""
        self._transfer("TRANSFER_TO_HOST", DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST, handle, box, level,
                       offset, stride, layer_stride)

    def transfer_from_host(self, uint32_t handle, box=(0, 0, 0, 0, 0, 0), uint32_t level=0,
                           uint32_t offset=0, uint32_t stride=0, uint32_t layer_stride=0) -> None:
        """DRM_IOCTL_VIRTGPU_TRANSFER_FROM_HOST of ``box`` = (x, y, z, w, h, d)."""
        self._transfer("TRANSFER_FROM_HOST", DRM_IOCTL_VIRTGPU_TRANSFER_FROM_HOST, handle, box,
                       level, offset, stride, layer_stride)

    def _execbuffer(self, command, bo_handles=(), uint32_t flags=0,
                    int fence_fd=-1, uint32_t ring_idx=0, list in_syncobjs=None,
                    list out_syncobjs=None) -> int:
        """DRM_IOCTL_VIRTGPU_EXECBUFFER; returns the out-fence fd (or -1 without FENCE_FD_OUT).

        ``flags`` is sent as given; syncobj lists hold ``(handle, flags, point)``.
        """
        cdef drm_virtgpu_execbuffer arg
        cdef Py_buffer view
        cdef Py_ssize_t nbo = 0
        cdef uint32_t *bos = NULL
        cdef drm_virtgpu_execbuffer_syncobj *ins = NULL
        cdef drm_virtgpu_execbuffer_syncobj *outs = NULL
        cdef int r
        self._check()
        in_syncobjs = in_syncobjs or []
        out_syncobjs = out_syncobjs or []
        PyObject_GetBuffer(command, &view, PyBUF_SIMPLE)
        try:
            bos = _u32_array(bo_handles, &nbo)
            ins = _syncobj_array(in_syncobjs)
            outs = _syncobj_array(out_syncobjs)
            arg.flags = flags
            arg.size = <uint32_t>view.len
            arg.command = <uintptr_t>view.buf if view.len else 0
            arg.bo_handles = <uintptr_t>bos
            arg.num_bo_handles = <uint32_t>nbo
            arg.fence_fd = fence_fd
            arg.ring_idx = ring_idx
            arg.syncobj_stride = sizeof(drm_virtgpu_execbuffer_syncobj)
            arg.num_in_syncobjs = <uint32_t>len(in_syncobjs)
            arg.num_out_syncobjs = <uint32_t>len(out_syncobjs)
            arg.in_syncobjs = <uintptr_t>ins
            arg.out_syncobjs = <uintptr_t>outs
            with nogil:
                r = gpuhil_ioctl(self.fd, DRM_IOCTL_VIRTGPU_EXECBUFFER, &arg)
        finally:
            PyBuffer_Release(&view)
            free(bos)
            free(ins)
            free(outs)
        if r < 0:
            _fail("EXECBUFFER", {"size": len(command), "flags": flag_names(flags, ExecFlag),
                                 "bo_handles": list(bo_handles), "fence_fd": fence_fd,
                                 "ring_idx": ring_idx, "in_syncobjs": len(in_syncobjs),
                                 "out_syncobjs": len(out_syncobjs)}, -r)
        return arg.fence_fd if flags & VIRTGPU_EXECBUF_FENCE_FD_OUT else -1
