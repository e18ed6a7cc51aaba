# cython: freethreading_compatible=False
"""gpuhil._vfio: the VFIO ioctls and capability-chain decoding.

Thin, exact wrappers: every function takes file descriptors and integers, fills the kernel
struct, and either returns the kernel's answer as plain values or raises an
:class:`~gpuhil.errors.IoctlError` naming the ioctl and its arguments symbolically.  The typed
objects (Container, Group, Device, ...) live in :mod:`gpuhil.devices.vfio`.
"""
from libc.errno cimport errno, EMSGSIZE
from libc.stdint cimport uint16_t, uint32_t, uint64_t, int32_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memset

from kernel cimport abi_table, gpuhil_abi_entry
from vfio cimport *

import enum

from gpuhil.errors import ioctl_error
from gpuhil.symbols import enum_name, flag_names

cdef extern from *:
    """
    #define GPUHIL_SIZE(name, T) {"sizeof(" name ")", sizeof(T)}
    #define GPUHIL_OFF(name, T, f) {"offsetof(" name ", " #f ")", offsetof(T, f)}
    #define GPUHIL_CONST(c) {#c, (unsigned long long)(c)}
    #define GPUHIL_STRUCT(s) GPUHIL_SIZE("struct " #s, struct s)
    #define GPUHIL_FIELD(s, f) GPUHIL_OFF("struct " #s, struct s, f)

    static const gpuhil_abi_entry gpuhil_vfio_abi[] = {
        GPUHIL_CONST(VFIO_API_VERSION),
        GPUHIL_CONST(VFIO_TYPE1_IOMMU), GPUHIL_CONST(VFIO_SPAPR_TCE_IOMMU),
        GPUHIL_CONST(VFIO_TYPE1v2_IOMMU), GPUHIL_CONST(VFIO_DMA_CC_IOMMU), GPUHIL_CONST(VFIO_EEH),
        GPUHIL_CONST(VFIO_SPAPR_TCE_v2_IOMMU), GPUHIL_CONST(VFIO_NOIOMMU_IOMMU),
        GPUHIL_CONST(VFIO_UNMAP_ALL), GPUHIL_CONST(VFIO_UPDATE_VADDR),
        GPUHIL_CONST(VFIO_GET_API_VERSION), GPUHIL_CONST(VFIO_CHECK_EXTENSION),
        GPUHIL_CONST(VFIO_SET_IOMMU), GPUHIL_CONST(VFIO_GROUP_GET_STATUS),
        GPUHIL_CONST(VFIO_GROUP_SET_CONTAINER), GPUHIL_CONST(VFIO_GROUP_UNSET_CONTAINER),
        GPUHIL_CONST(VFIO_GROUP_GET_DEVICE_FD),
        GPUHIL_CONST(VFIO_GROUP_FLAGS_VIABLE), GPUHIL_CONST(VFIO_GROUP_FLAGS_CONTAINER_SET),
        GPUHIL_STRUCT(vfio_group_status),
        GPUHIL_FIELD(vfio_group_status, argsz), GPUHIL_FIELD(vfio_group_status, flags),

        GPUHIL_STRUCT(vfio_info_cap_header),
        GPUHIL_FIELD(vfio_info_cap_header, id), GPUHIL_FIELD(vfio_info_cap_header, version),
        GPUHIL_FIELD(vfio_info_cap_header, next),

        GPUHIL_CONST(VFIO_DEVICE_GET_INFO), GPUHIL_CONST(VFIO_DEVICE_GET_REGION_INFO),
        GPUHIL_CONST(VFIO_DEVICE_GET_IRQ_INFO), GPUHIL_CONST(VFIO_DEVICE_RESET),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE),
        GPUHIL_CONST(VFIO_DEVICE_FLAGS_RESET), GPUHIL_CONST(VFIO_DEVICE_FLAGS_PCI),
        GPUHIL_CONST(VFIO_DEVICE_FLAGS_PLATFORM), GPUHIL_CONST(VFIO_DEVICE_FLAGS_AMBA),
        GPUHIL_CONST(VFIO_DEVICE_FLAGS_CCW), GPUHIL_CONST(VFIO_DEVICE_FLAGS_AP),
        GPUHIL_CONST(VFIO_DEVICE_FLAGS_FSL_MC), GPUHIL_CONST(VFIO_DEVICE_FLAGS_CAPS),
        GPUHIL_CONST(VFIO_DEVICE_FLAGS_CDX),
        GPUHIL_SIZE("struct vfio_device_info", gpuhil_vfio_device_info_t),
        GPUHIL_OFF("struct vfio_device_info", gpuhil_vfio_device_info_t, argsz),
        GPUHIL_OFF("struct vfio_device_info", gpuhil_vfio_device_info_t, flags),
        GPUHIL_OFF("struct vfio_device_info", gpuhil_vfio_device_info_t, num_regions),
        GPUHIL_OFF("struct vfio_device_info", gpuhil_vfio_device_info_t, num_irqs),
        GPUHIL_OFF("struct vfio_device_info", gpuhil_vfio_device_info_t, cap_offset),
        GPUHIL_OFF("struct vfio_device_info", gpuhil_vfio_device_info_t, pad),

        GPUHIL_CONST(VFIO_REGION_INFO_FLAG_READ), GPUHIL_CONST(VFIO_REGION_INFO_FLAG_WRITE),
        GPUHIL_CONST(VFIO_REGION_INFO_FLAG_MMAP), GPUHIL_CONST(VFIO_REGION_INFO_FLAG_CAPS),
        GPUHIL_CONST(VFIO_REGION_INFO_CAP_SPARSE_MMAP), GPUHIL_CONST(VFIO_REGION_INFO_CAP_TYPE),
        GPUHIL_CONST(VFIO_REGION_INFO_CAP_MSIX_MAPPABLE),
        GPUHIL_CONST(VFIO_REGION_TYPE_PCI_VENDOR_TYPE), GPUHIL_CONST(VFIO_REGION_TYPE_PCI_VENDOR_MASK),
        GPUHIL_CONST(VFIO_REGION_TYPE_GFX), GPUHIL_CONST(VFIO_REGION_TYPE_CCW),
        GPUHIL_CONST(VFIO_REGION_TYPE_MIGRATION_DEPRECATED),
        GPUHIL_STRUCT(vfio_region_info),
        GPUHIL_FIELD(vfio_region_info, argsz), GPUHIL_FIELD(vfio_region_info, flags),
        GPUHIL_FIELD(vfio_region_info, index), GPUHIL_FIELD(vfio_region_info, cap_offset),
        GPUHIL_FIELD(vfio_region_info, size), GPUHIL_FIELD(vfio_region_info, offset),
        GPUHIL_STRUCT(vfio_region_sparse_mmap_area),
        GPUHIL_FIELD(vfio_region_sparse_mmap_area, offset),
        GPUHIL_FIELD(vfio_region_sparse_mmap_area, size),
        GPUHIL_STRUCT(vfio_region_info_cap_sparse_mmap),
        GPUHIL_FIELD(vfio_region_info_cap_sparse_mmap, header),
        GPUHIL_FIELD(vfio_region_info_cap_sparse_mmap, nr_areas),
        GPUHIL_FIELD(vfio_region_info_cap_sparse_mmap, areas),
        GPUHIL_STRUCT(vfio_region_info_cap_type),
        GPUHIL_FIELD(vfio_region_info_cap_type, type),
        GPUHIL_FIELD(vfio_region_info_cap_type, subtype),

        GPUHIL_CONST(VFIO_IRQ_INFO_EVENTFD), GPUHIL_CONST(VFIO_IRQ_INFO_MASKABLE),
        GPUHIL_CONST(VFIO_IRQ_INFO_AUTOMASKED), GPUHIL_CONST(VFIO_IRQ_INFO_NORESIZE),
        GPUHIL_STRUCT(vfio_irq_info),
        GPUHIL_FIELD(vfio_irq_info, argsz), GPUHIL_FIELD(vfio_irq_info, flags),
        GPUHIL_FIELD(vfio_irq_info, index), GPUHIL_FIELD(vfio_irq_info, count),

        GPUHIL_CONST(VFIO_PCI_BAR0_REGION_INDEX), GPUHIL_CONST(VFIO_PCI_BAR1_REGION_INDEX),
        GPUHIL_CONST(VFIO_PCI_BAR2_REGION_INDEX), GPUHIL_CONST(VFIO_PCI_BAR3_REGION_INDEX),
        GPUHIL_CONST(VFIO_PCI_BAR4_REGION_INDEX), GPUHIL_CONST(VFIO_PCI_BAR5_REGION_INDEX),
        GPUHIL_CONST(VFIO_PCI_ROM_REGION_INDEX), GPUHIL_CONST(VFIO_PCI_CONFIG_REGION_INDEX),
        GPUHIL_CONST(VFIO_PCI_VGA_REGION_INDEX), GPUHIL_CONST(VFIO_PCI_NUM_REGIONS),
        GPUHIL_CONST(VFIO_PCI_INTX_IRQ_INDEX), GPUHIL_CONST(VFIO_PCI_MSI_IRQ_INDEX),
        GPUHIL_CONST(VFIO_PCI_MSIX_IRQ_INDEX), GPUHIL_CONST(VFIO_PCI_ERR_IRQ_INDEX),
        GPUHIL_CONST(VFIO_PCI_REQ_IRQ_INDEX), GPUHIL_CONST(VFIO_PCI_NUM_IRQS),

        GPUHIL_STRUCT(vfio_device_feature),
        GPUHIL_FIELD(vfio_device_feature, argsz), GPUHIL_FIELD(vfio_device_feature, flags),
        GPUHIL_FIELD(vfio_device_feature, data),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_MASK), GPUHIL_CONST(VFIO_DEVICE_FEATURE_GET),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_SET), GPUHIL_CONST(VFIO_DEVICE_FEATURE_PROBE),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_PCI_VF_TOKEN), GPUHIL_CONST(VFIO_DEVICE_FEATURE_MIGRATION),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_LOW_POWER_EXIT),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_DMA_LOGGING_START),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_MIG_DATA_SIZE), GPUHIL_CONST(VFIO_DEVICE_FEATURE_BUS_MASTER),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_DMA_BUF),
        GPUHIL_CONST(VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2),
        GPUHIL_STRUCT(vfio_region_dma_range),
        GPUHIL_FIELD(vfio_region_dma_range, offset), GPUHIL_FIELD(vfio_region_dma_range, length),
        GPUHIL_STRUCT(vfio_device_feature_dma_buf),
        GPUHIL_FIELD(vfio_device_feature_dma_buf, region_index),
        GPUHIL_FIELD(vfio_device_feature_dma_buf, open_flags),
        GPUHIL_FIELD(vfio_device_feature_dma_buf, flags),
        GPUHIL_FIELD(vfio_device_feature_dma_buf, nr_ranges),
        GPUHIL_FIELD(vfio_device_feature_dma_buf, dma_ranges),

        GPUHIL_CONST(VFIO_IOMMU_GET_INFO), GPUHIL_CONST(VFIO_IOMMU_MAP_DMA),
        GPUHIL_CONST(VFIO_IOMMU_UNMAP_DMA),
        GPUHIL_CONST(VFIO_IOMMU_INFO_PGSIZES), GPUHIL_CONST(VFIO_IOMMU_INFO_CAPS),
        GPUHIL_CONST(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE),
        GPUHIL_CONST(VFIO_DMA_MAP_FLAG_READ), GPUHIL_CONST(VFIO_DMA_MAP_FLAG_WRITE),
        GPUHIL_CONST(VFIO_DMA_UNMAP_FLAG_ALL),
        GPUHIL_STRUCT(vfio_iommu_type1_info),
        GPUHIL_FIELD(vfio_iommu_type1_info, argsz), GPUHIL_FIELD(vfio_iommu_type1_info, flags),
        GPUHIL_FIELD(vfio_iommu_type1_info, iova_pgsizes),
        GPUHIL_FIELD(vfio_iommu_type1_info, cap_offset),
        GPUHIL_STRUCT(vfio_iova_range),
        GPUHIL_FIELD(vfio_iova_range, start), GPUHIL_FIELD(vfio_iova_range, end),
        GPUHIL_STRUCT(vfio_iommu_type1_info_cap_iova_range),
        GPUHIL_FIELD(vfio_iommu_type1_info_cap_iova_range, nr_iovas),
        GPUHIL_FIELD(vfio_iommu_type1_info_cap_iova_range, iova_ranges),
        GPUHIL_STRUCT(vfio_iommu_type1_dma_map),
        GPUHIL_FIELD(vfio_iommu_type1_dma_map, argsz), GPUHIL_FIELD(vfio_iommu_type1_dma_map, flags),
        GPUHIL_FIELD(vfio_iommu_type1_dma_map, vaddr), GPUHIL_FIELD(vfio_iommu_type1_dma_map, iova),
        GPUHIL_FIELD(vfio_iommu_type1_dma_map, size),
        GPUHIL_STRUCT(vfio_iommu_type1_dma_unmap),
        GPUHIL_FIELD(vfio_iommu_type1_dma_unmap, argsz),
        GPUHIL_FIELD(vfio_iommu_type1_dma_unmap, flags),
        GPUHIL_FIELD(vfio_iommu_type1_dma_unmap, iova),
        GPUHIL_FIELD(vfio_iommu_type1_dma_unmap, size),

        {NULL, 0}
    };

    #define GPUHIL_SPARSE_AREAS_OFFSET offsetof(struct vfio_region_info_cap_sparse_mmap, areas)
    #define GPUHIL_IOVA_RANGES_OFFSET offsetof(struct vfio_iommu_type1_info_cap_iova_range, iova_ranges)
    #define GPUHIL_FEATURE_DATA_OFFSET offsetof(struct vfio_device_feature, data)
    #define GPUHIL_DMA_RANGES_OFFSET offsetof(struct vfio_device_feature_dma_buf, dma_ranges)
    """
    const gpuhil_abi_entry gpuhil_vfio_abi[]
    const size_t GPUHIL_SPARSE_AREAS_OFFSET
    const size_t GPUHIL_IOVA_RANGES_OFFSET
    const size_t GPUHIL_FEATURE_DATA_OFFSET
    const size_t GPUHIL_DMA_RANGES_OFFSET


