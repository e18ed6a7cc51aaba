"""The virtio vendor capabilities of a PCI function: where each virtio structure lives.

:func:`find_capabilities` walks the PCI capability list through a raw-path
:class:`~gpuhil.raw.transport.Transport`'s config space and decodes every virtio vendor
capability (common, notify, ISR, device config, PCI config access, shared memory) into a
:class:`VirtioCap` (BAR, offset, length).  Layouts come from the kernel uapi headers through
``gpuhil._virtqueue.ABI``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from gpuhil._virtqueue import ABI
from gpuhil.raw.transport import Transport

__all__ = ["CapType", "VirtioCap", "find_capabilities"]


def _off(struct: str, field: str) -> int:
    return ABI[f"offsetof(struct {struct}, {field})"]


class CapType(IntEnum):
    """virtio_pci_cap.cfg_type (VIRTIO_PCI_CAP_*)."""

    COMMON = ABI["VIRTIO_PCI_CAP_COMMON_CFG"]
    NOTIFY = ABI["VIRTIO_PCI_CAP_NOTIFY_CFG"]
    ISR = ABI["VIRTIO_PCI_CAP_ISR_CFG"]
    DEVICE = ABI["VIRTIO_PCI_CAP_DEVICE_CFG"]
    PCI_CFG = ABI["VIRTIO_PCI_CAP_PCI_CFG"]
    SHARED_MEMORY = ABI["VIRTIO_PCI_CAP_SHARED_MEMORY_CFG"]


_PCI_STATUS = ABI["PCI_STATUS"]
_PCI_CAPABILITY_LIST = ABI["PCI_CAPABILITY_LIST"]
_CAP = {f: _off("virtio_pci_cap", f) for f in ("cap_vndr", "cap_next", "cap_len", "cfg_type",
                                                "bar", "id", "offset", "length")}
_CAP64_OFFSET_HI = _off("virtio_pci_cap64", "offset_hi")
_CAP64_LENGTH_HI = _off("virtio_pci_cap64", "length_hi")
_CAP64_SIZE = ABI["sizeof(struct virtio_pci_cap64)"]
_NOTIFY_MULTIPLIER = _off("virtio_pci_notify_cap", "notify_off_multiplier")
_NOTIFY_CAP_SIZE = ABI["sizeof(struct virtio_pci_notify_cap)"]


@dataclass(frozen=True)
class VirtioCap:
    """One virtio vendor capability: where (BAR, offset, length) a structure lives.

    ``id`` is the shared-memory region id (SHARED_MEMORY caps), ``notify_off_multiplier`` is
    set on the NOTIFY cap, ``position`` is the capability's offset in config space.
    """

    position: int
    cfg_type: int
    bar: int
    offset: int
    length: int
    id: int = 0
    notify_off_multiplier: int = 0

    @property
    def type_name(self) -> str:
        try:
            return CapType(self.cfg_type).name
        except ValueError:
            return f"type {self.cfg_type}"


def find_capabilities(device: Transport) -> list[VirtioCap]:
    """The virtio vendor capabilities in the device's PCI capability list, in list order."""
    if not device.config_read(_PCI_STATUS, 2) & ABI["PCI_STATUS_CAP_LIST"]:
        return []
    caps = []
    seen = set()
    position = device.config_read(_PCI_CAPABILITY_LIST, 1) & ~3
    while position and position not in seen:
        seen.add(position)
        cap_id = device.config_read(position + ABI["PCI_CAP_LIST_ID"], 1)
        following = device.config_read(position + ABI["PCI_CAP_LIST_NEXT"], 1) & ~3
        if cap_id == ABI["PCI_CAP_ID_VNDR"]:
            caps.append(_virtio_cap(device, position))
        position = following
    return caps


def _virtio_cap(device: Transport, position: int) -> VirtioCap:
    def read(field_offset: int, size: int) -> int:
        return device.config_read(position + field_offset, size)

    cap_len = read(_CAP["cap_len"], 1)
    cfg_type = read(_CAP["cfg_type"], 1)
    offset = read(_CAP["offset"], 4)
    length = read(_CAP["length"], 4)
    if cfg_type == CapType.SHARED_MEMORY and cap_len >= _CAP64_SIZE:
        offset |= read(_CAP64_OFFSET_HI, 4) << 32
        length |= read(_CAP64_LENGTH_HI, 4) << 32
    multiplier = 0
    if cfg_type == CapType.NOTIFY and cap_len >= _NOTIFY_CAP_SIZE:
        multiplier = read(_NOTIFY_MULTIPLIER, 4)
    return VirtioCap(position, cfg_type, read(_CAP["bar"], 1), offset, length,
                     read(_CAP["id"], 1), multiplier)
