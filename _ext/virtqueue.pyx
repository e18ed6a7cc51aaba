# cython: binding=False
"""gpuhil._virtqueue: the virtio 1.x split virtqueue, driver side, over any writable memory.

:class:`SplitQueue` lays out a descriptor table, an avail ring and a used ring in a buffer the
device reaches at ``iova`` (for the raw virtio-gpu driver: DMA memory mapped through VFIO),
keeps the free list of descriptors, chains a command's readable and writable buffers, makes
any number of chains visible with one ``publish`` (the caller then notifies the device once),
and collects completions by polling ``used->idx`` (with a timeout, without the GIL).

The layouts and constants come from the kernel's uapi headers (linux/virtio_ring.h,
virtio_pci.h, virtio_config.h, pci_regs.h); ``ABI`` records every size, offset and constant
this module or gpuhil.raw.virtio_pci uses, for tests/test_abi.py.
"""
from cpython.buffer cimport PyBuffer_Release, PyObject_GetBuffer, PyBUF_WRITABLE
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from kernel cimport abi_table, gpuhil_abi_entry

from gpuhil.errors import ClosedError, GpuhilError

cdef extern from *:
    """
    #include <stdint.h>
    #include <time.h>
    #include <sched.h>
    #include <linux/types.h>
    #include <linux/virtio_ring.h>
    #include <linux/virtio_config.h>
    #include <linux/virtio_pci.h>
    #include <linux/pci_regs.h>

    /* The device reads the avail ring and writes the used ring concurrently: index loads and
     * stores are single atomic accesses ordered against the entries they publish. */
    static inline uint16_t gpuhil_vq_load_acquire(const uint16_t *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void gpuhil_vq_store_release(uint16_t *p, uint16_t v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline void gpuhil_vq_full_barrier(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

    static inline double gpuhil_vq_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    static inline void gpuhil_vq_sleep_us(long us) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
    static inline void gpuhil_vq_yield(void) { sched_yield(); }

    #define GPUHIL_S(T) {"sizeof(" #T ")", sizeof(T)}
    #define GPUHIL_O(T, f) {"offsetof(" #T ", " #f ")", offsetof(T, f)}
    #define GPUHIL_C(x) {#x, (unsigned long long)(x)}

    static const gpuhil_abi_entry gpuhil_virtqueue_abi[] = {
        GPUHIL_S(struct vring_desc), GPUHIL_O(struct vring_desc, addr),
        GPUHIL_O(struct vring_desc, len), GPUHIL_O(struct vring_desc, flags),
        GPUHIL_O(struct vring_desc, next),
        GPUHIL_S(struct vring_avail), GPUHIL_O(struct vring_avail, flags),
        GPUHIL_O(struct vring_avail, idx), GPUHIL_O(struct vring_avail, ring),
        GPUHIL_S(struct vring_used_elem), GPUHIL_O(struct vring_used_elem, id),
        GPUHIL_O(struct vring_used_elem, len),
        GPUHIL_S(struct vring_used), GPUHIL_O(struct vring_used, flags),
        GPUHIL_O(struct vring_used, idx), GPUHIL_O(struct vring_used, ring),
        GPUHIL_C(VRING_DESC_F_NEXT), GPUHIL_C(VRING_DESC_F_WRITE),
        GPUHIL_C(VRING_AVAIL_F_NO_INTERRUPT),
        GPUHIL_C(VRING_DESC_ALIGN_SIZE), GPUHIL_C(VRING_AVAIL_ALIGN_SIZE),
        GPUHIL_C(VRING_USED_ALIGN_SIZE),
        GPUHIL_C(VIRTIO_RING_F_INDIRECT_DESC), GPUHIL_C(VIRTIO_RING_F_EVENT_IDX),

        GPUHIL_C(VIRTIO_CONFIG_S_ACKNOWLEDGE), GPUHIL_C(VIRTIO_CONFIG_S_DRIVER),
        GPUHIL_C(VIRTIO_CONFIG_S_DRIVER_OK), GPUHIL_C(VIRTIO_CONFIG_S_FEATURES_OK),
        GPUHIL_C(VIRTIO_CONFIG_S_NEEDS_RESET), GPUHIL_C(VIRTIO_CONFIG_S_FAILED),
        GPUHIL_C(VIRTIO_F_VERSION_1), GPUHIL_C(VIRTIO_F_ACCESS_PLATFORM),
        GPUHIL_C(VIRTIO_F_RING_RESET),

        GPUHIL_C(VIRTIO_PCI_CAP_COMMON_CFG), GPUHIL_C(VIRTIO_PCI_CAP_NOTIFY_CFG),
        GPUHIL_C(VIRTIO_PCI_CAP_ISR_CFG), GPUHIL_C(VIRTIO_PCI_CAP_DEVICE_CFG),
        GPUHIL_C(VIRTIO_PCI_CAP_PCI_CFG), GPUHIL_C(VIRTIO_PCI_CAP_SHARED_MEMORY_CFG),
        GPUHIL_C(VIRTIO_MSI_NO_VECTOR),
        GPUHIL_S(struct virtio_pci_cap), GPUHIL_O(struct virtio_pci_cap, cap_vndr),
        GPUHIL_O(struct virtio_pci_cap, cap_next), GPUHIL_O(struct virtio_pci_cap, cap_len),
        GPUHIL_O(struct virtio_pci_cap, cfg_type), GPUHIL_O(struct virtio_pci_cap, bar),
        GPUHIL_O(struct virtio_pci_cap, id), GPUHIL_O(struct virtio_pci_cap, offset),
        GPUHIL_O(struct virtio_pci_cap, length),
        GPUHIL_S(struct virtio_pci_cap64), GPUHIL_O(struct virtio_pci_cap64, offset_hi),
        GPUHIL_O(struct virtio_pci_cap64, length_hi),
        GPUHIL_S(struct virtio_pci_notify_cap),
        GPUHIL_O(struct virtio_pci_notify_cap, notify_off_multiplier),
        GPUHIL_S(struct virtio_pci_common_cfg),
        GPUHIL_O(struct virtio_pci_common_cfg, device_feature_select),
        GPUHIL_O(struct virtio_pci_common_cfg, device_feature),
        GPUHIL_O(struct virtio_pci_common_cfg, guest_feature_select),
        GPUHIL_O(struct virtio_pci_common_cfg, guest_feature),
        GPUHIL_O(struct virtio_pci_common_cfg, msix_config),
        GPUHIL_O(struct virtio_pci_common_cfg, num_queues),
        GPUHIL_O(struct virtio_pci_common_cfg, device_status),
        GPUHIL_O(struct virtio_pci_common_cfg, config_generation),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_select),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_size),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_msix_vector),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_enable),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_notify_off),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_desc_lo),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_desc_hi),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_avail_lo),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_avail_hi),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_used_lo),
        GPUHIL_O(struct virtio_pci_common_cfg, queue_used_hi),

        GPUHIL_C(PCI_COMMAND), GPUHIL_C(PCI_COMMAND_MEMORY), GPUHIL_C(PCI_COMMAND_MASTER),
        GPUHIL_C(PCI_STATUS), GPUHIL_C(PCI_STATUS_CAP_LIST), GPUHIL_C(PCI_CAPABILITY_LIST),
        GPUHIL_C(PCI_CAP_LIST_ID), GPUHIL_C(PCI_CAP_LIST_NEXT), GPUHIL_C(PCI_CAP_ID_VNDR),
        {NULL, 0}
    };
    """
    struct vring_desc:
        uint64_t addr
        uint32_t len
        uint16_t flags
        uint16_t next
    struct vring_avail:
        uint16_t flags
        uint16_t idx
        uint16_t ring[1]
    struct vring_used_elem:
        uint32_t id
        uint32_t len
    struct vring_used:
        uint16_t flags
        uint16_t idx
        vring_used_elem ring[1]
    enum:
        VRING_DESC_F_NEXT
        VRING_DESC_F_WRITE
        VRING_AVAIL_F_NO_INTERRUPT
    uint16_t gpuhil_vq_load_acquire(const uint16_t *p) nogil
    void gpuhil_vq_store_release(uint16_t *p, uint16_t v) nogil
    void gpuhil_vq_full_barrier() nogil
    double gpuhil_vq_now() nogil
    void gpuhil_vq_sleep_us(long us) nogil
    void gpuhil_vq_yield() nogil
    const gpuhil_abi_entry gpuhil_virtqueue_abi[]
    size_t sizeof_vring_desc "sizeof(struct vring_desc)"
    size_t sizeof_vring_used_elem "sizeof(struct vring_used_elem)"
    size_t offsetof_avail_ring "offsetof(struct vring_avail, ring)"
    size_t offsetof_used_ring "offsetof(struct vring_used, ring)"


