"""The virtqueue half of the raw driver: requests as bytes on split virtqueues, over any
:class:`~gpuhil.raw.transport.Transport`.

:class:`VirtqueueDriver` resets and initialises the virtio PCI function (features, a control
and a cursor queue in DMA memory, DRIVER_OK), puts requests and sentinel-filled response
buffers in a DMA arena, notifies once per batch and collects completions by polling the used
ring.  :class:`gpuhil.raw.rawgpu.RawGpu` adds virtio-gpu's typed messages on top.
"""
from __future__ import annotations

import time
from typing import Sequence

from gpuhil._virtqueue import RingError, SplitQueue, ring_layout
from gpuhil.errors import ClosedError
from gpuhil.protocol import ctrl_name
from gpuhil.raw.completions import Completion, Features, Pending, RawTimeout, RingState, Slot
from gpuhil.raw.transport import DmaMemory, Transport
from gpuhil.raw.virtio_pci import TransportFeature, VirtioPci

__all__ = ["CONTROLQ", "CURSORQ", "SENTINEL", "UNWRITTEN", "VirtqueueDriver", "response_name"]

#: The byte every response buffer is filled with before the device gets it.
SENTINEL = 0xAA
CONTROLQ, CURSORQ = 0, 1

IOVA_RINGS = 0x1000_0000
IOVA_ARENA = 0x1100_0000
IOVA_USER = 0x2000_0000
RINGS_BYTES = 0x10000
ARENA_BYTES = 4 << 20
PAGE = 4096
DEFAULT_TIMEOUT = 10.0
_SENTINEL_WORD = int.from_bytes(bytes([SENTINEL]) * 4, "little")
#: :func:`response_name` of a response buffer the device never wrote
UNWRITTEN = "UNWRITTEN"
_TRANSPORT_FEATURES = 1 << TransportFeature.VERSION_1 | 1 << TransportFeature.ACCESS_PLATFORM


_NAMES: dict[bytes, str] = {}


def _request_name(request: bytes) -> str:
    """:func:`ctrl_name` of a request, remembered per type word (it is asked per command)."""
    word = request[:4]
    name = _NAMES.get(word)
    if name is None:
        name = ctrl_name(request)
        if len(_NAMES) < 1024:  # fuzzed types are many
            _NAMES[word] = name
    return name


def response_name(response: bytes) -> str:
    """The control type a response buffer holds (``RESP_OK_NODATA``, ``0x1234``, see
    :func:`gpuhil.protocol.ctrl_name`), or :data:`UNWRITTEN` while it still starts with the
    sentinel."""
    if len(response) >= 4 and int.from_bytes(response[:4], "little") == _SENTINEL_WORD:
        return UNWRITTEN
    return ctrl_name(response)


