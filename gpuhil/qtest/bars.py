"""BARs as gpuhil assigns them under qtest (no firmware runs): decoding a sized BAR register
and placing BARs in address windows.  Pure logic, no device access (:mod:`gpuhil.qtest.pci`
reads and programs the registers)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from gpuhil.errors import GpuhilError

__all__ = ["Bar", "DEFAULT_WINDOWS", "PciError", "Window", "assign_bars", "bdf", "decode_bar"]


class PciError(GpuhilError):
    """Enumeration or BAR assignment failed (no room in a window, a broken BAR)."""


@dataclass(frozen=True)
class Window:
    """Addresses ``[base, end)`` from which BARs of ``kind`` ('mem32', 'mem64', 'io') are placed."""

    kind: str
    base: int
    end: int


#: Below the IOAPIC/LAPIC/BIOS area for 32-bit BARs; 4 GiB up (RAM is all below) for 64-bit.
DEFAULT_WINDOWS = (Window("mem32", 0xC000_0000, 0xFEC0_0000),
                   Window("mem64", 0x1_0000_0000, 0x100_0000_0000),
                   Window("io", 0xC000, 0x10000))


@dataclass(frozen=True)
class Bar:
    """One BAR of function ``function`` (bus, dev, fn): ``size`` bytes, ``address`` once assigned."""

    function: tuple[int, int, int]
    index: int
    kind: str  # 'mem32', 'mem64' (occupies index and index + 1) or 'io'
    size: int
    prefetchable: bool = False
    address: int | None = None


def decode_bar(function: tuple[int, int, int], index: int, original: int, sized: int,
               sized_high: int | None = None) -> Bar | None:
    """The BAR whose register read ``sized`` (``sized_high``: the upper half of a 64-bit
    one) after all-ones was written; None for an unimplemented BAR."""
    if original & 1:
        mask = sized & 0xFFFF_FFFC & 0xFFFF
        return Bar(function, index, "io", (~mask & 0xFFFF) + 1) if mask else None
    wide = (original >> 1) & 3 == 2
    value = sized & 0xFFFF_FFF0
    if wide:
        if sized_high is None:
            raise ValueError(f"BAR {index} is 64-bit: sized_high is needed")
        value |= sized_high << 32
        if not value:
            return None
        size = ((~value) & 0xFFFF_FFFF_FFFF_FFFF) + 1
    else:
        if not value:
            return None
        size = ((~value) & 0xFFFF_FFFF) + 1
    return Bar(function, index, "mem64" if wide else "mem32", size, bool(original & 8))


def assign_bars(bars: Sequence[Bar], windows: Sequence[Window] = DEFAULT_WINDOWS) -> list[Bar]:
    """``bars`` with addresses: per window, largest first, each naturally aligned; a 64-bit BAR
    goes to the 'mem64' window if there is one, else to 'mem32'.  PciError when one does not fit."""
    by_kind = {w.kind: w for w in windows}
    cursor = {w.kind: w.base for w in windows}
    placed: dict[tuple[tuple[int, int, int], int], Bar] = {}
    for bar in sorted(bars, key=lambda b: (-b.size, b.function, b.index)):
        if bar.size <= 0 or bar.size & (bar.size - 1):
            raise PciError(f"{bdf(bar.function)} BAR {bar.index}: size {bar.size:#x} is not a "
                           "power of two")
        kind = bar.kind if bar.kind in by_kind or bar.kind != "mem64" else "mem32"
        window = by_kind.get(kind)
        if window is None:
            raise PciError(f"{bdf(bar.function)} BAR {bar.index}: no {bar.kind} window")
        address = (cursor[kind] + bar.size - 1) & ~(bar.size - 1)
        if address + bar.size > window.end or (bar.kind != "mem64" and address + bar.size > 1 << 32):
            raise PciError(f"{bdf(bar.function)} BAR {bar.index}: {bar.size:#x} bytes do not fit "
                           f"in the {kind} window {window.base:#x}-{window.end:#x} "
                           f"(next free {cursor[kind]:#x})")
        cursor[kind] = address + bar.size
        placed[(bar.function, bar.index)] = replace(bar, address=address)
    return [placed[(b.function, b.index)] for b in bars]


def bdf(function: tuple[int, int, int]) -> str:
    return f"{function[0]:02x}:{function[1]:02x}.{function[2]}"