#: C expression (canonical Linux 7.2 uapi names) -> value this module was compiled with.
ABI = abi_table(gpuhil_virtqueue_abi)

#: The largest queue a split ring can have (virtio 1.x: queue sizes up to 32768).
MAX_QUEUE_SIZE = 32768
NO_HEAD = 0xFFFF


class RingError(GpuhilError):
    """The ring cannot take a chain (no free descriptors, bad buffers) or the device put an
    impossible entry in the used ring (an id that is not an in-flight head)."""


cdef inline size_t _align(size_t value, size_t alignment) noexcept nogil:
    return (value + alignment - 1) & ~(alignment - 1)


def ring_layout(unsigned int size):
    """(desc offset, avail offset, used offset, total bytes) of a split ring of ``size``
    entries: descriptor table, then the avail ring, then the used ring 4-byte aligned."""
    if size == 0 or size > MAX_QUEUE_SIZE or size & (size - 1):
        raise ValueError(f"a split virtqueue's size is a power of two up to {MAX_QUEUE_SIZE}, "
                         f"not {size}")
    cdef size_t avail = sizeof_vring_desc * size
    # avail: flags, idx, ring[size], used_event
    cdef size_t used = _align(avail + offsetof_avail_ring + 2 * size + 2, 4)
    # used: flags, idx, ring[size], avail_event
    cdef size_t end = used + offsetof_used_ring + sizeof_vring_used_elem * size + 2
    return 0, <Py_ssize_t>avail, <Py_ssize_t>used, <Py_ssize_t>end


