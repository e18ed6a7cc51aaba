"""QEMU's virtio-gpu blob trace events, captured from the host while a test runs.

:class:`TraceCapture` turns the events on over QMP (``trace-event-set-state``), remembers where
QEMU's stderr was (Debian's QEMU uses the ``log`` trace backend, which prints enabled events
there), and on exit turns them off again and attaches what they printed to the Allure report.
:func:`parse` and :func:`unmap_sequences` are the pure part, unit tested without a guest.
A test that captures them requires :data:`REQUIRES` (probed: QEMU 10.0 lacks map/unmap).

The unmap event prints the async unmap state machine of a hostmem MemoryRegion
(``mapping_state`` 0 = MAPPED: the unmap starts and the command is suspended; 1 =
UNMAP_STARTED: unmapped again while in flight, e.g. by a device reset; 2 = UNMAP_COMPLETED: the
region is gone and the command completes).  A blob mapped with MAP_FIXED unmaps synchronously
and prints no unmap event with a region.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Iterable

from gpuhil.gating.qemu_props import QEMU_TRACE_EVENTS

EVENTS = QEMU_TRACE_EVENTS
CREATE, MAP, UNMAP, UNREF = EVENTS
#: What a test that captures the blob events requires (an older QEMU lacks map/unmap).
REQUIRES = " and ".join(f"qemu.trace.{event}" for event in EVENTS)

MAPPED, UNMAP_STARTED, UNMAP_COMPLETED = 0, 1, 2

_LINE = re.compile(r"\b(?P<event>virtio_gpu_cmd_res_(?:create_blob|map_blob|unmap_blob|unref))"
                   r"\s+res 0x(?P<res>[0-9a-fA-F]+)(?P<rest>.*)")
_FIELD = re.compile(r"(\w+) (0x[0-9a-fA-F]+|\(nil\)|-?\d+)")


@dataclass(frozen=True)
class TraceEvent:
    """One printed trace event: its name, the resource id and its other fields as text."""

    event: str
    res: int
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, name: str) -> str | None:
        """The raw text of field ``name`` (``mr``, ``size``, ``mapping_state``...)."""
        return next((value for key, value in self.fields if key == name), None)

    @property
    def mapping_state(self) -> int | None:
        """The unmap event's mapping_state (None for other events)."""
        value = self.field("mapping_state")
        return int(value) if value is not None else None


def parse(text: str) -> list[TraceEvent]:
    """The blob trace events in QEMU's output, in order (other lines are ignored)."""
    out = []
    for line in text.splitlines():
        match = _LINE.search(line)
        if match:
            fields = tuple((k, v) for k, v in _FIELD.findall(match.group("rest")))
            out.append(TraceEvent(match.group("event"), int(match.group("res"), 16), fields))
    return out


def unmap_sequences(events: Iterable[TraceEvent]) -> dict[int, list[list[int]]]:
    """Per resource, the mapping_state sequence of each mapping: the unmap states printed
    after each map event (a mapping that was never unmapped has an empty list)."""
    out: dict[int, list[list[int]]] = {}
    for event in events:
        if event.event == MAP:
            out.setdefault(event.res, []).append([])
        elif event.event == UNMAP and event.mapping_state is not None:
            sequences = out.setdefault(event.res, [[]])
            sequences[-1].append(event.mapping_state)
    return out


def well_formed(states: list[int]) -> bool:
    """An unmap that started once (MAPPED), was possibly re-entered while in flight
    (UNMAP_STARTED) and completed once (UNMAP_COMPLETED)."""
    return (len(states) >= 2 and states[0] == MAPPED and states[-1] == UNMAP_COMPLETED
            and all(s == UNMAP_STARTED for s in states[1:-1]))


class TraceCapture:
    """Enable the blob trace events of a guest's QEMU for a ``with`` block and collect them."""

    def __init__(self, guest: Any, events: tuple[str, ...] = EVENTS, name: str = "QEMU blob traces") -> None:
        self.guest = guest
        self.events = events
        self.name = name
        self._offset = 0
        self._text: str | None = None

    def __enter__(self) -> "TraceCapture":
        for event in self.events:
            self.guest.qmp("trace-event-set-state", name=event, enable=True)
        self._offset = len(self.guest.qemu_stderr())
        return self

    def text(self) -> str:
        """What QEMU printed since the capture started (all of it, trace lines or not)."""
        if self._text is not None:
            return self._text
        return self.guest.qemu_stderr()[self._offset:]

    def events_seen(self) -> list[TraceEvent]:
        """The parsed events so far."""
        return parse(self.text())

    def settle(self, ids: Iterable[int], timeout: float = 10.0) -> list[TraceEvent]:
        """Wait until every resource in ``ids`` was released (UNREF) and each of its mappings
        finished unmapping (the host completes both after the guest's call returned); the
        events seen by then (the checks run on them either way)."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            events = self.events_seen()
            released = {e.res for e in events if e.event == UNREF}
            sequences = unmap_sequences(events)
            done = wanted <= released and all(
                well_formed(states) for res in wanted for states in sequences.get(res, []))
            if done or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._text = self.guest.qemu_stderr()[self._offset:]
        try:
            for event in self.events:
                self.guest.qmp("trace-event-set-state", name=event, enable=False)
        except Exception:   # QEMU is gone: the text captured so far is still attached
            pass
        try:
            import allure
        except ImportError:
            return
        lines = [line for line in self._text.splitlines() if _LINE.search(line)]
        allure.attach("\n".join(lines) or "(no blob trace events)", name=self.name,
                      attachment_type=allure.attachment_type.TEXT)
