"""The VFIO group (``/dev/vfio/N``): the unit of ownership, which hands out device fds."""
from __future__ import annotations

from gpuhil import _vfio
from gpuhil._vfio import GroupFlag
from gpuhil.devices.pci import PciDevice
from gpuhil.devices.vfio.container import Container
from gpuhil.devices.vfio.device import Device
from gpuhil.devices.vfio.info import GroupStatus
from gpuhil.devices.vfio.owner import FdOwner, open_node

__all__ = ["Group"]


class Group(FdOwner):
    """A VFIO group (``/dev/vfio/N``): the unit of ownership; hands out device fds."""

    _kind = "VFIO group"

    def __init__(self, group: int | str) -> None:
        self.path = f"/dev/vfio/{group}" if isinstance(group, int) else str(group)
        super().__init__(open_node(self.path, "no such VFIO group: is the device bound to vfio-pci?"))
        self._devices: list[Device] = []

    @classmethod
    def of(cls, address: str) -> Group:
        """The group of the PCI function at ``address`` (found through sysfs)."""
        return cls(str(PciDevice(address).vfio_group_path))

    def status(self) -> GroupStatus:
        """VFIO_GROUP_GET_STATUS."""
        return GroupStatus(GroupFlag(_vfio.group_get_status(self.fd)))

    def set_container(self, container: Container) -> None:
        """VFIO_GROUP_SET_CONTAINER."""
        _vfio.group_set_container(self.fd, container.fd)

    def unset_container(self) -> None:
        """VFIO_GROUP_UNSET_CONTAINER."""
        _vfio.group_unset_container(self.fd)

    def device(self, address: str) -> Device:
        """VFIO_GROUP_GET_DEVICE_FD: the device ``address`` (after SET_IOMMU)."""
        device = Device(_vfio.group_get_device_fd(self.fd, address), address)
        self._devices.append(device)
        return device

    def _close_children(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()