cdef class SplitQueue:
    """The driver side of one split virtqueue in ``memory[offset:offset + layout bytes]``,
    which the device sees at ``iova``.

    ``add`` takes a chain (readable buffers, then writable buffers, each ``(iova, length)``)
    and queues its head in the avail ring; ``publish`` makes everything added visible with
    one store of ``avail->idx``; ``poll``/``wait`` collect ``(head, used length)`` completions
    and free their descriptors.  ``reset`` zeroes the ring for a re-initialised device.
    ``close`` releases the memory (use after close raises ClosedError; twice is harmless).
    """
    cdef Py_buffer _view
    cdef bint _open
    cdef char *_ring
    cdef vring_desc *_desc
    cdef vring_avail *_avail
    cdef vring_used *_used
    cdef uint16_t *_free_next   # free list through descriptor indices, NO_HEAD terminated
    cdef uint16_t *_chain_len   # per head: descriptors in its chain, 0 when not in flight
    cdef uint16_t _free_head
    cdef uint16_t _num_free
    cdef uint16_t _shadow_avail
    cdef uint16_t _published
    cdef uint16_t _last_used
    cdef unsigned int _in_flight
    cdef readonly unsigned int size
    cdef readonly unsigned long long iova
    cdef readonly Py_ssize_t offset
    cdef readonly Py_ssize_t desc_offset
    cdef readonly Py_ssize_t avail_offset
    cdef readonly Py_ssize_t used_offset
    cdef readonly Py_ssize_t nbytes
    cdef readonly str name

    def __cinit__(self):
        self._open = False
        self._free_next = NULL
        self._chain_len = NULL

    def __init__(self, memory, unsigned int size, unsigned long long iova,
                 Py_ssize_t offset=0, str name="vq"):
        cdef Py_ssize_t desc, avail, used, total
        desc, avail, used, total = ring_layout(size)
        if iova % 16:
            raise ValueError(f"{name}: the descriptor table's IOVA {iova:#x} is not 16-byte aligned")
        PyObject_GetBuffer(memory, &self._view, PyBUF_WRITABLE)
        self._open = True
        if offset < 0 or offset + total > self._view.len:
            self.close()
            raise ValueError(f"{name}: a ring of {size} entries needs {total:#x} bytes at "
                             f"{offset:#x}; the memory has {self._view.len:#x}")
        if (<size_t>self._view.buf + offset) % 16:
            self.close()
            raise ValueError(f"{name}: the ring memory is not 16-byte aligned")
        self._free_next = <uint16_t *>malloc(size * sizeof(uint16_t))
        self._chain_len = <uint16_t *>malloc(size * sizeof(uint16_t))
        if self._free_next == NULL or self._chain_len == NULL:
            self.close()
            raise MemoryError()
        self.size = size
        self.iova = iova
        self.name = name
        self.offset = offset
        self.desc_offset = offset + desc
        self.avail_offset = offset + avail
        self.used_offset = offset + used
        self.nbytes = total
        self._ring = <char *>self._view.buf + offset
        self._desc = <vring_desc *>(self._ring + desc)
        self._avail = <vring_avail *>(self._ring + avail)
        self._used = <vring_used *>(self._ring + used)
        self.reset()

    cdef inline int _check(self) except -1:
        if not self._open:
            raise ClosedError(f"virtqueue {self.name} is closed")
        return 0

    def reset(self) -> None:
        """Zero the ring and forget every chain (after a device reset, before re-enabling)."""
        self._check()
        memset(self._ring, 0, <size_t>self.nbytes)
        cdef unsigned int i
        for i in range(self.size):
            self._free_next[i] = <uint16_t>(i + 1) if i + 1 < self.size else NO_HEAD
            self._chain_len[i] = 0
        self._free_head = 0
        self._num_free = <uint16_t>self.size
        self._shadow_avail = 0
        self._published = 0
        self._last_used = 0
        self._in_flight = 0
        # Completions are polled: ask the device not to interrupt.
        self._avail.flags = VRING_AVAIL_F_NO_INTERRUPT

    @property
    def desc_iova(self) -> int:
        """Device address of the descriptor table (queue_desc)."""
        return self.iova + self.desc_offset - self.offset

    @property
    def avail_iova(self) -> int:
        """Device address of the avail ring (queue_driver)."""
        return self.iova + self.avail_offset - self.offset

    @property
    def used_iova(self) -> int:
        """Device address of the used ring (queue_device)."""
        return self.iova + self.used_offset - self.offset

    @property
    def num_free(self) -> int:
        """Descriptors not in any chain."""
        return self._num_free

    @property
    def in_flight(self) -> int:
        """Chains added and not yet completed (published or not)."""
        return self._in_flight

    @property
    def unpublished(self) -> int:
        """Chains added since the last publish."""
        return <uint16_t>(self._shadow_avail - self._published)

    @property
    def avail_idx(self) -> int:
        """The avail index the device has been shown (the last publish)."""
        return self._published

    @property
    def last_used_idx(self) -> int:
        """How many completions this driver has taken (mod 2**16)."""
        return self._last_used

    def device_used_idx(self) -> int:
        """``used->idx`` as the device left it, read now."""
        self._check()
        return gpuhil_vq_load_acquire(&self._used.idx)

    def heads_in_flight(self) -> list:
        """Head descriptor ids of the chains not yet completed, ascending."""
        self._check()
        cdef unsigned int i
        return [i for i in range(self.size) if self._chain_len[i]]

    def add(self, readable, writable=()) -> int:
        """Chain ``readable`` then ``writable`` buffers (sequences of ``(iova, length)``) and put
        the chain's head in the avail ring (not yet visible to the device: see ``publish``).
        Returns the head id; RingError when the chain is empty or the free descriptors do not
        suffice (nothing is consumed then)."""
        self._check()
        cdef Py_ssize_t n_read = len(readable), n_write = len(writable)
        cdef Py_ssize_t total = n_read + n_write
        if total == 0:
            raise RingError(f"{self.name}: a chain needs at least one buffer")
        if total > self._num_free:
            raise RingError(f"{self.name}: a chain of {total} descriptors does not fit: "
                            f"{self._num_free} of {self.size} free, {self._in_flight} chains "
                            f"in flight")
        cdef list bufs = list(readable) + list(writable)
        cdef uint64_t addr
        cdef uint32_t length
        for item in bufs:
            addr, length = item  # OverflowError for values outside the fields
        cdef uint16_t head = self._free_head, index = head, prev = NO_HEAD
        cdef Py_ssize_t k
        for k in range(total):
            addr, length = bufs[k]
            self._desc[index].addr = addr
            self._desc[index].len = length
            self._desc[index].flags = (VRING_DESC_F_WRITE if k >= n_read else 0) | \
                (VRING_DESC_F_NEXT if k + 1 < total else 0)
            prev = index
            index = self._free_next[index]
            if k + 1 < total:
                self._desc[prev].next = index
            else:
                self._desc[prev].next = 0
        self._free_head = index
        self._num_free -= <uint16_t>total
        self._chain_len[head] = <uint16_t>total
        self._in_flight += 1
        self._avail.ring[self._shadow_avail % self.size] = head
        self._shadow_avail += 1
        return head

    def add_pair(self, uint64_t read_addr, uint32_t read_len, uint64_t write_addr=0,
                 uint32_t write_len=0) -> int:
        """:meth:`add` of one readable buffer and, when ``write_len`` is not 0, one writable
        buffer (a request and its response): the same chain, without building the lists."""
        self._check()
        cdef uint16_t total = 2 if write_len else 1
        if total > self._num_free:
            raise RingError(f"{self.name}: a chain of {total} descriptors does not fit: "
                            f"{self._num_free} of {self.size} free, {self._in_flight} chains "
                            f"in flight")
        cdef uint16_t head = self._free_head, second
        self._desc[head].addr = read_addr
        self._desc[head].len = read_len
        if total == 2:
            second = self._free_next[head]
            self._desc[head].flags = VRING_DESC_F_NEXT
            self._desc[head].next = second
            self._desc[second].addr = write_addr
            self._desc[second].len = write_len
            self._desc[second].flags = VRING_DESC_F_WRITE
            self._desc[second].next = 0
            self._free_head = self._free_next[second]
        else:
            self._desc[head].flags = 0
            self._desc[head].next = 0
            self._free_head = self._free_next[head]
        self._num_free -= total
        self._chain_len[head] = total
        self._in_flight += 1
        self._avail.ring[self._shadow_avail % self.size] = head
        self._shadow_avail += 1
        return head

    def add_requests(self, memory, uint64_t base, Py_ssize_t offset, list requests,
                     list response_sizes, int sentinel, Py_ssize_t limit):
        """Many request/response chains at once: each request (``bytes``) is copied into the
        writable buffer ``memory`` (whose byte 0 the device sees at ``base``) from ``offset`` on,
        followed by its response buffer of the given size filled with ``sentinel`` (size 0: no
        response descriptor), each 64-byte aligned, and added as :meth:`add_pair` adds it.
        Returns ``(heads, response offsets, next free offset)``.  RingError, with nothing
        added, when the free descriptors or the ``limit`` bytes of memory do not suffice."""
        self._check()
        cdef Py_ssize_t n = len(requests), k, need = 0, at = offset, length, size, resp
        if len(response_sizes) != n:
            raise ValueError(f"{n} requests but {len(response_sizes)} response sizes")
        cdef list starts = [], offsets = []  # where each request and response goes
        for k in range(n):
            length = PyBytes_GET_SIZE(<bytes?>requests[k])
            size = <Py_ssize_t?>response_sizes[k]
            need += 2 if size else 1
            starts.append(at)
            resp = (at + (length if length else 1) + 63) // 64 * 64
            if size:
                offsets.append(resp)
                at = (resp + size + 63) // 64 * 64
            else:
                offsets.append(0)
                at = resp
        if need > self._num_free:
            raise RingError(f"{self.name}: {n} chains of {need} descriptors do not fit: "
                            f"{self._num_free} of {self.size} free, {self._in_flight} chains "
                            f"in flight")
        if at > limit:
            raise RingError(f"the {limit >> 20} MiB request arena is full ({offset:#x} in use "
                            f"by requests in flight, {at - offset:#x} more wanted)")
        cdef Py_buffer view
        PyObject_GetBuffer(memory, &view, PyBUF_WRITABLE)
        cdef char *p = <char *>view.buf
        cdef list heads = []
        cdef Py_ssize_t start
        cdef bytes request
        try:
            if at > view.len:
                raise RingError(f"{self.name}: the request memory holds {view.len:#x} bytes, "
                                f"not {at:#x}")
            for k in range(n):
                request = requests[k]
                length = PyBytes_GET_SIZE(request)
                size = response_sizes[k]
                start = starts[k]
                memcpy(p + start, PyBytes_AS_STRING(request), <size_t>length)
                if size:
                    resp = offsets[k]
                    memset(p + resp, sentinel, <size_t>size)
                    heads.append(self.add_pair(base + start, <uint32_t>length, base + resp,
                                               <uint32_t>size))
                else:
                    heads.append(self.add_pair(base + start, <uint32_t>length))
        finally:
            PyBuffer_Release(&view)
        return heads, offsets, at

    def publish(self) -> int:
        """Make every added chain visible (one release store of ``avail->idx``) and return how
        many were published.  Notify the device afterwards."""
        self._check()
        cdef uint16_t count = self._shadow_avail - self._published
        gpuhil_vq_store_release(&self._avail.idx, self._shadow_avail)
        self._published = self._shadow_avail
        gpuhil_vq_full_barrier()  # the idx store is visible before the caller's notify
        return count

    def poll(self):
        """The next completion as ``(head, used length)``, freeing its chain; None if the
        device has completed nothing new.  RingError for an id that is not in flight."""
        self._check()
        cdef uint16_t used_idx = gpuhil_vq_load_acquire(&self._used.idx)
        if used_idx == self._last_used:
            return None
        self._check_jump(used_idx)
        return self._take()

    def poll_all(self):
        """Every completion the device has made since the last poll, in used-ring order, as a
        list of ``(head, used length)`` (empty: nothing new), their chains freed: one call
        for a whole batch.  RingError as :meth:`poll`."""
        self._check()
        cdef uint16_t used_idx = gpuhil_vq_load_acquire(&self._used.idx)
        cdef list out = []
        if used_idx == self._last_used:
            return out
        self._check_jump(used_idx)
        while self._last_used != used_idx:
            out.append(self._take())
        return out

    cdef int _check_jump(self, uint16_t used_idx) except -1:
        if <uint16_t>(used_idx - self._last_used) > self._in_flight:
            raise RingError(f"{self.name}: used->idx jumped to {used_idx} with last_used "
                            f"{self._last_used} and only {self._in_flight} chains in flight")
        return 0

    cdef tuple _take(self):
        """The used-ring entry at last_used as ``(head, used length)``, its chain freed."""
        cdef vring_used_elem *elem = &self._used.ring[self._last_used % self.size]
        cdef uint32_t head = elem.id, used_len = elem.len
        if head >= self.size or self._chain_len[head] == 0:
            raise RingError(f"{self.name}: used ring entry {self._last_used} names descriptor "
                            f"{head}, which is not the head of an in-flight chain")
        self._last_used += 1
        self._free_chain(<uint16_t>head)
        return head, used_len

    cdef void _free_chain(self, uint16_t head) noexcept:
        cdef uint16_t count = self._chain_len[head], index = head, k
        # A chain takes descriptors in free-list order, so the free-list links still chain it
        # (walking our copy, not the descriptor table the device can see).
        for k in range(count - 1):
            index = self._free_next[index]
        self._free_next[index] = self._free_head
        self._free_head = head
        self._num_free += count
        self._chain_len[head] = 0
        self._in_flight -= 1

    def wait(self, double timeout, long min_sleep_us=5, long max_sleep_us=500,
             long spin_us=0) -> bool:
        """Poll ``used->idx`` without the GIL until the device completed something new (True)
        or ``timeout`` seconds passed (False).  For the first ``spin_us`` microseconds it
        polls between ``sched_yield`` calls (a nanosleep costs the timer slack, 50 us by
        default, more than a fast device takes); then sleeps between polls grow from
        ``min_sleep_us`` to ``max_sleep_us``."""
        self._check()
        cdef uint16_t *idx = &self._used.idx
        cdef uint16_t seen = self._last_used
        cdef bint done = False
        cdef double deadline, spin_until
        cdef long pause = min_sleep_us if min_sleep_us > 0 else 1
        with nogil:
            deadline = gpuhil_vq_now() + timeout
            spin_until = gpuhil_vq_now() + spin_us * 1e-6
            if spin_until > deadline:
                spin_until = deadline
            while True:
                if gpuhil_vq_load_acquire(idx) != seen:
                    done = True
                    break
                if gpuhil_vq_now() >= spin_until:
                    break
                gpuhil_vq_yield()
            while not done:
                if gpuhil_vq_load_acquire(idx) != seen:
                    done = True
                    break
                if gpuhil_vq_now() >= deadline:
                    break
                gpuhil_vq_sleep_us(pause)
                if pause < max_sleep_us:
                    pause = pause * 2 if pause * 2 < max_sleep_us else max_sleep_us
        return done

    def close(self) -> None:
        """Release the ring memory; harmless twice."""
        if self._open:
            self._open = False
            PyBuffer_Release(&self._view)
        free(self._free_next)
        free(self._chain_len)
        self._free_next = NULL
        self._chain_len = NULL

    @property
    def closed(self) -> bool:
        return not self._open

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self._open:
            PyBuffer_Release(&self._view)
        free(self._free_next)
        free(self._chain_len)

    def __repr__(self) -> str:
        if not self._open:
            return f"<SplitQueue {self.name} closed>"
        return (f"<SplitQueue {self.name} size={self.size} avail={self._published} "
                f"last_used={self._last_used} free={self._num_free} in_flight={self._in_flight}>")