#: Canonical Linux 7.2 uapi C expression -> the value this module was compiled with.
ABI = abi_table(gpuhil_vfio_abi)

# The kernel writes the size it needs into argsz when a capability chain does not fit; it never
# needs more than this, so a larger answer means a broken driver, not a bigger buffer.
cdef uint32_t MAX_INFO_ARGSZ = 1 << 20


# ---------------------------------------------------------------------------------------------
# Symbolic names (used by gpuhil.devices.vfio's types and in error messages)
# ---------------------------------------------------------------------------------------------

class Extension(enum.IntEnum):
    """Arguments of VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU (IOMMU models and container features)."""
    TYPE1 = VFIO_TYPE1_IOMMU
    SPAPR_TCE = VFIO_SPAPR_TCE_IOMMU
    TYPE1v2 = VFIO_TYPE1v2_IOMMU
    DMA_CC = VFIO_DMA_CC_IOMMU
    EEH = VFIO_EEH
    SPAPR_TCE_v2 = VFIO_SPAPR_TCE_v2_IOMMU
    NOIOMMU = VFIO_NOIOMMU_IOMMU
    UNMAP_ALL = VFIO_UNMAP_ALL
    UPDATE_VADDR = VFIO_UPDATE_VADDR


class GroupFlag(enum.IntFlag):
    """VFIO_GROUP_GET_STATUS flags."""
    VIABLE = VFIO_GROUP_FLAGS_VIABLE
    CONTAINER_SET = VFIO_GROUP_FLAGS_CONTAINER_SET


