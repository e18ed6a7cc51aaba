# cython: binding=False
"""dma-buf, udmabuf and memfd system calls (gpuhil._dmabuf).

Thin, exact wrappers over the kernel calls; the typed objects that own the file descriptors are
in gpuhil.devices.dmabuf, gpuhil.devices.memfd and gpuhil.devices.udmabuf.  Every failure raises
:class:`gpuhil.errors.IoctlError` (or ``Unsupported``) naming the call and its arguments.
"""
import enum

from libc.errno cimport errno
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from posix.ioctl cimport ioctl

from dma_buf cimport *
from kernel cimport abi_table, gpuhil_abi_entry, gpuhil_ioctl

from gpuhil.errors import ioctl_error
from gpuhil.symbols import flag_names

cdef extern from *:
    """
    static const gpuhil_abi_entry gpuhil_dmabuf_abi[] = {
        GPUHIL_S(struct dma_buf_sync),
        GPUHIL_O(struct dma_buf_sync, flags),
        GPUHIL_S(struct dma_buf_export_sync_file),
        GPUHIL_O(struct dma_buf_export_sync_file, flags),
        GPUHIL_O(struct dma_buf_export_sync_file, fd),
        GPUHIL_S(struct dma_buf_import_sync_file),
        GPUHIL_O(struct dma_buf_import_sync_file, flags),
        GPUHIL_O(struct dma_buf_import_sync_file, fd),
        GPUHIL_C(DMA_BUF_IOCTL_SYNC),
        GPUHIL_C(DMA_BUF_SET_NAME),
        GPUHIL_C(DMA_BUF_IOCTL_EXPORT_SYNC_FILE),
        GPUHIL_C(DMA_BUF_IOCTL_IMPORT_SYNC_FILE),
        GPUHIL_C(DMA_BUF_SYNC_READ),
        GPUHIL_C(DMA_BUF_SYNC_WRITE),
        GPUHIL_C(DMA_BUF_SYNC_RW),
        GPUHIL_C(DMA_BUF_SYNC_START),
        GPUHIL_C(DMA_BUF_SYNC_END),
        GPUHIL_C(DMA_BUF_NAME_LEN),
        GPUHIL_S(struct udmabuf_create),
        GPUHIL_O(struct udmabuf_create, memfd),
        GPUHIL_O(struct udmabuf_create, flags),
        GPUHIL_O(struct udmabuf_create, offset),
        GPUHIL_O(struct udmabuf_create, size),
        GPUHIL_S(struct udmabuf_create_item),
        GPUHIL_O(struct udmabuf_create_item, memfd),
        GPUHIL_O(struct udmabuf_create_item, __pad),
        GPUHIL_O(struct udmabuf_create_item, offset),
        GPUHIL_O(struct udmabuf_create_item, size),
        GPUHIL_S(struct udmabuf_create_list),
        GPUHIL_O(struct udmabuf_create_list, flags),
        GPUHIL_O(struct udmabuf_create_list, count),
        GPUHIL_O(struct udmabuf_create_list, list),
        GPUHIL_C(UDMABUF_CREATE),
        GPUHIL_C(UDMABUF_CREATE_LIST),
        GPUHIL_C(UDMABUF_FLAGS_CLOEXEC),
        GPUHIL_C(MFD_CLOEXEC),
        GPUHIL_C(MFD_ALLOW_SEALING),
        GPUHIL_C(MFD_HUGETLB),
        GPUHIL_C(MFD_NOEXEC_SEAL),
        GPUHIL_C(MFD_EXEC),
        GPUHIL_C(F_ADD_SEALS),
        GPUHIL_C(F_GET_SEALS),
        GPUHIL_C(F_SEAL_SEAL),
        GPUHIL_C(F_SEAL_SHRINK),
        GPUHIL_C(F_SEAL_GROW),
        GPUHIL_C(F_SEAL_WRITE),
        GPUHIL_C(F_SEAL_FUTURE_WRITE),
        GPUHIL_C(F_SEAL_EXEC),
        {NULL, 0}
    };
    """
    const gpuhil_abi_entry gpuhil_dmabuf_abi[]


