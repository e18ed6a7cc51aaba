"""A userspace virtio-gpu driver: any command, well-formed or not, on the virtqueue.

:class:`RawGpu` opens a virtio-gpu PCI function through a transport (by default
:class:`~gpuhil.raw.vfio_transport.VfioTransport`: bound to vfio-pci behind an IOMMU, the lab's
"raw" guest), negotiates VERSION_1 + ACCESS_PLATFORM + every virtio-gpu feature the device
offers, puts the control and cursor split virtqueues in DMA memory and collects completions by
polling the used ring::

    with RawGpu.open("0000:00:03.0") as gpu:
        info = gpu.submit(GetDisplayInfo())               # a decoded gpuhil.protocol message
        infos = gpu.submit_batch([GetCapsetInfo(i) for i in range(gpu.config.num_capsets)])
        raw = gpu.submit_raw(b"\\xff\\x01\\0\\0" + bytes(20), 24)   # bytes as the device wrote them
        gpu.hostmem.read(offset, 4096)                    # a blob mapped with RESOURCE_MAP_BLOB

Requests and responses live in a DMA arena; every response buffer is pre-filled with
:data:`SENTINEL` so a response the device never wrote (a DMA fault is invisible to the driver,
its used.len still looks normal) is seen: :meth:`RawGpu.submit` raises
:class:`MissingResponse`, :class:`Completion` has ``written``.  No completion within the
timeout raises :class:`RawTimeout` naming the commands and the ring state.  The bytes-level
half (send, wait, reset, dma) is :class:`~gpuhil.raw.driver.VirtqueueDriver`.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from gpuhil import protocol
from gpuhil._virtqueue import RingError
from gpuhil.protocol import CtrlType, Feature, HdrFlag, Message, ProtocolError, VirtioGpuConfig
from gpuhil.raw.completions import (Completion, Features, MissingResponse, Pending, RawTimeout,
                                    RingState)
from gpuhil.raw.driver import (CONTROLQ, CURSORQ, DEFAULT_TIMEOUT, SENTINEL, UNWRITTEN,
                               VirtqueueDriver, response_name)
from gpuhil.raw.transport import TransportSource, Window
from gpuhil.raw.vfio_transport import VfioTransport
from gpuhil.raw.virtio_pci import DeviceStatus

__all__ = ["CONTROLQ", "CURSORQ", "Completion", "Features", "MissingResponse", "Pending",
           "RawGpu", "RawTimeout", "RingError", "RingState", "SENTINEL", "UNWRITTEN",
           "response_name"]

HOSTMEM_SHM_ID = int(protocol.ShmId.HOST_VISIBLE)
#: Response room for a command whose response size is unknown (RawMessage, bad types).
FALLBACK_RESPONSE = 1024
#: Response room for GET_CAPSET when no GET_CAPSET_INFO told the capset's size.
FALLBACK_CAPSET = 16 << 10
_HDR_SIZE = protocol.ABI["sizeof(struct virtio_gpu_ctrl_hdr)"]


class RawGpu(VirtqueueDriver):
    """The virtio-gpu behind a transport, driven from this process (see the module docstring).

    Open with :meth:`open` (VFIO) or construct it on any
    :class:`~gpuhil.raw.transport.Transport`; a context manager; :meth:`close` resets the
    device, frees the DMA memory and closes the transport (twice is harmless; use after close
    raises ClosedError).
    """

    DEVICE_FEATURES = sum(1 << int(f) for f in Feature)

    def __init__(self, transport, **kwargs) -> None:
        self._capset_sizes: dict[int, int] = {}
        self._hostmem: Window | None = None
        try:
            super().__init__(transport, **kwargs)
        except BaseException:
            transport.close()
            raise

    @classmethod
    def open(cls, address: str | TransportSource, *, queue_size: int = 64,
             features: int | None = None, timeout: float = DEFAULT_TIMEOUT) -> RawGpu:
        """Open the virtio-gpu at ``address``, reset and initialise it: a PCI address (bound
        to vfio-pci: :class:`VfioTransport`), or anything whose ``transport()`` gives a
        Transport (a qtest machine's :class:`gpuhil.qtest.transport.QtestGpu`).

        ``features`` None negotiates VERSION_1, ACCESS_PLATFORM and every virtio-gpu feature
        the device offers (no ring features: this driver uses none); otherwise it is written
        as is.  ``timeout`` is the default seconds a submission waits for its completion.
        """
        transport = VfioTransport.open(address) if isinstance(address, str) \
            else address.transport()
        return cls(transport, queue_size=queue_size, features=features, timeout=timeout)

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
    def hostmem(self) -> Window:
        """The host-visible shared memory window (shmid 1) mapped through the transport: after
        RESOURCE_MAP_BLOB at ``offset`` the blob's bytes are at ``hostmem[offset:]``."""
        self._check()
        if self._hostmem is None or self._hostmem.closed:
            self._hostmem = self._pci.shared_memory(HOSTMEM_SHM_ID)[1]
        return self._hostmem

    # ---- typed submission -----------------------------------------------------------------

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
