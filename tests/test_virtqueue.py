"""gpuhil._virtqueue.SplitQueue's ring bookkeeping, in ordinary memory.

The device side here is the test's own: it reads the avail ring and descriptor table the way
the virtio 1.x spec lays them out (offsets from the kernel headers via ``ABI``) and writes used
entries.  Nothing here claims anything about a real device; that is tests/test_rawgpu_lab.py.
"""
from __future__ import annotations

import pickle
import struct
import time

import pytest

from gpuhil._mapping import Mapping
from gpuhil._virtqueue import ABI, RingError, SplitQueue, ring_layout
from gpuhil.errors import ClosedError

DESC_SIZE = ABI["sizeof(struct vring_desc)"]
F_NEXT = ABI["VRING_DESC_F_NEXT"]
F_WRITE = ABI["VRING_DESC_F_WRITE"]
AVAIL_IDX = ABI["offsetof(struct vring_avail, idx)"]
AVAIL_RING = ABI["offsetof(struct vring_avail, ring)"]
USED_IDX = ABI["offsetof(struct vring_used, idx)"]
USED_RING = ABI["offsetof(struct vring_used, ring)"]
ELEM_SIZE = ABI["sizeof(struct vring_used_elem)"]
IOVA = 0x1000_0000


class RingDevice:
    """The device half of a split ring, reading and writing the shared memory directly."""

    def __init__(self, memory: Mapping, queue: SplitQueue) -> None:
        self.memory = memory
        self.queue = queue
        self.size = queue.size
        self.next_avail = 0
        self.used_idx = 0

    def avail_idx(self) -> int:
        return self.memory.read16(self.queue.avail_offset + AVAIL_IDX)

    def descriptor(self, index: int) -> tuple[int, int, int, int]:
        return struct.unpack_from("<QIHH", self.memory.read(self.queue.desc_offset + DESC_SIZE * index,
                                                           DESC_SIZE))

    def take(self) -> list[tuple[int, list[tuple[int, int, bool]]]]:
        """Every newly available chain: (head, [(addr, len, writable), ...])."""
        chains = []
        while self.next_avail != self.avail_idx():
            slot = self.queue.avail_offset + AVAIL_RING + 2 * (self.next_avail % self.size)
            head = self.memory.read16(slot)
            buffers, index = [], head
            while True:
                addr, length, flags, nxt = self.descriptor(index)
                buffers.append((addr, length, bool(flags & F_WRITE)))
                if not flags & F_NEXT:
                    break
                index = nxt
            chains.append((head, buffers))
            self.next_avail = (self.next_avail + 1) & 0xFFFF
        return chains

    def complete(self, head: int, length: int) -> None:
        elem = self.queue.used_offset + USED_RING + ELEM_SIZE * (self.used_idx % self.size)
        self.memory.write(struct.pack("<II", head, length), elem)
        self.used_idx = (self.used_idx + 1) & 0xFFFF
        self.memory.write16(self.queue.used_offset + USED_IDX, self.used_idx)


@pytest.fixture
def ring():
    memory = Mapping.anonymous(1 << 16, False, "test ring")
    queue = SplitQueue(memory, 8, IOVA, 0, "testq")
    yield queue, RingDevice(memory, queue), memory
    queue.close()
    memory.close()


def test_layout_follows_the_split_ring_sizes():
    """Descriptor table, avail ring and used ring sit where the virtio 1.x layout puts them."""
    desc, avail, used, total = ring_layout(8)
    assert (desc, avail) == (0, 8 * DESC_SIZE)
    assert used % ABI["VRING_USED_ALIGN_SIZE"] == 0
    assert used >= avail + AVAIL_RING + 2 * 8 + 2
    assert total == used + USED_RING + ELEM_SIZE * 8 + 2
    for bad in (0, 3, 65536):
        with pytest.raises(ValueError, match="power of two"):
            ring_layout(bad)


def test_queue_addresses_are_iova_based(ring):
    """The addresses programmed into the device are the IOVA plus each part's offset."""
    queue, _, _ = ring
    assert (queue.desc_iova, queue.avail_iova, queue.used_iova) == (
        IOVA, IOVA + queue.avail_offset, IOVA + queue.used_offset)


