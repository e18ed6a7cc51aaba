"""A userspace virtio-gpu driver over VFIO: any command, well-formed or not, on the virtqueue.

:class:`RawGpu` opens a virtio-gpu PCI function bound to vfio-pci behind an IOMMU (the lab's
"raw" guest), negotiates VERSION_1 + ACCESS_PLATFORM + every virtio-gpu feature the device
offers, puts the control and cursor split virtqueues in DMA memory mapped through VFIO, and
collects completions by polling the used ring::

    with RawGpu.open("0000:00:03.0") as gpu:
        info = gpu.submit(GetDisplayInfo())               # a decoded gpuhil.protocol message
        infos = gpu.submit_batch([GetCapsetInfo(i) for i in range(gpu.config.num_capsets)])
        raw = gpu.submit_raw(b"\\xff\\x01\\0\\0" + bytes(20), 24)   # bytes as the device wrote them
        gpu.hostmem.read(offset, 4096)                    # a blob mapped with RESOURCE_MAP_BLOB

Requests and responses live in a DMA arena; every response buffer is pre-filled with
:data:`SENTINEL` so a response the device never wrote (a DMA fault is invisible to the driver,
its used.len still looks normal) is seen: :meth:`RawGpu.submit` raises
:class:`MissingResponse`, :class:`Completion` has ``written``.  No completion within the
timeout raises :class:`RawTimeout` naming the commands and the ring state.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from gpuhil import protocol
from gpuhil._mapping import Mapping
from gpuhil._virtqueue import RingError, SplitQueue, ring_layout
from gpuhil.errors import ClosedError, GpuhilError
from gpuhil.protocol import CtrlType, Feature, HdrFlag, Message, ProtocolError, VirtioGpuConfig
from gpuhil.devices.vfio import Container, DmaBuffer, Extension, Group
from gpuhil.raw.virtio_pci import DeviceStatus, TransportFeature, VirtioPci

__all__ = ["Completion", "Features", "MissingResponse", "Pending", "RawGpu", "RawTimeout",
           "RingError", "RingState", "SENTINEL"]

#: The byte every response buffer is filled with before the device gets it.
SENTINEL = 0xAA
CONTROLQ, CURSORQ = 0, 1
HOSTMEM_SHM_ID = int(protocol.ShmId.HOST_VISIBLE)

IOVA_RINGS = 0x1000_0000
IOVA_ARENA = 0x1100_0000
IOVA_USER = 0x2000_0000
RINGS_BYTES = 0x10000
ARENA_BYTES = 4 << 20
PAGE = 4096
DEFAULT_TIMEOUT = 10.0
#: Response room for a command whose response size is unknown (RawMessage, bad types).
FALLBACK_RESPONSE = 1024
#: Response room for GET_CAPSET when no GET_CAPSET_INFO told the capset's size.
FALLBACK_CAPSET = 16 << 10
_HDR_SIZE = protocol.ABI["sizeof(struct virtio_gpu_ctrl_hdr)"]
_GPU_FEATURES = sum(1 << int(f) for f in Feature)
_SENTINEL_WORD = int.from_bytes(bytes([SENTINEL]) * 4, "little")


class RawTimeout(GpuhilError):
    """The device completed nothing within the timeout: the commands and the ring state.

    The host side adds QEMU's state (run state, stderr tail) as notes.
    """

    def __init__(self, message: str, commands: tuple[str, ...] = (),
                 state: RingState | None = None) -> None:
        super().__init__(message)
        self.commands = commands
        self.state = state

    def __reduce__(self):
        return (RawTimeout, (str(self), self.commands, self.state))


class MissingResponse(GpuhilError):
    """The device returned the buffers but never wrote the response (it still holds the
    sentinel): typically a DMA fault, which QEMU only reports on its stderr (``vtd_...``)."""


@dataclass(frozen=True)
class RingState:
    """A virtqueue as the driver and the device see it, for hang reports."""

    queue: str
    size: int
    avail_idx: int
    device_used_idx: int
    last_used_idx: int
    num_free: int
    heads_in_flight: tuple[int, ...]
    device_status: int

    def __str__(self) -> str:
        return (f"{self.queue}: avail_idx={self.avail_idx} used_idx={self.device_used_idx} "
                f"last_used={self.last_used_idx} free={self.num_free}/{self.size} "
                f"in_flight={list(self.heads_in_flight)} device_status={self.device_status:#04x}")


@dataclass(frozen=True)
class Features:
    """Feature bits the device offered and the ones negotiated (64-bit masks)."""

    offered: int
    negotiated: int

    def offers(self, bit: int) -> bool:
        return bool(self.offered >> int(bit) & 1)

    def has(self, bit: int) -> bool:
        """``bit`` (a protocol.Feature or TransportFeature) was negotiated."""
        return bool(self.negotiated >> int(bit) & 1)

    @staticmethod
    def names(mask: int) -> list[str]:
        """Symbolic names of the set bits (``bit N`` for unknown ones)."""
        known = {int(f): f"VIRTIO_GPU_F_{f.name}" for f in Feature}
        known.update({int(f): f"VIRTIO_F_{f.name}" for f in TransportFeature})
        return [known.get(b, f"bit {b}") for b in range(64) if mask >> b & 1]


@dataclass(frozen=True)
class Completion:
    """One request's outcome: ``used_len`` as the device reported it, ``response`` the whole
    response buffer afterwards, ``written`` False when it still starts with the sentinel (or
    there is no response buffer of ours)."""

    name: str
    used_len: int
    response: bytes
    written: bool
    seconds: float


@dataclass
class _Slot:
    name: str
    head: int
    response_offset: int
    response_size: int
    started: float
    used_len: int | None = None
    seconds: float = 0.0


@dataclass
class Pending:
    """Requests on a queue whose completions :meth:`RawGpu.wait` collects."""

    queue: int
    slots: list[_Slot]
    generation: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)


def command_name(request: bytes | Message) -> str:
    """``GET_CAPSET_INFO`` (or ``0x01ff``) for a message or its wire bytes."""
    if isinstance(request, Message):
        ctrl = request.type
    elif len(request) >= 4:
        ctrl = int.from_bytes(request[:4], "little")
    else:
        return f"<{len(request)}-byte request>"
    try:
        return CtrlType(ctrl).name.removeprefix("CMD_")
    except ValueError:
        return f"{ctrl:#06x}"


class RawGpu:
    """The virtio-gpu at a PCI address, driven from this process (see the module docstring).

    Open with :meth:`open`; a context manager; :meth:`close` resets the device, unmaps the
    DMA memory and closes the VFIO fds (twice is harmless; use after close raises
    ClosedError).
    """

    def __init__(self, address: str, container: Container, group: Group, pci: VirtioPci, *,
                 queue_size: int, features: int | None, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._container = container
        self._group = group
        self._pci = pci
        self._closed = False
        self._generation = 0
        self._fence_id = 0
        self._arena_used = 0
        self._capset_sizes: dict[int, int] = {}
        self._hostmem: Mapping | None = None
        self._user_iova = IOVA_USER
        self._user_buffers: list[DmaBuffer] = []
        self._tickets: list[dict[int, _Slot]] = [{}, {}]
        self._notify: list[int] = [0, 0]
        self._rings = container.dma_buffer(RINGS_BYTES, IOVA_RINGS)
        self._arena = container.dma_buffer(ARENA_BYTES, IOVA_ARENA)
        offered = pci.device_features()
        if features is None:
            features = offered & (_GPU_FEATURES | 1 << TransportFeature.VERSION_1
                                  | 1 << TransportFeature.ACCESS_PLATFORM)
        self.features = Features(offered, features)
        control_size = min(queue_size, pci.queue_max_size(CONTROLQ))
        cursor_size = min(16, pci.queue_max_size(CURSORQ))
        control_bytes = ring_layout(control_size)[3]
        cursor_offset = (control_bytes + PAGE - 1) // PAGE * PAGE
        self._queues = [
            SplitQueue(self._rings.memory, control_size, IOVA_RINGS, 0, "controlq"),
            SplitQueue(self._rings.memory, cursor_size, IOVA_RINGS + cursor_offset,
                       cursor_offset, "cursorq"),
        ]
        try:
            self._start()
        except BaseException:
            for queue in self._queues:
                queue.close()  # release the ring memory before open() closes the container
            raise

    @classmethod
    def open(cls, address: str, *, queue_size: int = 64, features: int | None = None,
             timeout: float = DEFAULT_TIMEOUT) -> RawGpu:
        """Open the virtio-gpu at ``address`` (bound to vfio-pci), reset and initialise it.

        ``features`` None negotiates VERSION_1, ACCESS_PLATFORM and every virtio-gpu feature
        the device offers (no ring features: this driver uses none); otherwise it is written
        as is.  ``timeout`` is the default seconds a submission waits for its completion.
        """
        container = Container()
        group = None
        try:
            group = Group.of(address)
            group.set_container(container)
            container.set_iommu(Extension.TYPE1v2)
            pci = VirtioPci(group.device(address))
            pci.enable_bus_master()
            return cls(address, container, group, pci, queue_size=queue_size,
                       features=features, timeout=timeout)
        except BaseException:
            if group is not None:
                group.close()
            container.close()
            raise

    # ---- life cycle ---------------------------------------------------------------------

    def _start(self) -> None:
        pci = self._pci
        pci.reset()
        pci.negotiate(self.features.negotiated)
        for index, queue in enumerate(self._queues):
            queue.reset()
            self._tickets[index].clear()
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
        """Reset the device, unmap every DMA buffer, close the VFIO fds; harmless twice."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._pci.device.closed:
                self._pci.reset(timeout=1.0)  # the device lets go of the rings before unmap
        finally:
            for queue in self._queues:
                queue.close()
            try:
                for buffer in [*self._user_buffers, self._arena, self._rings]:
                    buffer.close()
            finally:
                self._group.close()
                self._container.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ClosedError(f"RawGpu {self.address} is closed")

    def __enter__(self) -> RawGpu:
        self._check()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RawGpu {self.address}{' closed' if self._closed else ''}>"

    # ---- device state -------------------------------------------------------------------

    @property
    def status(self) -> DeviceStatus:
        """device_status now (0x0f while running; NEEDS_RESET if the device gave up)."""
        self._check()
        return self._pci.status

    @property
    def config(self) -> VirtioGpuConfig:
        """struct virtio_gpu_config read now (blob_alignment only with BLOB_ALIGNMENT)."""
        self._check()
        values = [self._pci.config_read32(4 * i) for i in range(4)]
        alignment = self._pci.config_read32(16) if self.features.has(Feature.BLOB_ALIGNMENT) else 0
        return VirtioGpuConfig(*values, alignment)

    def clear_events(self, events: int | None = None) -> None:
        """Acknowledge ``events`` (default: every pending one) through events_clear."""
        self._check()
        self._pci.config_write32(4, self.config.events_read if events is None else events)

    @property
    def hostmem(self) -> Mapping:
        """The host-visible shared memory window (shmid 1) mapped through VFIO: after
        RESOURCE_MAP_BLOB at ``offset`` the blob's bytes are at ``hostmem[offset:]``."""
        self._check()
        if self._hostmem is None or self._hostmem.closed:
            self._hostmem = self._pci.shared_memory(HOSTMEM_SHM_ID)[1]
        return self._hostmem

    def ring_state(self, queue: int = CONTROLQ) -> RingState:
        """The ring as driver and device see it now."""
        self._check()
        q = self._queues[queue]
        return RingState(q.name, q.size, q.avail_idx, q.device_used_idx(), q.last_used_idx,
                         q.num_free, tuple(q.heads_in_flight()), int(self._pci.status))

    # ---- guest memory for the device ------------------------------------------------------

    def dma(self, size: int) -> DmaBuffer:
        """Locked memory of ``size`` bytes (page rounded) mapped for the device at a fresh IOVA
        (``.iova``, ``.memory``), e.g. resource backing for ATTACH_BACKING; unmapped when
        closed, at the latest with the RawGpu."""
        self._check()
        size = (size + PAGE - 1) // PAGE * PAGE
        buffer = self._container.dma_buffer(size, self._user_iova)
        self._user_iova += size + PAGE  # a guard page between buffers
        self._user_buffers.append(buffer)
        return buffer

    def next_fence_id(self) -> int:
        """A fence id not used before by this driver."""
        self._fence_id += 1
        return self._fence_id

    # ---- submission ---------------------------------------------------------------------

    def _alloc(self, size: int) -> int:
        offset = self._arena_used
        if offset + size > ARENA_BYTES:
            raise RingError(f"the {ARENA_BYTES >> 20} MiB request arena is full "
                            f"({offset:#x} in use by requests in flight, {size:#x} more wanted)")
        self._arena_used = (offset + size + 63) // 64 * 64
        return offset

    def send(self, requests: Sequence[bytes], response_sizes: Sequence[int],
             queue: int = CONTROLQ) -> Pending:
        """Put every request (with a sentinel-filled response buffer of the given size; 0: no
        response descriptor) on ``queue`` and notify once; :meth:`wait` collects them."""
        self._check()
        if len(requests) != len(response_sizes):
            raise ValueError(f"{len(requests)} requests but {len(response_sizes)} response sizes")
        q = self._queues[queue]
        arena = self._arena.memory
        if not any(queue.in_flight for queue in self._queues):
            self._arena_used = 0  # nothing in flight references the arena
        slots = []
        try:
            for request, response_size in zip(requests, response_sizes):
                request = bytes(request)
                req_off = self._alloc(max(len(request), 1))
                arena.write(request, req_off)
                resp_off = self._alloc(response_size) if response_size else 0
                if response_size:
                    arena.write(bytes([SENTINEL]) * response_size, resp_off)
                writable = [(IOVA_ARENA + resp_off, response_size)] if response_size else []
                head = q.add([(IOVA_ARENA + req_off, len(request))], writable)
                slot = _Slot(command_name(request), head, resp_off, response_size,
                             time.monotonic())
                self._tickets[queue][head] = slot
                slots.append(slot)
        finally:
            if q.unpublished:
                q.publish()
                self._pci.notify(self._notify[queue], queue)
        return Pending(queue, slots, self._generation)

    def send_chain(self, readable: Sequence[tuple[int, int]],
                   writable: Sequence[tuple[int, int]] = (), *, name: str = "chain",
                   queue: int = CONTROLQ) -> Pending:
        """One descriptor chain of caller-chosen ``(iova, length)`` buffers (e.g. an unmapped
        IOVA, a zero length, memory from :meth:`dma`), notified at once; :meth:`wait` returns
        its Completion (``response`` empty: the buffers are the caller's)."""
        self._check()
        q = self._queues[queue]
        head = q.add(list(readable), list(writable))
        slot = _Slot(name, head, 0, 0, time.monotonic())
        self._tickets[queue][head] = slot
        q.publish()
        self._pci.notify(self._notify[queue], queue)
        return Pending(queue, [slot], self._generation)

    def wait(self, pending: Pending, timeout: float | None = None) -> list[Completion]:
        """The completions of ``pending``, in request order; RawTimeout when the device has not
        completed them all within ``timeout`` seconds (default: the RawGpu's)."""
        self._check()
        if pending.generation != self._generation:
            raise RingError(f"{', '.join(pending.names)}: abandoned by a device reset")
        timeout = self.timeout if timeout is None else timeout
        q = self._queues[pending.queue]
        tickets = self._tickets[pending.queue]
        deadline = time.monotonic() + timeout
        while any(s.used_len is None for s in pending.slots):
            done = q.poll()
            if done is not None:
                slot = tickets.pop(done[0])
                slot.used_len = done[1]
                slot.seconds = time.monotonic() - slot.started
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not q.wait(left):
                if q.device_used_idx() != q.last_used_idx:
                    continue
                waiting = tuple(s.name for s in pending.slots if s.used_len is None)
                state = self.ring_state(pending.queue)
                raise RawTimeout(f"no completion within {timeout:g} s for {', '.join(waiting)} "
                                 f"({len(waiting)} of {len(pending.slots)} requests); "
                                 f"ring {state}", waiting, state)
        arena = self._arena.memory
        out = []
        for slot in pending.slots:
            response = arena.read(slot.response_offset, slot.response_size) \
                if slot.response_size else b""
            written = len(response) >= 4 and \
                int.from_bytes(response[:4], "little") != _SENTINEL_WORD
            out.append(Completion(slot.name, slot.used_len, response, written, slot.seconds))
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

    def response_size(self, command: Message) -> int:
        """Room for the command's success response (or an error, whichever is larger)."""
        if command.type == CtrlType.CMD_GET_CAPSET:
            capset = self._capset_sizes.get(getattr(command, "capset_id", -1), FALLBACK_CAPSET)
            return protocol.response_size(command.type, capset)
        try:
            return max(protocol.response_size(command.type), _HDR_SIZE)
        except ProtocolError:
            return FALLBACK_RESPONSE

    def _fenced(self, command: Message, fence: bool | int) -> Message:
        if fence is False:
            return command
        fence_id = self.next_fence_id() if fence is True else int(fence)
        hdr = dataclasses.replace(command.hdr, flags=command.hdr.flags | HdrFlag.FENCE,
                                  fence_id=fence_id)
        return dataclasses.replace(command, hdr=hdr)

    def _decode(self, completion: Completion) -> Message:
        if not completion.written:
            raise MissingResponse(f"{completion.name}: the device returned the buffers "
                                  f"(used.len={completion.used_len}) without writing the "
                                  f"response (see QEMU's stderr for a vtd_ DMA fault)")
        length = len(completion.response)
        if _HDR_SIZE <= completion.used_len <= length:
            length = completion.used_len
        message = protocol.decode(completion.response, 0, length, strict=False,
                                  allow_unknown=True)
        if isinstance(message, protocol.RespOkCapsetInfo):
            self._capset_sizes[message.capset_id] = message.capset_max_size
        return message

    def submit_batch(self, commands: Iterable[Message], *, fence: bool = False,
                     timeout: float | None = None) -> list[Message]:
        """Every command on the control queue with one notify; their decoded responses in
        order.  ``fence`` True gives each its own fence id (FLAG_FENCE)."""
        commands = [self._fenced(c, fence) for c in commands]
        completions = self.transact([protocol.encode(c) for c in commands],
                                    [self.response_size(c) for c in commands], timeout=timeout)
        return [self._decode(c) for c in completions]

    def submit(self, command: Message, *, fence: bool | int = False,
               timeout: float | None = None, response_size: int | None = None) -> Message:
        """One control command; its decoded response (RespOk..., RespErr..., or a RawMessage
        for a type gpuhil.protocol does not know).  ``fence`` True (a fresh id) or an id sets
        FLAG_FENCE: the device answers once the fence signalled, with the id in the header."""
        command = self._fenced(command, fence)
        size = self.response_size(command) if response_size is None else response_size
        [completion] = self.transact([protocol.encode(command)], [size], timeout=timeout)
        return self._decode(completion)

    def submit_cursor(self, command: Message, *, timeout: float | None = None) -> int:
        """A cursor-queue command (UPDATE_CURSOR, MOVE_CURSOR; no response); the used.len the
        device reported."""
        [completion] = self.transact([protocol.encode(command)], [0], queue=CURSORQ,
                                     timeout=timeout)
        return completion.used_len