class DeviceFlag(enum.IntFlag):
    """struct vfio_device_info flags."""
    RESET = VFIO_DEVICE_FLAGS_RESET
    PCI = VFIO_DEVICE_FLAGS_PCI
    PLATFORM = VFIO_DEVICE_FLAGS_PLATFORM
    AMBA = VFIO_DEVICE_FLAGS_AMBA
    CCW = VFIO_DEVICE_FLAGS_CCW
    AP = VFIO_DEVICE_FLAGS_AP
    FSL_MC = VFIO_DEVICE_FLAGS_FSL_MC
    CAPS = VFIO_DEVICE_FLAGS_CAPS
    CDX = VFIO_DEVICE_FLAGS_CDX


class RegionIndex(enum.IntEnum):
    """vfio-pci region indexes (BARs, expansion ROM, config space, VGA)."""
    BAR0 = VFIO_PCI_BAR0_REGION_INDEX
    BAR1 = VFIO_PCI_BAR1_REGION_INDEX
    BAR2 = VFIO_PCI_BAR2_REGION_INDEX
    BAR3 = VFIO_PCI_BAR3_REGION_INDEX
    BAR4 = VFIO_PCI_BAR4_REGION_INDEX
    BAR5 = VFIO_PCI_BAR5_REGION_INDEX
    ROM = VFIO_PCI_ROM_REGION_INDEX
    CONFIG = VFIO_PCI_CONFIG_REGION_INDEX
    VGA = VFIO_PCI_VGA_REGION_INDEX


