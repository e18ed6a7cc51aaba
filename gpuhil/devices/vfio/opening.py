"""Opening a PCI function through VFIO in one step: container, group, SET_IOMMU, device fd."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from gpuhil._vfio import Extension
from gpuhil.devices.vfio.container import Container
from gpuhil.devices.vfio.device import Device
from gpuhil.devices.vfio.group import Group

__all__ = ["Opened", "open_device"]


@dataclass
class Opened:
    """A function opened through the legacy interface: its container, group and device."""

    container: Container
    group: Group
    device: Device


@contextmanager
def open_device(address: str, iommu: Extension | int = Extension.TYPE1v2) -> Iterator[Opened]:
    """Opens the function at ``address`` (already bound to vfio-pci): a new container, its
    group attached to it, the container's IOMMU set to ``iommu``, then the device fd.

    Everything is closed afterwards (device, group, container), also when a step fails.
    """
    with Container() as container, Group.of(address) as group:
        group.set_container(container)
        container.set_iommu(iommu)
        with group.device(address) as device:
            yield Opened(container, group, device)
