# cython: binding=False
"""gpuhil._mapping: ``Mapping``, the one memory-mapping type of the native layer.

It serves dma-buf, memfd and render-node mmaps (gpuhil.devices.dmabuf, gpuhil.devices.memfd, gpuhil.devices.virtgpu)
as well as VFIO region mmaps and anonymous locked DMA memory (gpuhil.devices.vfio).  Mappings are made
only by the constructors below, from a file descriptor or anonymously, never from an address.
"""
from cpython.buffer cimport PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer, PyBUF_SIMPLE
from libc.errno cimport errno, EINVAL
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memcpy

from kernel cimport abi_table, gpuhil_abi_entry

from gpuhil.errors import ClosedError, ioctl_error

cdef extern from "sys/mman.h" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long off)
    int munmap(void *addr, size_t length)
    int mlock(const void *addr, size_t length)
    void *MAP_FAILED
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS

cdef extern from *:
    """
    #include <stdint.h>
    #include <sys/mman.h>
    /* Single-width MMIO accesses: the compiler must neither split, merge nor elide them. */
    static inline uint8_t gpuhil_mmio_read8(const void *p) { return *(const volatile uint8_t *)p; }
    static inline uint16_t gpuhil_mmio_read16(const void *p) { return *(const volatile uint16_t *)p; }
    static inline uint32_t gpuhil_mmio_read32(const void *p) { return *(const volatile uint32_t *)p; }
    static inline uint64_t gpuhil_mmio_read64(const void *p) { return *(const volatile uint64_t *)p; }
    static inline void gpuhil_mmio_write8(void *p, uint8_t v) { *(volatile uint8_t *)p = v; }
    static inline void gpuhil_mmio_write16(void *p, uint16_t v) { *(volatile uint16_t *)p = v; }
    static inline void gpuhil_mmio_write32(void *p, uint32_t v) { *(volatile uint32_t *)p = v; }
    static inline void gpuhil_mmio_write64(void *p, uint64_t v) { *(volatile uint64_t *)p = v; }

    static const gpuhil_abi_entry gpuhil_mapping_abi[] = {
        GPUHIL_C(PROT_READ),
        GPUHIL_C(PROT_WRITE),
        GPUHIL_C(MAP_SHARED),
        GPUHIL_C(MAP_PRIVATE),
        GPUHIL_C(MAP_ANONYMOUS),
        {NULL, 0}
    };
    """
    uint8_t gpuhil_mmio_read8(const void *p) nogil
    uint16_t gpuhil_mmio_read16(const void *p) nogil
    uint32_t gpuhil_mmio_read32(const void *p) nogil
    uint64_t gpuhil_mmio_read64(const void *p) nogil
    void gpuhil_mmio_write8(void *p, uint8_t v) nogil
    void gpuhil_mmio_write16(void *p, uint16_t v) nogil
    void gpuhil_mmio_write32(void *p, uint32_t v) nogil
    void gpuhil_mmio_write64(void *p, uint64_t v) nogil
    const gpuhil_abi_entry gpuhil_mapping_abi[]


#: C expression (canonical Linux 7.2 uapi names) -> value this module was compiled with.
ABI = abi_table(gpuhil_mapping_abi)