#: Number of fixed vfio-pci regions; indexes from here on are device specific.
NUM_PCI_REGIONS = VFIO_PCI_NUM_REGIONS


class RegionFlag(enum.IntFlag):
    """struct vfio_region_info flags."""
    READ = VFIO_REGION_INFO_FLAG_READ
    WRITE = VFIO_REGION_INFO_FLAG_WRITE
    MMAP = VFIO_REGION_INFO_FLAG_MMAP
    CAPS = VFIO_REGION_INFO_FLAG_CAPS


class RegionCap(enum.IntEnum):
    """Capability ids in a region info chain."""
    SPARSE_MMAP = VFIO_REGION_INFO_CAP_SPARSE_MMAP
    TYPE = VFIO_REGION_INFO_CAP_TYPE
    MSIX_MAPPABLE = VFIO_REGION_INFO_CAP_MSIX_MAPPABLE


class RegionType(enum.IntEnum):
    """The ``type`` of a VFIO_REGION_INFO_CAP_TYPE capability (vendor types have bit 31 set)."""
    GFX = VFIO_REGION_TYPE_GFX
    CCW = VFIO_REGION_TYPE_CCW
    MIGRATION_DEPRECATED = VFIO_REGION_TYPE_MIGRATION_DEPRECATED


#: Bit 31 of a region type: the low 16 bits are then a PCI vendor id.
REGION_TYPE_PCI_VENDOR = VFIO_REGION_TYPE_PCI_VENDOR_TYPE


class IrqIndex(enum.IntEnum):
    """vfio-pci interrupt indexes."""
    INTX = VFIO_PCI_INTX_IRQ_INDEX
    MSI = VFIO_PCI_MSI_IRQ_INDEX
    MSIX = VFIO_PCI_MSIX_IRQ_INDEX
    ERR = VFIO_PCI_ERR_IRQ_INDEX
    REQ = VFIO_PCI_REQ_IRQ_INDEX


class IrqFlag(enum.IntFlag):
    """struct vfio_irq_info flags."""
    EVENTFD = VFIO_IRQ_INFO_EVENTFD
    MASKABLE = VFIO_IRQ_INFO_MASKABLE
    AUTOMASKED = VFIO_IRQ_INFO_AUTOMASKED
    NORESIZE = VFIO_IRQ_INFO_NORESIZE


