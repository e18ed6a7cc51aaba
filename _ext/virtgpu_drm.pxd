# Declarations of the render-node uapi used by gpuhil._virtgpu: drm/virtgpu_drm.h and the
# DRM core ioctls (VERSION, GEM_CLOSE, PRIME, syncobj) from drm/drm.h, all via gpuhil_uapi.h.
from libc.stdint cimport uint32_t, int32_t, uint64_t, int64_t


cdef extern from "gpuhil_uapi.h" nogil:
    # ---- DRM core ----
    struct drm_version:
        int version_major
        int version_minor
        int version_patchlevel
        size_t name_len
        char *name
        size_t date_len
        char *date
        size_t desc_len
        char *desc

    struct drm_gem_close:
        uint32_t handle
        uint32_t pad

    struct drm_prime_handle:
        uint32_t handle
        uint32_t flags
        int32_t fd

    struct drm_syncobj_create:
        uint32_t handle
        uint32_t flags

    struct drm_syncobj_destroy:
        uint32_t handle
        uint32_t pad

    struct drm_syncobj_array:
        uint64_t handles
        uint32_t count_handles
        uint32_t pad

    unsigned long DRM_IOCTL_VERSION
    unsigned long DRM_IOCTL_GEM_CLOSE
    unsigned long DRM_IOCTL_PRIME_HANDLE_TO_FD
    unsigned long DRM_IOCTL_PRIME_FD_TO_HANDLE
    unsigned long DRM_IOCTL_SYNCOBJ_CREATE
    unsigned long DRM_IOCTL_SYNCOBJ_DESTROY
    unsigned long DRM_IOCTL_SYNCOBJ_RESET
    unsigned long DRM_IOCTL_SYNCOBJ_SIGNAL
    int DRM_CLOEXEC
    int DRM_RDWR
    int DRM_SYNCOBJ_CREATE_SIGNALED
    int DRM_SYNCOBJ_WAIT_FLAGS_WAIT_ALL
    int DRM_SYNCOBJ_WAIT_FLAGS_WAIT_FOR_SUBMIT
    int DRM_SYNCOBJ_WAIT_FLAGS_WAIT_AVAILABLE

    # ---- virtgpu_drm.h ----
    struct drm_virtgpu_map:
        uint64_t offset
        uint32_t handle
        uint32_t pad

    struct drm_virtgpu_execbuffer_syncobj:
        uint32_t handle
        uint32_t flags
        uint64_t point

    struct drm_virtgpu_execbuffer:
        uint32_t flags
        uint32_t size
        uint64_t command
        uint64_t bo_handles
        uint32_t num_bo_handles
        int32_t fence_fd
        uint32_t ring_idx
        uint32_t syncobj_stride
        uint32_t num_in_syncobjs
        uint32_t num_out_syncobjs
        uint64_t in_syncobjs
        uint64_t out_syncobjs

    struct drm_virtgpu_getparam:
        uint64_t param
        uint64_t value

    struct drm_virtgpu_resource_create:
        uint32_t target
        uint32_t format
        uint32_t bind
        uint32_t width
        uint32_t height
        uint32_t depth
        uint32_t array_size
        uint32_t last_level
        uint32_t nr_samples
        uint32_t flags
        uint32_t bo_handle
        uint32_t res_handle
        uint32_t size
        uint32_t stride

    struct drm_virtgpu_resource_info:
        uint32_t bo_handle
        uint32_t res_handle
        uint32_t size
        uint32_t blob_mem

    struct drm_virtgpu_3d_box:
        uint32_t x
        uint32_t y
        uint32_t z
        uint32_t w
        uint32_t h
        uint32_t d

    struct drm_virtgpu_3d_transfer_to_host:
        uint32_t bo_handle
        drm_virtgpu_3d_box box
        uint32_t level
        uint32_t offset
        uint32_t stride
        uint32_t layer_stride

    struct drm_virtgpu_3d_transfer_from_host:
        uint32_t bo_handle
        drm_virtgpu_3d_box box
        uint32_t level
        uint32_t offset
        uint32_t stride
        uint32_t layer_stride

    struct drm_virtgpu_3d_wait:
        uint32_t handle
        uint32_t flags

    struct drm_virtgpu_get_caps:
        uint32_t cap_set_id
        uint32_t cap_set_ver
        uint64_t addr
        uint32_t size
        uint32_t pad

    ctypedef struct gpuhil_virtgpu_resource_create_blob_t:
        uint32_t blob_mem
        uint32_t blob_flags
        uint32_t bo_handle
        uint32_t res_handle
        uint64_t size
        uint32_t pad
        uint32_t cmd_size
        uint64_t cmd
        uint64_t blob_id
        uint32_t blob_hints
        uint32_t pad2

    struct drm_virtgpu_context_set_param:
        uint64_t param
        uint64_t value

    struct drm_virtgpu_context_init:
        uint32_t num_params
        uint32_t pad
        uint64_t ctx_set_params

    unsigned long DRM_IOCTL_VIRTGPU_MAP
    unsigned long DRM_IOCTL_VIRTGPU_EXECBUFFER
    unsigned long DRM_IOCTL_VIRTGPU_GETPARAM
    unsigned long DRM_IOCTL_VIRTGPU_RESOURCE_CREATE
    unsigned long DRM_IOCTL_VIRTGPU_RESOURCE_INFO
    unsigned long DRM_IOCTL_VIRTGPU_TRANSFER_FROM_HOST
    unsigned long DRM_IOCTL_VIRTGPU_TRANSFER_TO_HOST
    unsigned long DRM_IOCTL_VIRTGPU_WAIT
    unsigned long DRM_IOCTL_VIRTGPU_GET_CAPS
    unsigned long GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB
    unsigned long DRM_IOCTL_VIRTGPU_CONTEXT_INIT

    int VIRTGPU_PARAM_3D_FEATURES
    int VIRTGPU_PARAM_CAPSET_QUERY_FIX
    int VIRTGPU_PARAM_RESOURCE_BLOB
    int VIRTGPU_PARAM_HOST_VISIBLE
    int VIRTGPU_PARAM_CROSS_DEVICE
    int VIRTGPU_PARAM_CONTEXT_INIT
    int VIRTGPU_PARAM_SUPPORTED_CAPSET_IDs
    int VIRTGPU_PARAM_EXPLICIT_DEBUG_NAME
    int VIRTGPU_PARAM_BLOB_ALIGNMENT

    int VIRTGPU_EXECBUF_FENCE_FD_IN
    int VIRTGPU_EXECBUF_FENCE_FD_OUT
    int VIRTGPU_EXECBUF_RING_IDX
    int VIRTGPU_EXECBUF_SYNCOBJ_RESET
    int VIRTGPU_WAIT_NOWAIT

    int VIRTGPU_DRM_CAPSET_VIRGL
    int VIRTGPU_DRM_CAPSET_VIRGL2
    int VIRTGPU_DRM_CAPSET_GFXSTREAM_VULKAN
    int VIRTGPU_DRM_CAPSET_VENUS
    int VIRTGPU_DRM_CAPSET_CROSS_DOMAIN
    int VIRTGPU_DRM_CAPSET_DRM

    int VIRTGPU_BLOB_MEM_GUEST
    int VIRTGPU_BLOB_MEM_HOST3D
    int VIRTGPU_BLOB_MEM_HOST3D_GUEST
    int VIRTGPU_BLOB_FLAG_USE_MAPPABLE
    int VIRTGPU_BLOB_FLAG_USE_SHAREABLE
    int VIRTGPU_BLOB_FLAG_USE_CROSS_DEVICE
    int DRM_VIRTGPU_BLOB_FLAG_HINT_DEFER_MAPPING

    int VIRTGPU_CONTEXT_PARAM_CAPSET_ID
    int VIRTGPU_CONTEXT_PARAM_NUM_RINGS
    int VIRTGPU_CONTEXT_PARAM_POLL_RINGS_MASK
    int VIRTGPU_CONTEXT_PARAM_DEBUG_NAME
    unsigned int VIRTGPU_EVENT_FENCE_SIGNALED


# drm_syncobj_wait grew deadline_nsec (32 -> 40 bytes, new ioctl number) in Linux 6.4; the 6.1
# drm.h of the build host lacks it, so the 7.2 layout is supplied here when missing.
cdef extern from "gpuhil_uapi.h":
    ctypedef struct gpuhil_drm_syncobj_wait_t:
        uint64_t handles
        int64_t timeout_nsec
        uint32_t count_handles
        uint32_t flags
        uint32_t first_signaled
        uint32_t pad
        uint64_t deadline_nsec
    unsigned long GPUHIL_IOCTL_SYNCOBJ_WAIT