cdef class Mapping:
    """A memory mapping: of a file descriptor (dma-buf, memfd, render node, VFIO region) or of
    anonymous memory (locked for DMA).

    Byte ranges are copied with :meth:`read`/:meth:`write`; ``read8/16/32/64`` and
    ``write8/16/32/64`` are single, naturally aligned volatile accesses, as MMIO registers need.
    It supports the buffer protocol (``memoryview(m)``) and is a context manager.  ``close``
    unmaps; if memoryviews of it are still alive the unmap waits until the last one is
    released, so closing is always memory-safe.  Any use after close raises ClosedError; stores
    into a read-only mapping raise TypeError.
    """
    cdef char *_addr
    cdef Py_ssize_t _length
    cdef int _exports
    cdef bint _closed
    cdef bint _writable
    cdef readonly str label

    def __cinit__(self):
        self._addr = NULL
        self._length = 0
        self._exports = 0
        self._closed = True
        self._writable = False
        self.label = ""

    def __init__(self):
        raise TypeError("use Mapping.map() or Mapping.anonymous()")

    @staticmethod
    def map(int fd, Py_ssize_t length, long long offset=0, bint writable=True,
            str op="mmap", dict args=None, str label="") -> Mapping:
        """``mmap(MAP_SHARED)`` of ``length`` bytes of ``fd`` at ``offset``.

        A failure raises IoctlError for ``op`` with ``args`` plus fd, length and offset.
        """
        cdef int prot = PROT_READ | (PROT_WRITE if writable else 0)
        cdef void *addr = MAP_FAILED
        cdef int err = EINVAL
        if length > 0:
            with nogil:
                addr = mmap(NULL, <size_t>length, prot, MAP_SHARED, fd, <long>offset)
                if addr == MAP_FAILED:
                    err = errno
        if addr == MAP_FAILED:
            details = dict(args or {})
            details.update(fd=fd, length=length, offset=offset)
            raise ioctl_error(op, details, err)
        return Mapping._wrap(addr, length, writable, label or f"fd {fd}")

    @staticmethod
    def anonymous(Py_ssize_t length, bint lock=True, str label="") -> Mapping:
        """Private anonymous memory of ``length`` bytes, locked in RAM when ``lock`` (for DMA)."""
        cdef void *addr = MAP_FAILED
        cdef int err = EINVAL
        cdef bint lock_failed = False
        if length > 0:
            with nogil:
                addr = mmap(NULL, <size_t>length, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                if addr == MAP_FAILED:
                    err = errno
                elif lock and mlock(addr, <size_t>length) != 0:
                    err = errno
                    lock_failed = True
                    munmap(addr, <size_t>length)
        if lock_failed:
            raise ioctl_error("MLOCK", {"length": length}, err)
        if addr == MAP_FAILED:
            raise ioctl_error("MMAP", {"anonymous": True, "length": length}, err)
        return Mapping._wrap(addr, length, True, label or "anonymous")

    @staticmethod
    cdef Mapping _wrap(void *addr, Py_ssize_t length, bint writable, str label):
        cdef Mapping m = Mapping.__new__(Mapping)
        m._addr = <char *>addr
        m._length = length
        m._writable = writable
        m._closed = False
        m.label = label
        return m

    cdef void _unmap(self) noexcept:
        if self._addr != NULL:
            munmap(self._addr, <size_t>self._length)
            self._addr = NULL

    cdef inline int _check_open(self) except -1:
        if self._closed:
            raise ClosedError(f"mapping {self.label} is closed")
        return 0

    cdef inline char *_range(self, Py_ssize_t offset, Py_ssize_t size) except NULL:
        self._check_open()
        if offset < 0 or size < 0 or offset > self._length or self._length - offset < size:
            raise IndexError(f"range [{offset:#x}, {offset + size:#x}) is outside the "
                             f"{self._length:#x}-byte mapping {self.label}")
        return self._addr + offset

    cdef inline char *_writable_range(self, Py_ssize_t offset, Py_ssize_t size) except NULL:
        cdef char *p = self._range(offset, size)
        if not self._writable:
            raise TypeError(f"mapping {self.label} is read-only")
        return p

    cdef inline char *_at(self, Py_ssize_t offset, Py_ssize_t width) except NULL:
        cdef char *p = self._range(offset, width)
        if offset % width:
            raise ValueError(f"{width}-byte access at {offset:#x} is not naturally aligned")
        return p

    cdef inline char *_at_w(self, Py_ssize_t offset, Py_ssize_t width) except NULL:
        cdef char *p = self._at(offset, width)
        if not self._writable:
            raise TypeError(f"mapping {self.label} is read-only")
        return p

    def close(self) -> None:
        """Unmap now, or when the last exported memoryview is released.  Idempotent."""
        self._closed = True
        if self._exports == 0:
            self._unmap()

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed

    @property
    def writable(self) -> bool:
        """True if mapped with PROT_WRITE (stores into a read-only mapping raise TypeError)."""
        return self._writable

    @property
    def address(self) -> int:
        """The mapping's process virtual address (for VFIO DMA maps and diagnostics)."""
        self._check_open()
        return <uintptr_t>self._addr

    @property
    def length(self) -> int:
        """Its size in bytes."""
        return self._length

    def __len__(self) -> int:
        return self._length

    def __enter__(self) -> Mapping:
        self._check_open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __dealloc__(self):
        self._unmap()

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        self._check_open()
        PyBuffer_FillInfo(buffer, self, self._addr, self._length, not self._writable, flags)
        self._exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self._exports -= 1
        if self._closed and self._exports == 0:
            self._unmap()

    def read(self, Py_ssize_t offset=0, Py_ssize_t size=-1) -> bytes:
        """Copy ``size`` bytes (default: to the end) starting at ``offset`` (a plain copy: use
        on memory, not registers)."""
        if size < 0:
            size = self._length - offset
        cdef char *p = self._range(offset, size)
        return p[:size]

    def write(self, data, Py_ssize_t offset=0) -> None:
        """Copy ``data`` (any bytes-like object) into the mapping at ``offset``."""
        cdef Py_buffer view
        cdef char *p
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            p = self._writable_range(offset, view.len)
            if view.len:
                memcpy(p, view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)

    def read8(self, Py_ssize_t offset) -> int:
        """One 8-bit load."""
        return gpuhil_mmio_read8(self._at(offset, 1))

    def read16(self, Py_ssize_t offset) -> int:
        """One 16-bit load (little-endian host)."""
        return gpuhil_mmio_read16(self._at(offset, 2))

    def read32(self, Py_ssize_t offset) -> int:
        """One 32-bit load."""
        return gpuhil_mmio_read32(self._at(offset, 4))

    def read64(self, Py_ssize_t offset) -> int:
        """One 64-bit load."""
        return gpuhil_mmio_read64(self._at(offset, 8))

    def write8(self, Py_ssize_t offset, uint8_t value) -> None:
        """One 8-bit store."""
        gpuhil_mmio_write8(self._at_w(offset, 1), value)

    def write16(self, Py_ssize_t offset, uint16_t value) -> None:
        """One 16-bit store."""
        gpuhil_mmio_write16(self._at_w(offset, 2), value)

    def write32(self, Py_ssize_t offset, uint32_t value) -> None:
        """One 32-bit store."""
        gpuhil_mmio_write32(self._at_w(offset, 4), value)

    def write64(self, Py_ssize_t offset, uint64_t value) -> None:
        """One 64-bit store."""
        gpuhil_mmio_write64(self._at_w(offset, 8), value)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"at {<uintptr_t>self._addr:#x}"
        access = "" if self._writable else " read-only"
        return f"<Mapping {self.label} {self._length:#x} bytes{access} {state}>"