def test_chain_is_readable_then_writable_and_invisible_until_published(ring):
    """A request/response chain links NEXT descriptors, marks the response WRITE, and the device
    sees nothing until publish stores avail->idx."""
    queue, device, _ = ring
    head = queue.add([(0x2000, 24)], [(0x3000, 408)])
    assert device.take() == []
    assert queue.unpublished == 1 and queue.num_free == 6
    assert queue.publish() == 1
    assert device.take() == [(head, [(0x2000, 24, False), (0x3000, 408, True)])]


def test_batch_is_published_by_one_index_store(ring):
    """Several chains added before one publish all become visible together."""
    queue, device, _ = ring
    heads = [queue.add([(0x2000 + i * 64, 24)], [(0x8000 + i * 64, 24)]) for i in range(3)]
    assert queue.publish() == 3
    assert [h for h, _ in device.take()] == heads
    assert len(set(heads)) == 3 and queue.in_flight == 3 and queue.num_free == 2


def test_out_of_order_completions_free_their_chains(ring):
    """Completions come back in used-ring order, whatever the order of submission, and each
    returns its descriptors to the free list."""
    queue, device, _ = ring
    heads = [queue.add([(0x2000, 24)], [(0x3000, 24)]) for _ in range(3)]
    queue.publish()
    device.take()
    device.complete(heads[2], 24)
    device.complete(heads[0], 408)
    assert queue.poll() == (heads[2], 24)
    assert queue.poll() == (heads[0], 408)
    assert queue.poll() is None
    assert queue.num_free == 6 and queue.heads_in_flight() == [heads[1]]


def test_poll_all_takes_every_new_completion_in_used_ring_order(ring):
    """poll_all returns all the completions since the last poll at once, in used-ring order,
    freeing their chains; then nothing until the device completes more; a bad entry is a
    RingError as for poll."""
    queue, device, memory = ring
    heads = [queue.add([(0x2000, 24)], [(0x3000, 24)]) for _ in range(4)]
    queue.publish()
    device.take()
    assert queue.poll_all() == []
    for head, length in ((heads[3], 1), (heads[1], 2), (heads[0], 3)):
        device.complete(head, length)
    assert queue.poll_all() == [(heads[3], 1), (heads[1], 2), (heads[0], 3)]
    assert queue.poll_all() == [] and queue.heads_in_flight() == [heads[2]]
    device.complete(heads[2] + 1, 24)
    with pytest.raises(RingError, match="not the head of an in-flight chain"):
        queue.poll_all()


def test_full_ring_refuses_a_chain_without_consuming(ring):
    """A chain longer than the free descriptors raises RingError and leaves the ring as it was."""
    queue, _, _ = ring
    queue.add([(0x2000, 24)] * 3, [(0x3000, 24)] * 3)
    with pytest.raises(RingError, match="does not fit: 2 of 8 free"):
        queue.add([(0x2000, 24)], [(0x3000, 24)] * 2)
    with pytest.raises(RingError, match="at least one buffer"):
        queue.add([], [])
    assert queue.num_free == 2 and queue.in_flight == 1


def test_freed_descriptors_are_reused(ring):
    """After its completion a chain's descriptors serve the next chain."""
    queue, device, _ = ring
    first = queue.add([(0x2000, 24)] * 4, [(0x3000, 24)] * 4)
    queue.publish()
    device.take()
    device.complete(first, 0)
    queue.poll()
    second = queue.add([(0x4000, 24)] * 4, [(0x5000, 24)] * 4)
    queue.publish()
    [(head, buffers)] = device.take()
    assert head == second and [b[0] for b in buffers] == [0x4000] * 4 + [0x5000] * 4


def test_indices_wrap_around_16_bits(ring):
    """avail and used indices keep working across the 65536 wrap."""
    queue, device, _ = ring
    for i in range(65536 + 20):
        head = queue.add([(0x2000, 24)], [(0x3000, 24)])
        queue.publish()
        device.take()
        device.complete(head, i & 0xFF)
        assert queue.poll() == (head, i & 0xFF)
    assert queue.avail_idx == 20 and queue.last_used_idx == 20 and queue.num_free == 8


def test_impossible_used_entries_are_reported(ring):
    """A used entry naming a descriptor that heads no chain in flight, or a used index that
    runs ahead of what is in flight, raises RingError."""
    queue, device, memory = ring
    head = queue.add([(0x2000, 24)], [(0x3000, 24)])
    queue.publish()
    device.take()
    device.complete(head + 1, 24)
    with pytest.raises(RingError, match="not the head of an in-flight chain"):
        queue.poll()
    memory.write16(queue.used_offset + USED_IDX, 5)
    with pytest.raises(RingError, match="jumped to 5"):
        queue.poll()


