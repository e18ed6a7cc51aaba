"""Payloads that hand a PCI function to vfio-pci and back, run where the device is (a lab
guest, or a lab machine); the host side calls them through a machine's ``call``."""
from __future__ import annotations

from gpuhil.devices import pci

__all__ = ["bind_vfio", "pci_driver", "restore_driver"]


def bind_vfio(vendor: int, device: int) -> tuple[str, int, str | None]:
    """Bind the first ``vendor:device`` function to vfio-pci; (address, IOMMU group, the
    driver it had)."""
    pci.modprobe("vfio-pci", "vfio_iommu_type1")
    found = pci.find(vendor, device)
    if not found:
        raise LookupError(f"no {vendor:04x}:{device:04x} PCI function")
    dev = found[0]
    original = dev.driver
    dev.bind("vfio-pci")
    group = dev.iommu_group
    if group is None:
        raise LookupError(f"{dev.address} is bound to vfio-pci but has no IOMMU group")
    return dev.address, group, original


def restore_driver(address: str, driver: str | None) -> str | None:
    """Give ``address`` back to ``driver`` (or none), clearing driver_override; the driver now
    bound (BindError when it is not ``driver``)."""
    dev = pci.PciDevice(address)
    dev.restore(driver, None)
    return dev.driver


def pci_driver(address: str) -> str | None:
    """The driver ``address`` is bound to."""
    return pci.PciDevice(address).driver