class Feature(enum.IntEnum):
    """VFIO_DEVICE_FEATURE ids (the low 16 bits of the flags)."""
    PCI_VF_TOKEN = VFIO_DEVICE_FEATURE_PCI_VF_TOKEN
    MIGRATION = VFIO_DEVICE_FEATURE_MIGRATION
    MIG_DEVICE_STATE = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
    LOW_POWER_ENTRY = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
    LOW_POWER_ENTRY_WITH_WAKEUP = VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
    LOW_POWER_EXIT = VFIO_DEVICE_FEATURE_LOW_POWER_EXIT
    DMA_LOGGING_START = VFIO_DEVICE_FEATURE_DMA_LOGGING_START
    DMA_LOGGING_STOP = VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP
    DMA_LOGGING_REPORT = VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT
    MIG_DATA_SIZE = VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
    BUS_MASTER = VFIO_DEVICE_FEATURE_BUS_MASTER
    DMA_BUF = VFIO_DEVICE_FEATURE_DMA_BUF
    MIG_PRECOPY_INFOv2 = VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2


class FeatureOp(enum.IntFlag):
    """What a VFIO_DEVICE_FEATURE call does with the feature: GET, SET, or PROBE (+GET/SET)."""
    GET = VFIO_DEVICE_FEATURE_GET
    SET = VFIO_DEVICE_FEATURE_SET
    PROBE = VFIO_DEVICE_FEATURE_PROBE


class DmaFlag(enum.IntFlag):
    """VFIO_IOMMU_MAP_DMA direction flags (as seen from the device)."""
    READ = VFIO_DMA_MAP_FLAG_READ
    WRITE = VFIO_DMA_MAP_FLAG_WRITE


#: VFIO_IOMMU_UNMAP_DMA flag: unmap every mapping of the container (iova and size must be 0).
UNMAP_FLAG_ALL = VFIO_DMA_UNMAP_FLAG_ALL


class IommuInfoFlag(enum.IntFlag):
    """struct vfio_iommu_type1_info flags."""
    PGSIZES = VFIO_IOMMU_INFO_PGSIZES
    CAPS = VFIO_IOMMU_INFO_CAPS


#: Capability id of the usable IOVA ranges in a VFIO_IOMMU_GET_INFO chain.
IOMMU_CAP_IOVA_RANGE = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE


#: Sizes of the info structs, i.e. where a capability chain may start at the earliest.
DEVICE_INFO_SIZE = sizeof(gpuhil_vfio_device_info_t)
REGION_INFO_SIZE = sizeof(vfio_region_info)
IOMMU_INFO_SIZE = sizeof(vfio_iommu_type1_info)


def feature_name(uint32_t flags) -> str:
    """Symbolic form of VFIO_DEVICE_FEATURE flags, e.g. ``PROBE|GET|DMA_BUF``."""
    parts = [op.name for op in (FeatureOp.PROBE, FeatureOp.GET, FeatureOp.SET) if flags & op]
    parts.append(str(enum_name(flags & VFIO_DEVICE_FEATURE_MASK, Feature)))
    return "|".join(parts)


def region_name(uint32_t index) -> object:
    """``BAR2`` for region 2 etc.; device-specific indexes stay numbers."""
    return enum_name(index, RegionIndex)


cdef inline object _hex_ranges(ranges):
    return "[" + ", ".join(f"({o:#x}, {l:#x})" for o, l in ranges) + "]"


cdef inline int _check(int ret, str op, dict args) except -1:
    if ret < 0:
        raise ioctl_error(op, args, errno)
    return ret


# ---------------------------------------------------------------------------------------------
# Container and group
# ---------------------------------------------------------------------------------------------

def get_api_version(int fd) -> int:
    """VFIO_GET_API_VERSION on a container fd."""
    return _check(ioctl(fd, VFIO_GET_API_VERSION), "GET_API_VERSION", {})


def check_extension(int fd, unsigned long extension) -> int:
    """VFIO_CHECK_EXTENSION: >0 when the container (or a group's IOMMU) supports ``extension``."""
    return _check(ioctl(fd, VFIO_CHECK_EXTENSION, extension), "CHECK_EXTENSION",
                  {"extension": enum_name(extension, Extension)})


def set_iommu(int fd, unsigned long iommu_type) -> None:
    """VFIO_SET_IOMMU: pick the container's IOMMU model (needs a group attached first)."""
    cdef int ret
    with nogil:
        ret = ioctl(fd, VFIO_SET_IOMMU, iommu_type)
    _check(ret, "SET_IOMMU", {"type": enum_name(iommu_type, Extension)})


def group_get_status(int fd) -> int:
    """VFIO_GROUP_GET_STATUS: the group's flags (VIABLE, CONTAINER_SET)."""
    cdef vfio_group_status status
    memset(&status, 0, sizeof(status))
    status.argsz = sizeof(status)
    _check(ioctl(fd, VFIO_GROUP_GET_STATUS, &status), "GROUP_GET_STATUS", {})
    return status.flags


