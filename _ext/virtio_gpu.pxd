# Declarations of the virtio-gpu device protocol (linux/virtio_gpu.h, Linux 7.2 values) as
# gpuhil_uapi.h provides them.  Only what _ext/protocol.pyx uses is declared.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "gpuhil_uapi.h" nogil:
    # feature bits
    enum:
        VIRTIO_GPU_F_VIRGL
        VIRTIO_GPU_F_EDID
        VIRTIO_GPU_F_RESOURCE_UUID
        VIRTIO_GPU_F_RESOURCE_BLOB
        VIRTIO_GPU_F_CONTEXT_INIT
        VIRTIO_GPU_F_BLOB_ALIGNMENT

    enum virtio_gpu_ctrl_type:
        VIRTIO_GPU_UNDEFINED
        VIRTIO_GPU_CMD_GET_DISPLAY_INFO
        VIRTIO_GPU_CMD_RESOURCE_CREATE_2D
        VIRTIO_GPU_CMD_RESOURCE_UNREF
        VIRTIO_GPU_CMD_SET_SCANOUT
        VIRTIO_GPU_CMD_RESOURCE_FLUSH
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D
        VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING
        VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING
        VIRTIO_GPU_CMD_GET_CAPSET_INFO
        VIRTIO_GPU_CMD_GET_CAPSET
        VIRTIO_GPU_CMD_GET_EDID
        VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID
        VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB
        VIRTIO_GPU_CMD_SET_SCANOUT_BLOB
        VIRTIO_GPU_CMD_CTX_CREATE
        VIRTIO_GPU_CMD_CTX_DESTROY
        VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE
        VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE
        VIRTIO_GPU_CMD_RESOURCE_CREATE_3D
        VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D
        VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D
        VIRTIO_GPU_CMD_SUBMIT_3D
        VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB
        VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB
        VIRTIO_GPU_CMD_UPDATE_CURSOR
        VIRTIO_GPU_CMD_MOVE_CURSOR
        VIRTIO_GPU_RESP_OK_NODATA
        VIRTIO_GPU_RESP_OK_DISPLAY_INFO
        VIRTIO_GPU_RESP_OK_CAPSET_INFO
        VIRTIO_GPU_RESP_OK_CAPSET
        VIRTIO_GPU_RESP_OK_EDID
        VIRTIO_GPU_RESP_OK_RESOURCE_UUID
        VIRTIO_GPU_RESP_OK_MAP_INFO
        VIRTIO_GPU_RESP_ERR_UNSPEC
        VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY
        VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID
        VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID
        VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER

    enum virtio_gpu_shm_id:
        VIRTIO_GPU_SHM_ID_UNDEFINED
        VIRTIO_GPU_SHM_ID_HOST_VISIBLE

    enum virtio_gpu_formats:
        VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM
        VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM
        VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM
        VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM
        VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM
        VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM
        VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM
        VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM

    enum:
        VIRTIO_GPU_FLAG_FENCE
        VIRTIO_GPU_FLAG_INFO_RING_IDX
        VIRTIO_GPU_MAX_SCANOUTS
        VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP
        VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK
        VIRTIO_GPU_EVENT_DISPLAY
        VIRTIO_GPU_CAPSET_VIRGL
        VIRTIO_GPU_CAPSET_VIRGL2
        VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN
        VIRTIO_GPU_CAPSET_VENUS
        VIRTIO_GPU_CAPSET_CROSS_DOMAIN
        VIRTIO_GPU_CAPSET_DRM
        VIRTIO_GPU_BLOB_MEM_GUEST
        VIRTIO_GPU_BLOB_MEM_HOST3D
        VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST
        VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE
        VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE
        VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE
        VIRTIO_GPU_MAP_CACHE_MASK
        VIRTIO_GPU_MAP_CACHE_NONE
        VIRTIO_GPU_MAP_CACHE_CACHED
        VIRTIO_GPU_MAP_CACHE_UNCACHED
        VIRTIO_GPU_MAP_CACHE_WC

    struct virtio_gpu_ctrl_hdr:
        uint32_t type
        uint32_t flags
        uint64_t fence_id
        uint32_t ctx_id
        uint8_t ring_idx
        uint8_t padding[3]

    struct virtio_gpu_cursor_pos:
        uint32_t scanout_id
        uint32_t x
        uint32_t y
        uint32_t padding

    struct virtio_gpu_update_cursor:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_cursor_pos pos
        uint32_t resource_id
        uint32_t hot_x
        uint32_t hot_y
        uint32_t padding

    struct virtio_gpu_rect:
        uint32_t x
        uint32_t y
        uint32_t width
        uint32_t height

    struct virtio_gpu_resource_unref:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t padding

    struct virtio_gpu_resource_create_2d:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t format
        uint32_t width
        uint32_t height

    struct virtio_gpu_set_scanout:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_rect r
        uint32_t scanout_id
        uint32_t resource_id

    struct virtio_gpu_resource_flush:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_rect r
        uint32_t resource_id
        uint32_t padding

    struct virtio_gpu_transfer_to_host_2d:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_rect r
        uint64_t offset
        uint32_t resource_id
        uint32_t padding

    struct virtio_gpu_mem_entry:
        uint64_t addr
        uint32_t length
        uint32_t padding

    struct virtio_gpu_resource_attach_backing:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t nr_entries

    struct virtio_gpu_resource_detach_backing:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t padding

    struct virtio_gpu_display_one:
        virtio_gpu_rect r
        uint32_t enabled
        uint32_t flags

    struct virtio_gpu_resp_display_info:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_display_one pmodes[16]

    struct virtio_gpu_box:
        uint32_t x, y, z
        uint32_t w, h, d

    struct virtio_gpu_transfer_host_3d:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_box box
        uint64_t offset
        uint32_t resource_id
        uint32_t level
        uint32_t stride
        uint32_t layer_stride

    struct virtio_gpu_resource_create_3d:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
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
        uint32_t padding

    struct virtio_gpu_ctx_create:
        virtio_gpu_ctrl_hdr hdr
        uint32_t nlen
        uint32_t context_init
        char debug_name[64]

    struct virtio_gpu_ctx_destroy:
        virtio_gpu_ctrl_hdr hdr

    struct virtio_gpu_ctx_resource:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t padding

    struct virtio_gpu_cmd_submit:
        virtio_gpu_ctrl_hdr hdr
        uint32_t size
        uint32_t padding

    struct virtio_gpu_get_capset_info:
        virtio_gpu_ctrl_hdr hdr
        uint32_t capset_index
        uint32_t padding

    struct virtio_gpu_resp_capset_info:
        virtio_gpu_ctrl_hdr hdr
        uint32_t capset_id
        uint32_t capset_max_version
        uint32_t capset_max_size
        uint32_t padding

    struct virtio_gpu_get_capset:
        virtio_gpu_ctrl_hdr hdr
        uint32_t capset_id
        uint32_t capset_version

    struct virtio_gpu_resp_capset:
        virtio_gpu_ctrl_hdr hdr
        uint8_t capset_data[1]   # flexible array member

    struct virtio_gpu_cmd_get_edid:
        virtio_gpu_ctrl_hdr hdr
        uint32_t scanout
        uint32_t padding

    struct virtio_gpu_resp_edid:
        virtio_gpu_ctrl_hdr hdr
        uint32_t size
        uint32_t padding
        uint8_t edid[1024]

    struct virtio_gpu_resource_assign_uuid:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t padding

    struct virtio_gpu_resp_resource_uuid:
        virtio_gpu_ctrl_hdr hdr
        uint8_t uuid[16]

    struct virtio_gpu_resource_create_blob:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t blob_mem
        uint32_t blob_flags
        uint32_t nr_entries
        uint64_t blob_id
        uint64_t size

    struct virtio_gpu_set_scanout_blob:
        virtio_gpu_ctrl_hdr hdr
        virtio_gpu_rect r
        uint32_t scanout_id
        uint32_t resource_id
        uint32_t width
        uint32_t height
        uint32_t format
        uint32_t padding
        uint32_t strides[4]
        uint32_t offsets[4]

    struct virtio_gpu_resource_map_blob:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t padding
        uint64_t offset

    struct virtio_gpu_resp_map_info:
        virtio_gpu_ctrl_hdr hdr
        uint32_t map_info
        uint32_t padding

    struct virtio_gpu_resource_unmap_blob:
        virtio_gpu_ctrl_hdr hdr
        uint32_t resource_id
        uint32_t padding

    # virtio_gpu_config with blob_alignment (20 bytes), from gpuhil_uapi.h
    ctypedef struct gpuhil_virtio_gpu_config_t:
        uint32_t events_read
        uint32_t events_clear
        uint32_t num_scanouts
        uint32_t num_capsets
        uint32_t blob_alignment
