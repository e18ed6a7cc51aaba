# Declarations of the VFIO uapi used by gpuhil._vfio (see _ext/vfio.pyx).
#
# Everything comes from gpuhil_uapi.h (system headers + 7.2 supplements).  The block after it
# fills what that header does not have yet: the 7.2 layout of struct vfio_device_info (it
# gained a trailing pad: 20 -> 24 bytes), and a few 7.2 constants.  The lead may move it into gpuhil_uapi.h.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t

cdef extern from "gpuhil_uapi.h" nogil:
    int ioctl(int fd, unsigned long request, ...)

    # ---- container / group ----
    const int VFIO_API_VERSION
    const unsigned long VFIO_TYPE1_IOMMU
    const unsigned long VFIO_SPAPR_TCE_IOMMU
    const unsigned long VFIO_TYPE1v2_IOMMU
    const unsigned long VFIO_DMA_CC_IOMMU
    const unsigned long VFIO_EEH
    const unsigned long VFIO_SPAPR_TCE_v2_IOMMU
    const unsigned long VFIO_NOIOMMU_IOMMU
    const unsigned long VFIO_UNMAP_ALL
    const unsigned long VFIO_UPDATE_VADDR

    const unsigned long VFIO_GET_API_VERSION
    const unsigned long VFIO_CHECK_EXTENSION
    const unsigned long VFIO_SET_IOMMU
    const unsigned long VFIO_GROUP_GET_STATUS
    const unsigned long VFIO_GROUP_SET_CONTAINER
    const unsigned long VFIO_GROUP_UNSET_CONTAINER
    const unsigned long VFIO_GROUP_GET_DEVICE_FD

    const uint32_t VFIO_GROUP_FLAGS_VIABLE
    const uint32_t VFIO_GROUP_FLAGS_CONTAINER_SET

    struct vfio_group_status:
        uint32_t argsz
        uint32_t flags

    # ---- capability chains ----
    struct vfio_info_cap_header:
        uint16_t id
        uint16_t version
        uint32_t next

    # ---- device ----
    const unsigned long VFIO_DEVICE_GET_INFO
    const unsigned long VFIO_DEVICE_GET_REGION_INFO
    const unsigned long VFIO_DEVICE_GET_IRQ_INFO
    const unsigned long VFIO_DEVICE_RESET
    const unsigned long VFIO_DEVICE_FEATURE

    const uint32_t VFIO_DEVICE_FLAGS_RESET
    const uint32_t VFIO_DEVICE_FLAGS_PCI
    const uint32_t VFIO_DEVICE_FLAGS_PLATFORM
    const uint32_t VFIO_DEVICE_FLAGS_AMBA
    const uint32_t VFIO_DEVICE_FLAGS_CCW
    const uint32_t VFIO_DEVICE_FLAGS_AP
    const uint32_t VFIO_DEVICE_FLAGS_FSL_MC
    const uint32_t VFIO_DEVICE_FLAGS_CAPS

    const uint32_t VFIO_REGION_INFO_FLAG_READ
    const uint32_t VFIO_REGION_INFO_FLAG_WRITE
    const uint32_t VFIO_REGION_INFO_FLAG_MMAP
    const uint32_t VFIO_REGION_INFO_FLAG_CAPS
    const uint16_t VFIO_REGION_INFO_CAP_SPARSE_MMAP
    const uint16_t VFIO_REGION_INFO_CAP_TYPE
    const uint16_t VFIO_REGION_INFO_CAP_MSIX_MAPPABLE
    const uint32_t VFIO_REGION_TYPE_PCI_VENDOR_TYPE
    const uint32_t VFIO_REGION_TYPE_PCI_VENDOR_MASK
    const uint32_t VFIO_REGION_TYPE_GFX
    const uint32_t VFIO_REGION_TYPE_CCW
    const uint32_t VFIO_REGION_TYPE_MIGRATION_DEPRECATED

    struct vfio_region_info:
        uint32_t argsz
        uint32_t flags
        uint32_t index
        uint32_t cap_offset
        uint64_t size
        uint64_t offset

    struct vfio_region_sparse_mmap_area:
        uint64_t offset
        uint64_t size

    struct vfio_region_info_cap_sparse_mmap:
        vfio_info_cap_header header
        uint32_t nr_areas
        uint32_t reserved
        vfio_region_sparse_mmap_area areas[1]

    struct vfio_region_info_cap_type:
        vfio_info_cap_header header
        uint32_t type
        uint32_t subtype

    const uint32_t VFIO_IRQ_INFO_EVENTFD
    const uint32_t VFIO_IRQ_INFO_MASKABLE
    const uint32_t VFIO_IRQ_INFO_AUTOMASKED
    const uint32_t VFIO_IRQ_INFO_NORESIZE

    struct vfio_irq_info:
        uint32_t argsz
        uint32_t flags
        uint32_t index
        uint32_t count

    enum:
        VFIO_PCI_BAR0_REGION_INDEX
        VFIO_PCI_BAR1_REGION_INDEX
        VFIO_PCI_BAR2_REGION_INDEX
        VFIO_PCI_BAR3_REGION_INDEX
        VFIO_PCI_BAR4_REGION_INDEX
        VFIO_PCI_BAR5_REGION_INDEX
        VFIO_PCI_ROM_REGION_INDEX
        VFIO_PCI_CONFIG_REGION_INDEX
        VFIO_PCI_VGA_REGION_INDEX
        VFIO_PCI_NUM_REGIONS
        VFIO_PCI_INTX_IRQ_INDEX
        VFIO_PCI_MSI_IRQ_INDEX
        VFIO_PCI_MSIX_IRQ_INDEX
        VFIO_PCI_ERR_IRQ_INDEX
        VFIO_PCI_REQ_IRQ_INDEX
        VFIO_PCI_NUM_IRQS

    # ---- device features ----
    struct vfio_device_feature:
        uint32_t argsz
        uint32_t flags
        uint8_t data[1]

    const uint32_t VFIO_DEVICE_FEATURE_MASK
    const uint32_t VFIO_DEVICE_FEATURE_GET
    const uint32_t VFIO_DEVICE_FEATURE_SET
    const uint32_t VFIO_DEVICE_FEATURE_PROBE
    const uint32_t VFIO_DEVICE_FEATURE_PCI_VF_TOKEN
    const uint32_t VFIO_DEVICE_FEATURE_MIGRATION
    const uint32_t VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE
    const uint32_t VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY
    const uint32_t VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP
    const uint32_t VFIO_DEVICE_FEATURE_LOW_POWER_EXIT
    const uint32_t VFIO_DEVICE_FEATURE_DMA_LOGGING_START
    const uint32_t VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP
    const uint32_t VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT
    const uint32_t VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
    const uint32_t VFIO_DEVICE_FEATURE_BUS_MASTER
    const uint32_t VFIO_DEVICE_FEATURE_DMA_BUF

    struct vfio_region_dma_range:
        uint64_t offset
        uint64_t length

    struct vfio_device_feature_dma_buf:
        uint32_t region_index
        uint32_t open_flags
        uint32_t flags
        uint32_t nr_ranges
        vfio_region_dma_range dma_ranges[1]

    # ---- type1 IOMMU ----
    const unsigned long VFIO_IOMMU_GET_INFO
    const unsigned long VFIO_IOMMU_MAP_DMA
    const unsigned long VFIO_IOMMU_UNMAP_DMA
    const uint32_t VFIO_IOMMU_INFO_PGSIZES
    const uint32_t VFIO_IOMMU_INFO_CAPS
    const uint16_t VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
    const uint32_t VFIO_DMA_MAP_FLAG_READ
    const uint32_t VFIO_DMA_MAP_FLAG_WRITE
    const uint32_t VFIO_DMA_UNMAP_FLAG_ALL

    struct vfio_iommu_type1_info:
        uint32_t argsz
        uint32_t flags
        uint64_t iova_pgsizes
        uint32_t cap_offset

    struct vfio_iova_range:
        uint64_t start
        uint64_t end

    struct vfio_iommu_type1_info_cap_iova_range:
        vfio_info_cap_header header
        uint32_t nr_iovas
        uint32_t reserved
        vfio_iova_range iova_ranges[1]

    struct vfio_iommu_type1_dma_map:
        uint32_t argsz
        uint32_t flags
        uint64_t vaddr
        uint64_t iova
        uint64_t size

    struct vfio_iommu_type1_dma_unmap:
        uint32_t argsz
        uint32_t flags
        uint64_t iova
        uint64_t size


cdef extern from *:
    const uint32_t VFIO_DEVICE_FLAGS_CDX
    const uint32_t VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2

    ctypedef struct gpuhil_vfio_device_info_t:
        uint32_t argsz
        uint32_t flags
        uint32_t num_regions
        uint32_t num_irqs
        uint32_t cap_offset
        uint32_t pad