def group_set_container(int group_fd, int container_fd) -> None:
    """VFIO_GROUP_SET_CONTAINER: attach the group to a container."""
    cdef int32_t cfd = container_fd
    _check(ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &cfd), "GROUP_SET_CONTAINER",
           {"container_fd": container_fd})


def group_unset_container(int group_fd) -> None:
    """VFIO_GROUP_UNSET_CONTAINER: detach the group from its container."""
    _check(ioctl(group_fd, VFIO_GROUP_UNSET_CONTAINER), "GROUP_UNSET_CONTAINER", {})


def group_get_device_fd(int group_fd, str name) -> int:
    """VFIO_GROUP_GET_DEVICE_FD: a device fd for ``name`` (a PCI address like 0000:00:03.0)."""
    cdef bytes raw = name.encode()
    return _check(ioctl(group_fd, VFIO_GROUP_GET_DEVICE_FD, <const char *>raw),
                  "GROUP_GET_DEVICE_FD", {"device": name})


# ---------------------------------------------------------------------------------------------
# Info ioctls with capability chains (the argsz retry contract)
# ---------------------------------------------------------------------------------------------

cdef bytes _info_with_caps(int fd, unsigned long request, void *first, uint32_t size,
                           str op, dict args):
    """Runs an info ioctl whose struct starts with argsz; returns the whole buffer with caps.

    ``first`` is the caller's prefilled struct (argsz is set here).  When the kernel answers
    with a bigger argsz, the call is repeated with a buffer of that size.
    """
    cdef uint32_t argsz = size
    cdef uint32_t wanted
    cdef char *buf = <char *>calloc(1, size)
    cdef char *grown
    if buf == NULL:
        raise MemoryError()
    try:
        memcpy(buf, first, size)
        while True:
            (<uint32_t *>buf)[0] = argsz
            _check(ioctl(fd, request, buf), op, args)
            wanted = (<uint32_t *>buf)[0]
            if wanted <= argsz:
                return buf[:argsz]
            if wanted > MAX_INFO_ARGSZ:
                raise ioctl_error(op, args, EMSGSIZE,
                                  f"the kernel asked for argsz={wanted}, more than {MAX_INFO_ARGSZ}")
            grown = <char *>realloc(buf, wanted)
            if grown == NULL:
                raise MemoryError()
            buf = grown
            memset(buf + argsz, 0, wanted - argsz)
            memcpy(buf, first, size)
            argsz = wanted
    finally:
        free(buf)


def device_get_info(int fd) -> tuple:
    """VFIO_DEVICE_GET_INFO -> (flags, num_regions, num_irqs, cap_offset, raw buffer)."""
    cdef gpuhil_vfio_device_info_t info
    memset(&info, 0, sizeof(info))
    raw = _info_with_caps(fd, VFIO_DEVICE_GET_INFO, &info, sizeof(info), "DEVICE_GET_INFO", {})
    memcpy(&info, <const char *>raw, sizeof(info))
    return info.flags, info.num_regions, info.num_irqs, info.cap_offset, raw


def device_get_region_info(int fd, uint32_t index) -> tuple:
    """VFIO_DEVICE_GET_REGION_INFO -> (flags, cap_offset, size, offset, raw buffer with caps)."""
    cdef vfio_region_info info
    memset(&info, 0, sizeof(info))
    info.index = index
    raw = _info_with_caps(fd, VFIO_DEVICE_GET_REGION_INFO, &info, sizeof(info),
                          "DEVICE_GET_REGION_INFO", {"region": region_name(index)})
    memcpy(&info, <const char *>raw, sizeof(info))
    return info.flags, info.cap_offset, info.size, info.offset, raw


def device_get_irq_info(int fd, uint32_t index) -> tuple:
    """VFIO_DEVICE_GET_IRQ_INFO -> (flags, count)."""
    cdef vfio_irq_info info
    memset(&info, 0, sizeof(info))
    info.argsz = sizeof(info)
    info.index = index
    _check(ioctl(fd, VFIO_DEVICE_GET_IRQ_INFO, &info), "DEVICE_GET_IRQ_INFO",
           {"irq": enum_name(index, IrqIndex)})
    return info.flags, info.count


def iommu_get_info(int fd) -> tuple:
    """VFIO_IOMMU_GET_INFO -> (flags, iova_pgsizes, cap_offset, raw buffer with caps)."""
    cdef vfio_iommu_type1_info info
    memset(&info, 0, sizeof(info))
    raw = _info_with_caps(fd, VFIO_IOMMU_GET_INFO, &info, sizeof(info), "IOMMU_GET_INFO", {})
    memcpy(&info, <const char *>raw, sizeof(info))
    return info.flags, info.iova_pgsizes, info.cap_offset, raw


# ---------------------------------------------------------------------------------------------
# Capability-chain decoding (pure functions over a buffer)
# ---------------------------------------------------------------------------------------------