class VirtqueueDriver:
    """A virtio PCI function driven from this process through ``transport`` (see the module
    docstring).  A context manager; :meth:`close` resets the device, frees the DMA memory
    and closes the transport (twice is harmless; use after close raises ClosedError).

    ``features`` None negotiates VERSION_1, ACCESS_PLATFORM and the offered bits of
    ``DEVICE_FEATURES`` (no ring features: this driver uses none).
    """

    #: device-specific feature bits negotiated by default (when offered)
    DEVICE_FEATURES = 0

    def __init__(self, transport: Transport, *, queue_size: int = 64,
                 features: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.address = transport.name
        self.timeout = timeout
        self.transport = transport
        self._pci = pci = VirtioPci(transport)
        pci.enable_bus_master()
        self._closed = False
        self._generation = 0
        self._fence_id = 0
        self._arena_used = 0
        self._user_iova = IOVA_USER
        self._user_buffers: list[DmaMemory] = []
        self._tickets: list[dict[int, Slot]] = [{}, {}]
        self._notify: list[int] = [0, 0]
        self._completed: list[int] = [0, 0]  # completions per queue: the next one's order
        self._rings = transport.dma(RINGS_BYTES, IOVA_RINGS)
        self._arena = transport.dma(ARENA_BYTES, IOVA_ARENA)
        offered = pci.device_features()
        if features is None:
            features = offered & (self.DEVICE_FEATURES | _TRANSPORT_FEATURES)
        self.features = Features(offered, features)
        control_size = min(queue_size, pci.queue_max_size(CONTROLQ))
        cursor_size = min(16, pci.queue_max_size(CURSORQ))
        cursor_offset = (ring_layout(control_size)[3] + PAGE - 1) // PAGE * PAGE
        rings = self._rings.iova  # where the transport put them (no IOMMU: where RAM was free)
        self._queues = [
            SplitQueue(self._rings.memory, control_size, rings, 0, "controlq"),
            SplitQueue(self._rings.memory, cursor_size, rings + cursor_offset,
                       cursor_offset, "cursorq"),
        ]
        try:
            self._start()
        except BaseException:
            for queue in self._queues:
                queue.close()  # release the ring memory before the transport closes
            raise

    # ---- life cycle ---------------------------------------------------------------------

    def _start(self) -> None:
        pci = self._pci
        pci.reset()
        pci.negotiate(self.features.negotiated)
        for index, queue in enumerate(self._queues):
            queue.reset()
            self._tickets[index].clear()
            self._completed[index] = 0
            self._notify[index] = pci.setup_queue(index, queue.size, queue.desc_iova,
                                                  queue.avail_iova, queue.used_iova)
        pci.driver_ok()
        self._generation += 1
        self._arena_used = 0

    def reset(self) -> None:
        """Virtio reset (status 0, wait until it reads 0), then the same initialisation again:
        afterwards the device takes commands.  Requests in flight are abandoned."""
        self._check()
        self._start()

    def close(self) -> None:
        """Reset the device, free every DMA buffer, close the transport; harmless twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.transport.closed:
                self._pci.reset(timeout=1.0)  # the device lets go of the rings before unmap
        finally:
            for queue in self._queues:
                queue.close()
            try:
                for buffer in [*self._user_buffers, self._arena, self._rings]:
                    buffer.close()
            finally:
                self.transport.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"{type(self).__name__} {self.address} is closed")

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}{' closed' if self._closed else ''}>"

    def ring_state(self, queue: int = CONTROLQ) -> RingState:
        """The ring as driver and device see it now."""
        self._check()
        q = self._queues[queue]
        return RingState(q.name, q.size, q.avail_idx, q.device_used_idx(), q.last_used_idx,
                         q.num_free, tuple(q.heads_in_flight()), int(self._pci.status))

    # ---- memory for the device ----------------------------------------------------------

    def dma(self, size: int) -> DmaMemory:
        """Memory of ``size`` bytes (page rounded) the device reaches at a fresh IOVA
        (``.iova``, ``.memory``), e.g. resource backing for ATTACH_BACKING; freed when
        closed, at the latest with the driver."""
        self._check()
        size = (size + PAGE - 1) // PAGE * PAGE
        buffer = self.transport.dma(size, self._user_iova)
        self._user_iova += size + PAGE  # a guard page between buffers
        self._user_buffers.append(buffer)
        return buffer

    def next_fence_id(self) -> int:
        """A fence id not used before by this driver."""
        self._fence_id += 1
        return self._fence_id

    # ---- submission ---------------------------------------------------------------------

    def _publish(self, queue: int) -> None:
        self._queues[queue].publish()
        self._pci.notify(self._notify[queue], queue)

    def send(self, requests: Sequence[bytes], response_sizes: Sequence[int],
             queue: int = CONTROLQ) -> Pending:
        """Put every request (with a sentinel-filled response buffer of the given size; 0: no
        response descriptor) on ``queue`` and notify once; :meth:`wait` collects them."""
        self._check()
        if len(requests) != len(response_sizes):
            raise ValueError(f"{len(requests)} requests but {len(response_sizes)} response sizes")
        q = self._queues[queue]
        tickets = self._tickets[queue]
        if not any(queue.in_flight for queue in self._queues):
            self._arena_used = 0  # nothing in flight references the arena
        requests = [r if type(r) is bytes else bytes(r) for r in requests]
        heads, offsets, self._arena_used = q.add_requests(
            self._arena.memory, self._arena.iova, self._arena_used, requests,
            list(response_sizes), SENTINEL, ARENA_BYTES)
        now = time.monotonic()  # one notify starts them all
        slots = [Slot(_request_name(request), head, offset, size, now)
                 for request, head, offset, size in zip(requests, heads, offsets, response_sizes)]
        for slot in slots:
            tickets[slot.head] = slot
        if q.unpublished:
            self._publish(queue)
        return Pending(queue, slots, self._generation)

    def send_chain(self, readable: Sequence[tuple[int, int]],
                   writable: Sequence[tuple[int, int]] = (), *, name: str = "chain",
                   queue: int = CONTROLQ) -> Pending:
        """One descriptor chain of caller-chosen ``(iova, length)`` buffers (e.g. an unmapped
        IOVA, a zero length, memory from :meth:`dma`), notified at once; :meth:`wait` returns
        its Completion (``response`` empty: the buffers are the caller's)."""
        self._check()
        head = self._queues[queue].add(list(readable), list(writable))
        slot = Slot(name, head, 0, 0, time.monotonic())
        self._tickets[queue][head] = slot
        self._publish(queue)
        return Pending(queue, [slot], self._generation)

    def wait(self, pending: Pending, timeout: float | None = None) -> list[Completion]:
        """The completions of ``pending``, in request order; RawTimeout when the device has not
        completed them all within ``timeout`` seconds (default: the driver's)."""
        self._check()
        if pending.generation != self._generation:
            raise RingError(f"{', '.join(pending.names)}: abandoned by a device reset")
        timeout = self.timeout if timeout is None else timeout
        q = self._queues[pending.queue]
        tickets = self._tickets[pending.queue]
        deadline = time.monotonic() + timeout
        waiting = {id(s) for s in pending.slots if s.used_len is None}
        poll_all, clock, completed = q.poll_all, time.monotonic, self._completed
        while waiting:
            done = poll_all()  # all that completed since the last poll, in used-ring order
            if done:
                now, order = clock(), completed[pending.queue]
                for head, used_len in done:
                    slot = tickets.pop(head)
                    slot.used_len = used_len
                    slot.seconds = now - slot.started
                    slot.order = order
                    order += 1
                    waiting.discard(id(slot))  # another Pending's slot on this queue: recorded too
                completed[pending.queue] = order
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not q.wait(left, spin_us=self.transport.spin_us):
                if q.device_used_idx() != q.last_used_idx:
                    continue
                names = tuple(s.name for s in pending.slots if s.used_len is None)
                state = self.ring_state(pending.queue)
                raise RawTimeout(f"no completion within {timeout:g} s for {', '.join(names)} "
                                 f"({len(names)} of {len(pending.slots)} requests); "
                                 f"ring {state}", names, state)
        arena = self._arena.memory
        out = []
        for slot in pending.slots:
            response = arena.read(slot.response_offset, slot.response_size) \
                if slot.response_size else b""
            written = len(response) >= 4 and \
                int.from_bytes(response[:4], "little") != _SENTINEL_WORD
            out.append(Completion(slot.name, slot.used_len, response, written, slot.seconds,
                                  slot.order))
        return out

    def transact(self, requests: Sequence[bytes], response_sizes: Sequence[int], *,
                 queue: int = CONTROLQ, timeout: float | None = None) -> list[Completion]:
        """:meth:`send` then :meth:`wait`: one notify for all the requests."""
        return self.wait(self.send(requests, response_sizes, queue), timeout)

    def submit_raw(self, request: bytes, response_size: int, *,
                   timeout: float | None = None) -> bytes:
        """Any bytes as a control command; the response buffer afterwards (it still holds
        :data:`SENTINEL` bytes where the device wrote nothing)."""
        return self.transact([request], [response_size], timeout=timeout)[0].response