#: C expression (canonical Linux 7.2 uapi names) -> value this module was compiled with.
ABI = abi_table(gpuhil_dmabuf_abi)


class SyncFlag(enum.IntFlag):
    """``struct dma_buf_sync.flags``: START (0) or END, with READ and/or WRITE."""
    START = DMA_BUF_SYNC_START
    READ = DMA_BUF_SYNC_READ
    WRITE = DMA_BUF_SYNC_WRITE
    RW = DMA_BUF_SYNC_RW
    END = DMA_BUF_SYNC_END


class Seal(enum.IntFlag):
    """memfd file seals (``F_ADD_SEALS`` / ``F_GET_SEALS``)."""
    SEAL = F_SEAL_SEAL
    SHRINK = F_SEAL_SHRINK
    GROW = F_SEAL_GROW
    WRITE = F_SEAL_WRITE
    FUTURE_WRITE = F_SEAL_FUTURE_WRITE
    EXEC = F_SEAL_EXEC


class MemfdFlag(enum.IntFlag):
    """``memfd_create`` flags."""
    CLOEXEC = MFD_CLOEXEC
    ALLOW_SEALING = MFD_ALLOW_SEALING
    HUGETLB = MFD_HUGETLB
    NOEXEC_SEAL = MFD_NOEXEC_SEAL
    EXEC = MFD_EXEC


DMA_BUF_NAME_MAX = DMA_BUF_NAME_LEN
UDMABUF_CLOEXEC = UDMABUF_FLAGS_CLOEXEC


def sync_flag_names(flags) -> str:
    """dma_buf_sync flags as ``START|READ``, ``END|RW`` ..."""
    cdef uint64_t f = flags
    phase = "END" if f & DMA_BUF_SYNC_END else "START"
    rest = f & ~(<uint64_t>DMA_BUF_SYNC_END)
    access = {0: "", 1: "|READ", 2: "|WRITE", 3: "|RW"}.get(rest & 3, "")
    rest &= ~(<uint64_t>3)
    return phase + access + (f"|{rest:#x}" if rest else "")


cdef int _fail(str op, dict args, int err) except -1:
    raise ioctl_error(op, args, err)


# ---------------------------------------------------------------------------------------------
# dma-buf ioctls


def buf_sync(int fd, uint64_t flags) -> None:
    """DMA_BUF_IOCTL_SYNC: bracket CPU access (START/END with READ/WRITE)."""
    cdef dma_buf_sync arg
    cdef int r
    arg.flags = flags
    with nogil:
        r = gpuhil_ioctl(fd, DMA_BUF_IOCTL_SYNC, &arg)
    if r < 0:
        _fail("DMA_BUF_IOCTL_SYNC", {"fd": fd, "flags": sync_flag_names(flags)}, -r)


def export_sync_file(int fd, uint32_t flags) -> int:
    """DMA_BUF_IOCTL_EXPORT_SYNC_FILE: a new sync_file fd for the buffer's fences."""
    cdef dma_buf_export_sync_file arg
    cdef int r
    arg.flags = flags
    arg.fd = -1
    with nogil:
        r = gpuhil_ioctl(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &arg)
    if r < 0:
        _fail("DMA_BUF_IOCTL_EXPORT_SYNC_FILE",
              {"fd": fd, "flags": flag_names(flags, SyncFlag)}, -r)
    return arg.fd


