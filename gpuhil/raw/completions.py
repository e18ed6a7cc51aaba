"""What the raw driver reports: completions, pending requests, ring state, feature words and
the two ways a request can fail to come back (:class:`RawTimeout`, :class:`MissingResponse`).
Import them from :mod:`gpuhil.raw.rawgpu`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from gpuhil.errors import GpuhilError
from gpuhil.protocol import Feature
from gpuhil.raw.virtio_pci import TransportFeature

__all__ = ["Completion", "Features", "MissingResponse", "Pending", "RawTimeout", "RingState",
           "Slot"]


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


class Completion(NamedTuple):
    """One request's outcome: ``used_len`` as the device reported it, ``response`` the whole
    response buffer afterwards, ``written`` False when it still starts with the sentinel (or
    there is no response buffer of ours), ``order`` its place in the used ring (completions
    on its queue numbered from 0 by the driver: the order the device completed them in).
    A NamedTuple, not a frozen dataclass: the driver makes one per command, and a frozen
    dataclass's __init__ costs 4x as much."""

    name: str
    used_len: int
    response: bytes
    written: bool
    seconds: float
    order: int = -1


class Slot:
    """One request in flight: its name, descriptor head and response buffer in the arena;
    ``used_len``, ``seconds`` and ``order`` once the device completed it.  A slotted class
    with its own __init__ (the driver makes one per command)."""

    __slots__ = ("name", "head", "response_offset", "response_size", "started", "used_len",
                 "seconds", "order")

    def __init__(self, name: str, head: int, response_offset: int, response_size: int,
                 started: float) -> None:
        self.name = name
        self.head = head
        self.response_offset = response_offset
        self.response_size = response_size
        self.started = started
        self.used_len: int | None = None
        self.seconds = 0.0
        self.order = -1

    def __repr__(self) -> str:
        return (f"Slot({self.name!r}, head={self.head}, used_len={self.used_len}, "
                f"order={self.order})")


@dataclass
class Pending:
    """Requests on a queue whose completions :meth:`RawGpu.wait` collects."""

    queue: int
    slots: list[Slot]
    generation: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slots)
