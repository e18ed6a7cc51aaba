"""The virtio 1.x PCI transport, driven from userspace through a raw-path transport.

:func:`gpuhil.raw.virtio_caps.find_capabilities` finds the virtio vendor capabilities (common,
notify, ISR, device config, PCI config access, shared memory).  :class:`VirtioPci` maps the BAR
windows they point to and speaks the common configuration: reset, status, feature negotiation, queue programming, notification.  Every
register access is a single load or store of the register's width (:class:`Window`'s
``read16``/``write32`` ...).  Layouts and constants come from the kernel uapi headers through
``gpuhil._virtqueue.ABI``.
"""
from __future__ import annotations

import time
from enum import IntEnum, IntFlag

from gpuhil._virtqueue import ABI
from gpuhil.errors import GpuhilError
from gpuhil.raw.transport import Transport, Window
from gpuhil.raw.virtio_caps import CapType, VirtioCap, find_capabilities

__all__ = ["CommonCfg", "DeviceStatus", "TransportFeature", "VirtioError", "VirtioPci"]


def _off(struct: str, field: str) -> int:
    return ABI[f"offsetof(struct {struct}, {field})"]


class DeviceStatus(IntFlag):
    """The device_status register (VIRTIO_CONFIG_S_*)."""

    ACKNOWLEDGE = ABI["VIRTIO_CONFIG_S_ACKNOWLEDGE"]
    DRIVER = ABI["VIRTIO_CONFIG_S_DRIVER"]
    DRIVER_OK = ABI["VIRTIO_CONFIG_S_DRIVER_OK"]
    FEATURES_OK = ABI["VIRTIO_CONFIG_S_FEATURES_OK"]
    NEEDS_RESET = ABI["VIRTIO_CONFIG_S_NEEDS_RESET"]
    FAILED = ABI["VIRTIO_CONFIG_S_FAILED"]


class TransportFeature(IntEnum):
    """Device-independent feature bit numbers this transport knows."""

    RING_INDIRECT_DESC = ABI["VIRTIO_RING_F_INDIRECT_DESC"]
    RING_EVENT_IDX = ABI["VIRTIO_RING_F_EVENT_IDX"]
    VERSION_1 = ABI["VIRTIO_F_VERSION_1"]
    ACCESS_PLATFORM = ABI["VIRTIO_F_ACCESS_PLATFORM"]
    RING_RESET = ABI["VIRTIO_F_RING_RESET"]


class CommonCfg(IntEnum):
    """Offsets of the registers of struct virtio_pci_common_cfg."""

    DEVICE_FEATURE_SELECT = _off("virtio_pci_common_cfg", "device_feature_select")
    DEVICE_FEATURE = _off("virtio_pci_common_cfg", "device_feature")
    DRIVER_FEATURE_SELECT = _off("virtio_pci_common_cfg", "guest_feature_select")
    DRIVER_FEATURE = _off("virtio_pci_common_cfg", "guest_feature")
    MSIX_CONFIG = _off("virtio_pci_common_cfg", "msix_config")
    NUM_QUEUES = _off("virtio_pci_common_cfg", "num_queues")
    DEVICE_STATUS = _off("virtio_pci_common_cfg", "device_status")
    CONFIG_GENERATION = _off("virtio_pci_common_cfg", "config_generation")
    QUEUE_SELECT = _off("virtio_pci_common_cfg", "queue_select")
    QUEUE_SIZE = _off("virtio_pci_common_cfg", "queue_size")
    QUEUE_MSIX_VECTOR = _off("virtio_pci_common_cfg", "queue_msix_vector")
    QUEUE_ENABLE = _off("virtio_pci_common_cfg", "queue_enable")
    QUEUE_NOTIFY_OFF = _off("virtio_pci_common_cfg", "queue_notify_off")
    QUEUE_DESC_LO = _off("virtio_pci_common_cfg", "queue_desc_lo")
    QUEUE_DESC_HI = _off("virtio_pci_common_cfg", "queue_desc_hi")
    QUEUE_DRIVER_LO = _off("virtio_pci_common_cfg", "queue_avail_lo")
    QUEUE_DRIVER_HI = _off("virtio_pci_common_cfg", "queue_avail_hi")
    QUEUE_DEVICE_LO = _off("virtio_pci_common_cfg", "queue_used_lo")
    QUEUE_DEVICE_HI = _off("virtio_pci_common_cfg", "queue_used_hi")