def cap_chain(const unsigned char[:] buf, uint32_t first, uint32_t struct_size) -> list:
    """Walks the capability chain of an info buffer; returns ``[(id, version, offset), ...]``.

    ``first`` is the struct's cap_offset (0: no chain); each header's ``next`` is an offset
    from the start of ``buf``.  A header must lie inside the buffer after the fixed struct
    (``struct_size``) and must not be visited twice; otherwise ValueError.
    """
    cdef size_t length = buf.shape[0]
    cdef size_t offset = first
    cdef vfio_info_cap_header hdr
    caps = []
    seen = set()
    while offset != 0:
        if offset < struct_size:
            raise ValueError(f"capability at {offset:#x} overlaps the {struct_size}-byte info struct")
        if offset > length or length - offset < sizeof(hdr):
            raise ValueError(f"capability header at {offset:#x} runs past the {length}-byte buffer")
        if offset in seen:
            raise ValueError(f"capability chain loops back to {offset:#x}")
        seen.add(offset)
        memcpy(&hdr, &buf[offset], sizeof(hdr))
        caps.append((hdr.id, hdr.version, offset))
        offset = hdr.next
    return caps


cdef size_t _cap_array(const unsigned char[:] buf, size_t offset, size_t array_offset,
                       uint32_t count, size_t item, str what) except? 0:
    cdef size_t length = buf.shape[0]
    cdef size_t start = offset + array_offset
    if start > length or (length - start) // item < count:
        raise ValueError(f"{what} capability at {offset:#x} declares {count} entries, "
                         f"more than the {length}-byte buffer holds")
    return start


def decode_sparse_mmap(const unsigned char[:] buf, size_t offset) -> list:
    """The areas ``[(offset, size), ...]`` of a SPARSE_MMAP capability at ``offset``."""
    cdef vfio_region_info_cap_sparse_mmap cap
    cdef vfio_region_sparse_mmap_area area
    cdef size_t start, i
    cdef size_t length = buf.shape[0]
    if offset > length or length - offset < GPUHIL_SPARSE_AREAS_OFFSET:
        raise ValueError(f"SPARSE_MMAP capability at {offset:#x} is truncated")
    memcpy(&cap, &buf[offset], GPUHIL_SPARSE_AREAS_OFFSET)
    start = _cap_array(buf, offset, GPUHIL_SPARSE_AREAS_OFFSET, cap.nr_areas, sizeof(area),
                       "SPARSE_MMAP")
    areas = []
    for i in range(cap.nr_areas):
        memcpy(&area, &buf[start + i * sizeof(area)], sizeof(area))
        areas.append((area.offset, area.size))
    return areas


def decode_region_type(const unsigned char[:] buf, size_t offset) -> tuple:
    """``(type, subtype)`` of a TYPE capability at ``offset``."""
    cdef vfio_region_info_cap_type cap
    cdef size_t length = buf.shape[0]
    if offset > length or length - offset < sizeof(cap):
        raise ValueError(f"TYPE capability at {offset:#x} is truncated")
    memcpy(&cap, &buf[offset], sizeof(cap))
    return cap.type, cap.subtype


def decode_iova_ranges(const unsigned char[:] buf, size_t offset) -> list:
    """``[(start, end), ...]`` (end inclusive) of an IOVA_RANGE capability at ``offset``."""
    cdef vfio_iommu_type1_info_cap_iova_range cap
    cdef vfio_iova_range rng
    cdef size_t start, i
    cdef size_t length = buf.shape[0]
    if offset > length or length - offset < GPUHIL_IOVA_RANGES_OFFSET:
        raise ValueError(f"IOVA_RANGE capability at {offset:#x} is truncated")
    memcpy(&cap, &buf[offset], GPUHIL_IOVA_RANGES_OFFSET)
    start = _cap_array(buf, offset, GPUHIL_IOVA_RANGES_OFFSET, cap.nr_iovas, sizeof(rng),
                       "IOVA_RANGE")
    ranges = []
    for i in range(cap.nr_iovas):
        memcpy(&rng, &buf[start + i * sizeof(rng)], sizeof(rng))
        ranges.append((rng.start, rng.end))
    return ranges


def encode_cap_header(uint16_t cap_id, uint16_t version, uint32_t next_offset) -> bytes:
    """A struct vfio_info_cap_header (for building chains, e.g. in tests)."""
    cdef vfio_info_cap_header hdr
    hdr.id = cap_id
    hdr.version = version
    hdr.next = next_offset
    return (<char *>&hdr)[:sizeof(hdr)]


# ---------------------------------------------------------------------------------------------
# Device operations
# ---------------------------------------------------------------------------------------------

def device_reset(int fd) -> None:
    """VFIO_DEVICE_RESET (releases the GIL: a function reset can take a while)."""
    cdef int ret
    with nogil:
        ret = ioctl(fd, VFIO_DEVICE_RESET)
    _check(ret, "DEVICE_RESET", {})


