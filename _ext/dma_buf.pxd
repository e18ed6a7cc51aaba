# Declarations used by gpuhil._dmabuf: linux/dma-buf.h, linux/udmabuf.h (via gpuhil_uapi.h),
# memfd_create + file seals, mmap.
from libc.stdint cimport uint32_t, int32_t, uint64_t


cdef extern from "gpuhil_uapi.h" nogil:
    struct dma_buf_sync:
        uint64_t flags

    struct dma_buf_export_sync_file:
        uint32_t flags
        int32_t fd

    struct dma_buf_import_sync_file:
        uint32_t flags
        int32_t fd

    unsigned long DMA_BUF_IOCTL_SYNC
    unsigned long DMA_BUF_SET_NAME
    unsigned long DMA_BUF_IOCTL_EXPORT_SYNC_FILE
    unsigned long DMA_BUF_IOCTL_IMPORT_SYNC_FILE
    int DMA_BUF_SYNC_READ
    int DMA_BUF_SYNC_WRITE
    int DMA_BUF_SYNC_RW
    int DMA_BUF_SYNC_START
    int DMA_BUF_SYNC_END
    int DMA_BUF_NAME_LEN

    struct udmabuf_create:
        uint32_t memfd
        uint32_t flags
        uint64_t offset
        uint64_t size

    struct udmabuf_create_item:
        uint32_t memfd
        uint32_t __pad
        uint64_t offset
        uint64_t size

    struct udmabuf_create_list:
        uint32_t flags
        uint32_t count
        udmabuf_create_item list[1]

    unsigned long UDMABUF_CREATE
    unsigned long UDMABUF_CREATE_LIST
    int UDMABUF_FLAGS_CLOEXEC


# memfd flags and seals come from glibc on the build host (Debian 12); the ones newer than it
# are supplied with the Linux 7.2 values.
cdef extern from *:
    """
    #include <fcntl.h>
    #include <sys/mman.h>
    #ifndef MFD_NOEXEC_SEAL
    #define MFD_NOEXEC_SEAL 0x0008U
    #endif
    #ifndef MFD_EXEC
    #define MFD_EXEC 0x0010U
    #endif
    #ifndef F_SEAL_FUTURE_WRITE
    #define F_SEAL_FUTURE_WRITE 0x0010
    #endif
    #ifndef F_SEAL_EXEC
    #define F_SEAL_EXEC 0x0020
    #endif
    """
    int c_memfd_create "memfd_create"(const char *name, unsigned int flags) nogil
    int c_fcntl "fcntl"(int fd, int cmd, ...) nogil
    unsigned int MFD_CLOEXEC
    unsigned int MFD_ALLOW_SEALING
    unsigned int MFD_HUGETLB
    unsigned int MFD_NOEXEC_SEAL
    unsigned int MFD_EXEC
    int F_ADD_SEALS
    int F_GET_SEALS
    int F_SEAL_SEAL
    int F_SEAL_SHRINK
    int F_SEAL_GROW
    int F_SEAL_WRITE
    int F_SEAL_FUTURE_WRITE
    int F_SEAL_EXEC
