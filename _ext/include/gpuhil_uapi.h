/*
 * The kernel uapi gpuhil compiles against.
 *
 * The system's headers come first.  Debian 12 ships 6.1 headers (and its drm/ headers live in
 * libdrm-dev), which lack what was added up to Linux 7.2; the missing constants and structs are
 * supplied here with the 7.2 values.  Structs that grew since 6.1 are reached through gpuhil_*
 * typedefs that name the system struct where it already has the new layout.
 * tests/test_abi.py compares every value used against linux-libc-dev 7.2.
 */
#ifndef GPUHIL_UAPI_H
#define GPUHIL_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/types.h>
#include <linux/virtio_gpu.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>
#include <linux/vfio.h>

#if __has_include(<drm/drm.h>)
#include <drm/drm.h>
#elif __has_include(<libdrm/drm.h>)
#include <libdrm/drm.h>
#else
#error "no DRM uapi headers: install linux-libc-dev >= 6.2 or libdrm-dev"
#endif

/* libdrm-dev's virtgpu_drm.h predates blob resources, so only the kernel's copy is used. */
#if __has_include(<drm/virtgpu_drm.h>)
#include <drm/virtgpu_drm.h>
#else
#include "gpuhil_virtgpu_drm.h"
#endif

/* ---- virtio_gpu.h ---- */
#ifndef VIRTIO_GPU_F_BLOB_ALIGNMENT
#define VIRTIO_GPU_F_BLOB_ALIGNMENT 5
#endif
#ifndef VIRTIO_GPU_CAPSET_VIRGL
#define VIRTIO_GPU_CAPSET_VIRGL 1
#endif
#ifndef VIRTIO_GPU_CAPSET_VIRGL2
#define VIRTIO_GPU_CAPSET_VIRGL2 2
#endif
#ifndef VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN
#define VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN 3
#endif
#ifndef VIRTIO_GPU_CAPSET_VENUS
#define VIRTIO_GPU_CAPSET_VENUS 4
#endif
#ifndef VIRTIO_GPU_CAPSET_CROSS_DOMAIN
#define VIRTIO_GPU_CAPSET_CROSS_DOMAIN 5
#endif
#ifndef VIRTIO_GPU_CAPSET_DRM
#define VIRTIO_GPU_CAPSET_DRM 6
#endif

/* virtio_gpu_config gained blob_alignment (16 -> 20 bytes). */
typedef struct gpuhil_virtio_gpu_config {
    __le32 events_read;
    __le32 events_clear;
    __le32 num_scanouts;
    __le32 num_capsets;
    __le32 blob_alignment;
} gpuhil_virtio_gpu_config_t;

/* ---- virtgpu_drm.h ---- */
#ifndef VIRTGPU_PARAM_EXPLICIT_DEBUG_NAME
#define VIRTGPU_PARAM_EXPLICIT_DEBUG_NAME 8
#endif
#ifndef VIRTGPU_PARAM_BLOB_ALIGNMENT
#define VIRTGPU_PARAM_BLOB_ALIGNMENT 9
#endif
#ifndef VIRTGPU_CONTEXT_PARAM_DEBUG_NAME
#define VIRTGPU_CONTEXT_PARAM_DEBUG_NAME 0x0004
#endif
#ifndef VIRTGPU_DRM_CAPSET_VIRGL
#define VIRTGPU_DRM_CAPSET_VIRGL 1
#define VIRTGPU_DRM_CAPSET_VIRGL2 2
#define VIRTGPU_DRM_CAPSET_GFXSTREAM_VULKAN 3
#define VIRTGPU_DRM_CAPSET_VENUS 4
#define VIRTGPU_DRM_CAPSET_CROSS_DOMAIN 5
#define VIRTGPU_DRM_CAPSET_DRM 6
#endif

/* drm_virtgpu_resource_create_blob gained blob_hints + pad2 (48 -> 56 bytes, new ioctl number). */
#ifdef DRM_VIRTGPU_BLOB_FLAG_HINT_DEFER_MAPPING
typedef struct drm_virtgpu_resource_create_blob gpuhil_virtgpu_resource_create_blob_t;
#define GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB
#else
#define DRM_VIRTGPU_BLOB_FLAG_HINT_DEFER_MAPPING 0x0001
typedef struct gpuhil_virtgpu_resource_create_blob {
    __u32 blob_mem;
    __u32 blob_flags;
    __u32 bo_handle;
    __u32 res_handle;
    __u64 size;
    __u32 pad;
    __u32 cmd_size;
    __u64 cmd;
    __u64 blob_id;
    __u32 blob_hints;
    __u32 pad2;
} gpuhil_virtgpu_resource_create_blob_t;
#define GPUHIL_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB \
    DRM_IOWR(DRM_COMMAND_BASE + DRM_VIRTGPU_RESOURCE_CREATE_BLOB, gpuhil_virtgpu_resource_create_blob_t)
#endif

/* ---- drm.h: drm_syncobj_wait gained deadline_nsec in 6.4 (32 -> 40 bytes) ---- */
#ifdef DRM_SYNCOBJ_WAIT_FLAGS_WAIT_DEADLINE
typedef struct drm_syncobj_wait gpuhil_drm_syncobj_wait_t;
#define GPUHIL_IOCTL_SYNCOBJ_WAIT DRM_IOCTL_SYNCOBJ_WAIT
#else
typedef struct gpuhil_drm_syncobj_wait {
    __u64 handles;
    __s64 timeout_nsec;
    __u32 count_handles;
    __u32 flags;
    __u32 first_signaled;
    __u32 pad;
    __u64 deadline_nsec;
} gpuhil_drm_syncobj_wait_t;
#define GPUHIL_IOCTL_SYNCOBJ_WAIT DRM_IOWR(0xC3, gpuhil_drm_syncobj_wait_t)
#endif

/* ---- vfio.h ---- */
#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
#endif
#ifndef VFIO_DEVICE_FEATURE_BUS_MASTER
#define VFIO_DEVICE_FEATURE_BUS_MASTER 10
#endif
#ifndef VFIO_DEVICE_FEATURE_DMA_BUF
#define VFIO_DEVICE_FEATURE_DMA_BUF 11
struct vfio_region_dma_range {
    __u64 offset;
    __u64 length;
};
struct vfio_device_feature_dma_buf {
    __u32 region_index;
    __u32 open_flags;
    __u32 flags;
    __u32 nr_ranges;
    struct vfio_region_dma_range dma_ranges[];
};
#endif
/* ---- vfio.h additions ---- */
#ifndef VFIO_DEVICE_FLAGS_CDX
#define VFIO_DEVICE_FLAGS_CDX (1 << 8)
#endif
#ifndef VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2
#define VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2 12
#endif

/* struct vfio_device_info as of 7.2 (6.1 lacks the trailing pad). */
typedef struct gpuhil_vfio_device_info {
    __u32 argsz;
    __u32 flags;
    __u32 num_regions;
    __u32 num_irqs;
    __u32 cap_offset;
    __u32 pad;
} gpuhil_vfio_device_info_t;

#endif /* GPUHIL_UAPI_H */