def import_sync_file(int fd, uint32_t flags, int sync_fd) -> None:
    """DMA_BUF_IOCTL_IMPORT_SYNC_FILE: add the sync_file's fence to the buffer."""
    cdef dma_buf_import_sync_file arg
    cdef int r
    arg.flags = flags
    arg.fd = sync_fd
    with nogil:
        r = gpuhil_ioctl(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &arg)
    if r < 0:
        _fail("DMA_BUF_IOCTL_IMPORT_SYNC_FILE",
              {"fd": fd, "flags": flag_names(flags, SyncFlag), "sync_fd": sync_fd}, -r)


def set_name(int fd, bytes name) -> None:
    """DMA_BUF_SET_NAME: label the buffer (shown as ``name`` in fdinfo)."""
    cdef const char *p = name
    cdef int r = gpuhil_ioctl(fd, DMA_BUF_SET_NAME, <void *>p)
    if r < 0:
        _fail("DMA_BUF_SET_NAME", {"fd": fd, "name": name.decode(errors="replace")}, -r)


# ---------------------------------------------------------------------------------------------
# memfd


def create_memfd(str name, unsigned int flags) -> int:
    """memfd_create(2); returns the new fd."""
    cdef bytes bname = name.encode()
    cdef int fd = c_memfd_create(bname, flags)
    if fd < 0:
        _fail("memfd_create", {"name": name, "flags": flag_names(flags, MemfdFlag)}, errno)
    return fd


def add_seals(int fd, int seals) -> None:
    """fcntl(F_ADD_SEALS)."""
    if c_fcntl(fd, F_ADD_SEALS, seals) < 0:
        _fail("F_ADD_SEALS", {"fd": fd, "seals": flag_names(seals, Seal)}, errno)


def get_seals(int fd) -> int:
    """fcntl(F_GET_SEALS)."""
    cdef int r = c_fcntl(fd, F_GET_SEALS)
    if r < 0:
        _fail("F_GET_SEALS", {"fd": fd}, errno)
    return r


# ---------------------------------------------------------------------------------------------
# udmabuf


def create_udmabuf(int dev_fd, int memfd, uint64_t offset, uint64_t size, uint32_t flags) -> int:
    """UDMABUF_CREATE on /dev/udmabuf: a dma-buf fd over [offset, offset+size) of ``memfd``."""
    cdef udmabuf_create arg
    cdef int r
    arg.memfd = <uint32_t>memfd
    arg.flags = flags
    arg.offset = offset
    arg.size = size
    with nogil:
        r = gpuhil_ioctl(dev_fd, UDMABUF_CREATE, &arg)
    if r < 0:
        _fail("UDMABUF_CREATE", {"memfd": memfd, "offset": offset, "size": size,
                                 "flags": "CLOEXEC" if flags == UDMABUF_FLAGS_CLOEXEC else flags}, -r)
    return r


def create_udmabuf_list(int dev_fd, list items, uint32_t flags) -> int:
    """UDMABUF_CREATE_LIST: one dma-buf over several ``(memfd, offset, size)`` ranges."""
    cdef Py_ssize_t count = len(items)
    cdef size_t nbytes = sizeof(udmabuf_create_list) + <size_t>count * sizeof(udmabuf_create_item)
    cdef udmabuf_create_list *arg = <udmabuf_create_list *>malloc(nbytes)
    cdef Py_ssize_t i
    cdef int r
    if arg == NULL:
        raise MemoryError()
    try:
        arg.flags = flags
        arg.count = <uint32_t>count
        for i in range(count):
            memfd, offset, size = items[i]
            arg.list[i].memfd = <uint32_t>memfd
            arg.list[i].__pad = 0
            arg.list[i].offset = offset
            arg.list[i].size = size
        with nogil:
            r = gpuhil_ioctl(dev_fd, UDMABUF_CREATE_LIST, arg)
    finally:
        free(arg)
    if r < 0:
        _fail("UDMABUF_CREATE_LIST", {"count": count, "items": [tuple(it) for it in items],
                                      "flags": "CLOEXEC" if flags == UDMABUF_FLAGS_CLOEXEC else flags}, -r)
    return r
