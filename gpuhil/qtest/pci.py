"""PCI enumeration and BAR assignment by gpuhil, because under qtest no firmware runs.

:func:`scan` lists the functions on a bus; :func:`bring_up` sizes every BAR (all-ones written,
read back, restored), places them with :func:`gpuhil.qtest.bars.assign_bars` (pure: largest first,
each aligned to its size, 32-bit BARs from 0xc0000000, 64-bit ones from 4 GiB, I/O from 0xc000), programs
them and turns on memory/I/O decode and bus mastering.

A :class:`PciFunction` has the ``config_read(offset, size)`` / ``config_write(offset, size,
value)`` and ``mmap(bar, offset, length)`` of a VFIO device, so the virtio PCI transport can
run over it unchanged; ``mmap`` returns an :class:`MmioWindow` whose ``read32``/``write16``...
are qtest MMIO commands at the BAR's address.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from gpuhil.qtest.bars import (
    DEFAULT_WINDOWS, Bar, PciError, Window, assign_bars, bdf, decode_bar,
)
from gpuhil.qtest.client import QtestClient

__all__ = ["Capability", "MmioWindow", "PciFunction", "bring_up", "config_address",
           "config_read", "config_write", "scan"]

_VENDOR, _COMMAND, _STATUS, _HEADER_TYPE, _BAR0, _CAP_PTR = 0x00, 0x04, 0x06, 0x0E, 0x10, 0x34
_STATUS_CAP_LIST = 0x10
CMD_IO, CMD_MEMORY, CMD_MASTER = 0x1, 0x2, 0x4


_IN = {1: b"inb", 2: b"inw", 4: b"inl"}
_OUT = {1: b"outb", 2: b"outw", 4: b"outl"}


def config_address(bus: int, dev: int, fn: int, reg: int) -> int:
    """The 0xcf8 value (configuration mechanism #1) selecting the dword holding ``reg``."""
    if not (0 <= bus < 256 and 0 <= dev < 32 and 0 <= fn < 8 and 0 <= reg < 256):
        raise ValueError(f"no such PCI config location {bus:02x}:{dev:02x}.{fn} reg {reg:#x}")
    return 0x80000000 | bus << 16 | dev << 11 | fn << 8 | (reg & 0xFC)


def config_read(client: QtestClient, bus: int, dev: int, fn: int, reg: int, size: int) -> int:
    """A 1/2/4-byte config read (``reg`` aligned): ``outl 0xcf8`` + ``in`` at 0xcfc + (reg & 3),
    sent together, one round trip."""
    op = _IN.get(size)
    if op is None or reg % size:
        raise ValueError(f"config read of {size} bytes at {reg:#x}: sizes are 1, 2, 4, aligned")
    return client.value(b"outl 0xcf8 0x%x\n%s 0x%x\n" % (config_address(bus, dev, fn, reg), op,
                                                          0xCFC + (reg & 3)), answers=2)


def config_write(client: QtestClient, bus: int, dev: int, fn: int, reg: int, size: int,
                 value: int) -> None:
    """A 1/2/4-byte config write; one round trip."""
    op = _OUT.get(size)
    if op is None or reg % size:
        raise ValueError(f"config write of {size} bytes at {reg:#x}: sizes are 1, 2, 4, aligned")
    client.exchange(b"outl 0xcf8 0x%x\n%s 0x%x 0x%x\n" % (config_address(bus, dev, fn, reg), op,
                                                          0xCFC + (reg & 3), value), answers=2)


@dataclass(frozen=True)
class Capability:
    """An entry of the PCI capability list: its ``position`` in config space and its ``id``."""

    position: int
    id: int


class MmioWindow:
    """``length`` bytes of MMIO at guest-physical ``base``, with the accessors of a Mapping.

    ``posted``: 16- and 32-bit stores are posted writes, as on a PCI bus (sent at once, their
    OK read and checked at the next qtest call; the stream keeps them in order with it), so a
    virtqueue notify costs no round trip."""

    def __init__(self, client: QtestClient, base: int, length: int, label: str = "",
                 posted: bool = False) -> None:
        self.client, self.base, self.length, self.label = client, base, length, label
        self._write16 = client.post_writew if posted else client.writew
        self._write32 = client.post_writel if posted else client.writel

    def _at(self, offset: int, width: int) -> int:
        if offset < 0 or offset + width > self.length:
            raise IndexError(f"{self.label or 'MMIO window'}: {width} bytes at {offset:#x} are "
                             f"outside its {self.length:#x} bytes")
        return self.base + offset

    def read8(self, offset: int) -> int:
        return self.client.readb(self._at(offset, 1))

    def read16(self, offset: int) -> int:
        return self.client.readw(self._at(offset, 2))

    def read32(self, offset: int) -> int:
        return self.client.readl(self._at(offset, 4))

    def read64(self, offset: int) -> int:
        return self.client.readq(self._at(offset, 8))

    def write8(self, offset: int, value: int) -> None:
        self.client.writeb(self._at(offset, 1), value)

    def write16(self, offset: int, value: int) -> None:
        self._write16(self._at(offset, 2), value)

    def write32(self, offset: int, value: int) -> None:
        self._write32(self._at(offset, 4), value)

    def write64(self, offset: int, value: int) -> None:
        self.client.writeq(self._at(offset, 8), value)

    def read(self, offset: int = 0, size: int = -1) -> bytes:
        size = self.length - offset if size < 0 else size
        return self.client.read(self._at(offset, size), size)

    def write(self, data: bytes, offset: int = 0) -> None:
        self.client.write(self._at(offset, len(data)), bytes(data))

    def __len__(self) -> int:
        return self.length

    @property
    def closed(self) -> bool:
        """Whether the qtest connection is gone (nothing is mapped here to close)."""
        return not self.client.usable

    def close(self) -> None:
        """Nothing to unmap (for the Mapping interface)."""


@dataclass
class PciFunction:
    """Function ``bus:dev.fn`` seen through qtest config cycles."""

    client: QtestClient
    bus: int
    dev: int
    fn: int
    bars: dict[int, Bar] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return bdf((self.bus, self.dev, self.fn))

    def config_read(self, offset: int, size: int) -> int:
        return config_read(self.client, self.bus, self.dev, self.fn, offset, size)

    def config_write(self, offset: int, size: int, value: int) -> None:
        config_write(self.client, self.bus, self.dev, self.fn, offset, size, value)

    @property
    def vendor(self) -> int:
        return self.config_read(_VENDOR, 2)

    @property
    def device(self) -> int:
        return self.config_read(_VENDOR + 2, 2)

    @property
    def class_code(self) -> int:
        return self.config_read(0x08, 4) >> 8

    def size_bars(self) -> list[Bar]:
        """Every implemented BAR, sized (decode is off meanwhile; registers restored)."""
        if self.config_read(_HEADER_TYPE, 1) & 0x7F != 0:
            return []  # bridges are not handled: bus 0 of q35 has none by default
        command = self.config_read(_COMMAND, 2)
        self.config_write(_COMMAND, 2, command & ~(CMD_IO | CMD_MEMORY))
        bars, index = [], 0
        try:
            while index < 6:
                reg = _BAR0 + 4 * index
                original = self.config_read(reg, 4)
                self.config_write(reg, 4, 0xFFFF_FFFF)
                sized = self.config_read(reg, 4)
                self.config_write(reg, 4, original)
                high = None
                if not original & 1 and (original >> 1) & 3 == 2:
                    original_high = self.config_read(reg + 4, 4)
                    self.config_write(reg + 4, 4, 0xFFFF_FFFF)
                    high = self.config_read(reg + 4, 4)
                    self.config_write(reg + 4, 4, original_high)
                bar = decode_bar((self.bus, self.dev, self.fn), index, original, sized, high)
                if bar is not None:
                    bars.append(bar)
                index += 2 if high is not None else 1
        finally:
            self.config_write(_COMMAND, 2, command)
        return bars

    def program(self, bars: Sequence[Bar], bus_master: bool = True) -> int:
        """Write the assigned addresses and enable decode (+ bus master); the command register."""
        command = self.config_read(_COMMAND, 2)
        for bar in bars:
            if bar.address is None:
                raise PciError(f"{self.name} BAR {bar.index} has no address")
            reg = _BAR0 + 4 * bar.index
            self.config_write(reg, 4, bar.address & 0xFFFF_FFFF)
            if bar.kind == "mem64":
                self.config_write(reg + 4, 4, bar.address >> 32)
            self.bars[bar.index] = bar
        if any(b.kind == "io" for b in bars):
            command |= CMD_IO
        if any(b.kind != "io" for b in bars):
            command |= CMD_MEMORY
        if bus_master:
            command |= CMD_MASTER
        self.config_write(_COMMAND, 2, command)
        return self.config_read(_COMMAND, 2)

    def capabilities(self) -> list[Capability]:
        """The capability list in list order (stops at a loop)."""
        if not self.config_read(_STATUS, 2) & _STATUS_CAP_LIST:
            return []
        caps, seen = [], set()
        position = self.config_read(_CAP_PTR, 1) & ~3
        while position and position not in seen:
            seen.add(position)
            caps.append(Capability(position, self.config_read(position, 1)))
            position = self.config_read(position + 1, 1) & ~3
        return caps

    def mmap(self, bar: int, offset: int = 0, length: int | None = None, *,
             posted: bool = False) -> MmioWindow:
        """The memory BAR ``bar`` (or ``length`` bytes of it from ``offset``) as a window
        (``posted``: see :class:`MmioWindow`)."""
        assigned = self.bars.get(bar)
        if assigned is None or assigned.address is None or assigned.kind == "io":
            raise PciError(f"{self.name}: BAR {bar} is not an assigned memory BAR "
                           f"(assigned: {sorted(self.bars)})")
        length = assigned.size - offset if length is None else length
        if offset < 0 or length < 0 or offset + length > assigned.size:
            raise PciError(f"{self.name} BAR {bar}: {length:#x} bytes at {offset:#x} exceed its "
                           f"{assigned.size:#x} bytes")
        return MmioWindow(self.client, assigned.address + offset, length, f"{self.name} BAR {bar}",
                          posted)


def scan(client: QtestClient, bus: int = 0) -> list[PciFunction]:
    """The functions present on ``bus`` (vendor id not 0xffff), multi-function aware."""
    found = []
    for dev in range(32):
        for fn in range(8):
            function = PciFunction(client, bus, dev, fn)
            if function.config_read(_VENDOR, 2) == 0xFFFF:
                if fn == 0:
                    break
                continue
            found.append(function)
            if fn == 0 and not function.config_read(_HEADER_TYPE, 1) & 0x80:
                break
    return found


def bring_up(client: QtestClient, bus: int = 0,
             windows: Sequence[Window] = DEFAULT_WINDOWS) -> list[PciFunction]:
    """Scan ``bus``, size and assign every BAR, program them, enable decode and bus mastering."""
    functions = scan(client, bus)
    probes = {f.name: f.size_bars() for f in functions}
    assigned = assign_bars([bar for bars in probes.values() for bar in bars], windows)
    for function in functions:
        mine = [b for b in assigned if b.function == (function.bus, function.dev, function.fn)]
        if mine:
            function.program(mine)
    return functions