def test_wait_times_out_or_sees_the_used_index(ring):
    """wait returns False after the timeout when nothing completed, True once used->idx moved."""
    queue, device, _ = ring
    head = queue.add([(0x2000, 24)], [(0x3000, 24)])
    queue.publish()
    started = time.monotonic()
    assert queue.wait(0.05) is False
    assert time.monotonic() - started >= 0.04  # it waited (how much longer is the machine's load)
    device.take()
    device.complete(head, 24)
    assert queue.wait(1.0) is True
    assert queue.device_used_idx() == 1


def test_reset_zeroes_the_ring(ring):
    """reset forgets every chain and zeroes the shared memory for a re-initialised device."""
    queue, device, memory = ring
    queue.add([(0x2000, 24)], [(0x3000, 24)])
    queue.publish()
    queue.reset()
    assert (queue.num_free, queue.in_flight, queue.avail_idx) == (8, 0, 0)
    assert memory.read(queue.desc_offset, 8 * DESC_SIZE) == bytes(8 * DESC_SIZE)
    assert memory.read16(queue.avail_offset + AVAIL_IDX) == 0


def test_close_releases_the_memory_and_refuses_use():
    """After close the memory can be unmapped at once, a second close is harmless, and any use
    raises ClosedError."""
    memory = Mapping.anonymous(4096, False)
    queue = SplitQueue(memory, 8, IOVA)
    queue.close()
    queue.close()
    memory.close()
    assert memory.closed
    for use in (lambda: queue.add([(0, 1)]), queue.publish, queue.poll, lambda: queue.wait(0)):
        with pytest.raises(ClosedError):
            use()


def test_bad_memory_is_refused():
    """Memory too small for the ring, a misaligned IOVA or read-only memory are refused."""
    with pytest.raises(ValueError, match="needs"):
        SplitQueue(Mapping.anonymous(256, False), 64, IOVA)
    with pytest.raises(ValueError, match="16-byte aligned"):
        SplitQueue(Mapping.anonymous(4096, False), 8, IOVA + 8)
    with pytest.raises((BufferError, TypeError)):
        SplitQueue(bytes(4096), 8, IOVA)


def test_ring_error_pickles():
    """RingError crosses the guest agent's pickling."""
    error = pickle.loads(pickle.dumps(RingError("controlq: full")))
    assert isinstance(error, RingError) and str(error) == "controlq: full"


def test_add_requests_copies_each_request_beside_its_sentinel_filled_response(ring):
    """add_requests puts each request's bytes and a sentinel-filled response buffer in the
    arena, 64-byte aligned, and chains them as add would (a request with no response gets one
    readable descriptor), so a whole batch is queued in one call."""
    queue, device, _ = ring
    arena = Mapping.anonymous(1 << 16, False, "test arena")
    base = 0x4000_0000
    try:
        heads, offsets, end = queue.add_requests(arena, base, 0, [b"abc", b"\x01" * 70, b""],
                                                 [10, 0, 4], 0xAA, len(arena))
        assert offsets == [64, 0, 320] and end == 384
        assert arena.read(0, 3) == b"abc" and arena.read(64, 10) == b"\xaa" * 10
        assert arena.read(128, 70) == b"\x01" * 70 and arena.read(320, 4) == b"\xaa" * 4
        assert device.take() == [] and queue.publish() == 3
        assert device.take() == [
            (heads[0], [(base, 3, False), (base + 64, 10, True)]),
            (heads[1], [(base + 128, 70, False)]),
            (heads[2], [(base + 256, 0, False), (base + 320, 4, True)]),
        ]
    finally:
        arena.close()


def test_add_requests_that_do_not_fit_add_nothing(ring):
    """A batch needing more descriptors than are free, or more arena than ``limit``, raises
    RingError naming what ran out and leaves the ring untouched (no half-queued batch)."""
    queue, _, _ = ring
    arena = Mapping.anonymous(4096, False, "test arena")
    try:
        with pytest.raises(RingError, match="5 chains of 10 descriptors do not fit: 8 of 8"):
            queue.add_requests(arena, 0, 0, [b"x"] * 5, [8] * 5, 0xAA, len(arena))
        with pytest.raises(RingError, match="request arena is full"):
            queue.add_requests(arena, 0, 0, [b"x" * 3000, b"y"], [2000, 8], 0xAA, len(arena))
        assert queue.num_free == 8 and queue.in_flight == 0
    finally:
        arena.close()