NO_VECTOR = ABI["VIRTIO_MSI_NO_VECTOR"]

_PCI_COMMAND = ABI["PCI_COMMAND"]
class VirtioError(GpuhilError):
    """The device did not do what the virtio transport asked (status not accepted, reset not
    completing, a capability missing, a queue that cannot be set up)."""


class VirtioPci:
    """A virtio-pci function reached through a :class:`~gpuhil.raw.transport.Transport`
    (``device``): its capabilities and register windows.

    The windows are the BARs the COMMON, NOTIFY, ISR and DEVICE capabilities point to; they
    are closed with the transport.  ``shared_memory(id)`` maps a shared-memory
    region (virtio-gpu's host-visible window is id 1).
    """

    def __init__(self, device: Transport) -> None:
        self.device = device
        self.caps = find_capabilities(device)
        self._bars: dict[int, Window] = {}
        self.common = self._window(CapType.COMMON)
        self.notify_cap = self._cap(CapType.NOTIFY)
        self.notify_window = self._window(CapType.NOTIFY)
        self.isr = self._window(CapType.ISR)
        self.device_cfg = self._window(CapType.DEVICE)

    def _cap(self, cfg_type: CapType) -> VirtioCap:
        for cap in self.caps:
            if cap.cfg_type == cfg_type:
                return cap
        found = ", ".join(c.type_name for c in self.caps) or "none"
        raise VirtioError(f"{self.device.name}: no virtio {cfg_type.name} capability "
                          f"(found: {found})")

    def _window(self, cfg_type: CapType) -> tuple[Window, int]:
        cap = self._cap(cfg_type)
        return self._bar(cap.bar), cap.offset

    def _bar(self, bar: int) -> Window:
        if bar not in self._bars:
            self._bars[bar] = self.device.mmap(bar)
        return self._bars[bar]

    # ---- common configuration -----------------------------------------------------------

    def _r(self, register: CommonCfg, width: int) -> int:
        mapping, base = self.common
        return getattr(mapping, f"read{width * 8}")(base + register)

    def _w(self, register: CommonCfg, width: int, value: int) -> None:
        mapping, base = self.common
        getattr(mapping, f"write{width * 8}")(base + register, value)

    @property
    def status(self) -> DeviceStatus:
        """device_status as the device reports it."""
        return DeviceStatus(self._r(CommonCfg.DEVICE_STATUS, 1))

    def set_status(self, status: DeviceStatus | int) -> None:
        """Write device_status."""
        self._w(CommonCfg.DEVICE_STATUS, 1, int(status))

    def add_status(self, bits: DeviceStatus) -> DeviceStatus:
        """OR ``bits`` into device_status; returns the status read back."""
        self.set_status(self.status | bits)
        return self.status

    def reset(self, timeout: float = 5.0) -> None:
        """Write status 0 and wait until the device reads back 0 (reset complete)."""
        self.set_status(0)
        deadline = time.monotonic() + timeout
        while self._r(CommonCfg.DEVICE_STATUS, 1) != 0:
            if time.monotonic() >= deadline:
                raise VirtioError(f"{self.device.name}: device_status still "
                                  f"{self.status!r} {timeout:g} s after a reset")
            time.sleep(0.001)

    @property
    def config_generation(self) -> int:
        return self._r(CommonCfg.CONFIG_GENERATION, 1)

    @property
    def num_queues(self) -> int:
        return self._r(CommonCfg.NUM_QUEUES, 2)

    def device_features(self) -> int:
        """The 64 feature bits the device offers (two 32-bit windows)."""
        value = 0
        for word in (0, 1):
            self._w(CommonCfg.DEVICE_FEATURE_SELECT, 4, word)
            value |= self._r(CommonCfg.DEVICE_FEATURE, 4) << (32 * word)
        return value

    def write_driver_features(self, features: int) -> None:
        """Write the 64 driver feature bits (two 32-bit windows)."""
        for word in (0, 1):
            self._w(CommonCfg.DRIVER_FEATURE_SELECT, 4, word)
            self._w(CommonCfg.DRIVER_FEATURE, 4, (features >> (32 * word)) & 0xFFFFFFFF)

    def negotiate(self, features: int) -> None:
        """ACKNOWLEDGE, DRIVER, write ``features``, FEATURES_OK; VirtioError naming the
        features when the device does not keep FEATURES_OK set.  The device must be reset."""
        self.set_status(DeviceStatus.ACKNOWLEDGE)
        self.add_status(DeviceStatus.DRIVER)
        self.write_driver_features(features)
        status = self.add_status(DeviceStatus.FEATURES_OK)
        if not status & DeviceStatus.FEATURES_OK:
            raise VirtioError(f"{self.device.name}: the device refused FEATURES_OK for features "
                              f"{features:#x} (status {int(status):#04x})")
        self._w(CommonCfg.MSIX_CONFIG, 2, NO_VECTOR)

    def queue_max_size(self, index: int) -> int:
        """queue_size of queue ``index`` after a reset: the largest size the device allows
        (0: no such queue)."""
        self._w(CommonCfg.QUEUE_SELECT, 2, index)
        return self._r(CommonCfg.QUEUE_SIZE, 2)

    def setup_queue(self, index: int, size: int, desc: int, driver: int, device: int) -> int:
        """Program queue ``index`` (size, no MSI-X vector, ring addresses as 32-bit halves)
        and enable it; returns the offset of its notify register in the notify window."""
        maximum = self.queue_max_size(index)
        if not 0 < size <= maximum:
            raise VirtioError(f"{self.device.name}: queue {index} takes at most {maximum} "
                              f"entries, asked for {size}")
        self._w(CommonCfg.QUEUE_SIZE, 2, size)
        self._w(CommonCfg.QUEUE_MSIX_VECTOR, 2, NO_VECTOR)
        for low, value in ((CommonCfg.QUEUE_DESC_LO, desc), (CommonCfg.QUEUE_DRIVER_LO, driver),
                           (CommonCfg.QUEUE_DEVICE_LO, device)):
            self._w(low, 4, value & 0xFFFFFFFF)
            self._w(CommonCfg(low + 4), 4, value >> 32)
        notify_off = self._r(CommonCfg.QUEUE_NOTIFY_OFF, 2)
        self._w(CommonCfg.QUEUE_ENABLE, 2, 1)
        return self.notify_window[1] + notify_off * self.notify_cap.notify_off_multiplier

    def driver_ok(self) -> DeviceStatus:
        """Set DRIVER_OK; VirtioError when the device does not keep it."""
        status = self.add_status(DeviceStatus.DRIVER_OK)
        if not status & DeviceStatus.DRIVER_OK:
            raise VirtioError(f"{self.device.name}: DRIVER_OK not accepted "
                              f"(status {int(status):#04x})")
        return status

    def notify(self, notify_offset: int, queue_index: int) -> None:
        """Tell the device queue ``queue_index`` has new buffers (one 16-bit store)."""
        self.notify_window[0].write16(notify_offset, queue_index)

    def read_isr(self) -> int:
        """The ISR status byte (reading it clears it)."""
        mapping, base = self.isr
        return mapping.read8(base)

    # ---- device configuration -----------------------------------------------------------

    def config_read32(self, offset: int) -> int:
        """A 32-bit field of the device-specific configuration."""
        mapping, base = self.device_cfg
        return mapping.read32(base + offset)

    def config_write32(self, offset: int, value: int) -> None:
        mapping, base = self.device_cfg
        mapping.write32(base + offset, value)

    # ---- PCI ----------------------------------------------------------------------------

    def enable_bus_master(self) -> int:
        """Set MEMORY and BUS MASTER in PCI_COMMAND (vfio-pci leaves bus mastering off);
        returns the command register read back."""
        command = self.device.config_read(_PCI_COMMAND, 2)
        command |= ABI["PCI_COMMAND_MEMORY"] | ABI["PCI_COMMAND_MASTER"]
        self.device.config_write(_PCI_COMMAND, 2, command)
        return self.device.config_read(_PCI_COMMAND, 2)

    def shared_memory(self, shm_id: int) -> tuple[VirtioCap, Window]:
        """The shared-memory region ``shm_id`` (its capability and a mapping of exactly it)."""
        for cap in self.caps:
            if cap.cfg_type == CapType.SHARED_MEMORY and cap.id == shm_id:
                return cap, self.device.mmap(cap.bar, cap.offset, cap.length)
        raise VirtioError(f"{self.device.name}: no shared memory region with id {shm_id}")