def device_feature(int fd, uint32_t flags, const unsigned char[:] data, size_t out_size=0) -> tuple:
    """VFIO_DEVICE_FEATURE with ``flags`` (op | feature id) and payload ``data``.

    The data area is ``max(len(data), out_size)`` bytes.  Returns ``(ret, data after the
    call)``; ret is the ioctl's non-negative return value (a new fd for some features).
    """
    cdef size_t n = data.shape[0] if data is not None else 0
    cdef size_t area = n if n > out_size else out_size
    cdef size_t total = GPUHIL_FEATURE_DATA_OFFSET + area
    cdef vfio_device_feature *feat = <vfio_device_feature *>calloc(1, total)
    cdef int ret
    if feat == NULL:
        raise MemoryError()
    try:
        feat.argsz = total
        feat.flags = flags
        if n:
            memcpy(<char *>feat + GPUHIL_FEATURE_DATA_OFFSET, &data[0], n)
        with nogil:
            ret = ioctl(fd, VFIO_DEVICE_FEATURE, feat)
        _check(ret, "DEVICE_FEATURE", {"feature": feature_name(flags)})
        return ret, (<char *>feat + GPUHIL_FEATURE_DATA_OFFSET)[:area]
    finally:
        free(feat)


def device_feature_dma_buf(int fd, uint32_t region_index, ranges, uint32_t open_flags,
                           uint32_t flags=0, uint32_t op=VFIO_DEVICE_FEATURE_GET) -> int:
    """VFIO_DEVICE_FEATURE(op|DMA_BUF) over ``ranges`` [(offset, length)]; the ioctl's return
    value (for a plain GET: the new dma-buf fd, owned by the caller).

    ``op`` is any mix of GET, SET and PROBE; ``flags`` must be 0 for the kernel.  Both are
    parameters so negative tests can send others.
    """
    cdef list items = [(int(o), int(l)) for o, l in ranges]
    cdef uint32_t nr = len(items)
    cdef size_t total = GPUHIL_FEATURE_DATA_OFFSET + GPUHIL_DMA_RANGES_OFFSET + nr * sizeof(vfio_region_dma_range)
    cdef vfio_device_feature *feat = <vfio_device_feature *>calloc(1, total)
    cdef vfio_device_feature_dma_buf *dmabuf
    cdef vfio_region_dma_range *rng
    cdef size_t i
    cdef int ret
    if feat == NULL:
        raise MemoryError()
    try:
        feat.argsz = total
        feat.flags = (op & ~VFIO_DEVICE_FEATURE_MASK) | VFIO_DEVICE_FEATURE_DMA_BUF
        dmabuf = <vfio_device_feature_dma_buf *>(<char *>feat + GPUHIL_FEATURE_DATA_OFFSET)
        dmabuf.region_index = region_index
        dmabuf.open_flags = open_flags
        dmabuf.flags = flags
        dmabuf.nr_ranges = nr
        rng = <vfio_region_dma_range *>(<char *>dmabuf + GPUHIL_DMA_RANGES_OFFSET)
        for i in range(nr):
            rng[i].offset = items[i][0]
            rng[i].length = items[i][1]
        ret = ioctl(fd, VFIO_DEVICE_FEATURE, feat)
        args = {"feature": feature_name(feat.flags), "region": region_name(region_index),
                "ranges": _hex_ranges(items)}
        if flags:
            args["flags"] = flags
        _check(ret, "DEVICE_FEATURE", args)
        return ret
    finally:
        free(feat)


# ---------------------------------------------------------------------------------------------
# Type1 IOMMU DMA mappings
# ---------------------------------------------------------------------------------------------

def iommu_map_dma(int fd, uint64_t vaddr, uint64_t iova, uint64_t size, uint32_t flags) -> None:
    """VFIO_IOMMU_MAP_DMA: make ``size`` bytes at process address ``vaddr`` visible at ``iova``.

    Pins the pages, so it releases the GIL.
    """
    cdef vfio_iommu_type1_dma_map m
    cdef int ret
    memset(&m, 0, sizeof(m))
    m.argsz = sizeof(m)
    m.flags = flags
    m.vaddr = vaddr
    m.iova = iova
    m.size = size
    with nogil:
        ret = ioctl(fd, VFIO_IOMMU_MAP_DMA, &m)
    _check(ret, "IOMMU_MAP_DMA", {"iova": iova, "size": size, "flags": flag_names(flags, DmaFlag)})


def iommu_unmap_dma(int fd, uint64_t iova, uint64_t size, uint32_t flags=0) -> int:
    """VFIO_IOMMU_UNMAP_DMA; returns the number of bytes the kernel unmapped."""
    cdef vfio_iommu_type1_dma_unmap u
    cdef int ret
    memset(&u, 0, sizeof(u))
    u.argsz = sizeof(u)
    u.flags = flags
    u.iova = iova
    u.size = size
    with nogil:
        ret = ioctl(fd, VFIO_IOMMU_UNMAP_DMA, &u)
    args = {"iova": iova, "size": size}
    if flags:
        args["flags"] = "ALL" if flags == VFIO_DMA_UNMAP_FLAG_ALL else flags
    _check(ret, "IOMMU_UNMAP_DMA", args)
    return u.size
