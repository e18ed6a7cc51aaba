"""PCIe native hot-unplug under qtest, where no guest OS answers the attention button.

``device_del`` of a function behind a ``pcie-root-port`` only presses the slot's attention
button; a guest OS would then power the slot off, and QEMU unplugs the function when the
slot's power controller and power indicator are both off.  :func:`power_off_slot` is that
guest step, done through the root port's PCI Express capability from the qtest client; the
inner QEMU needs ``-global ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off`` so that q35's
root ports use native hotplug rather than ACPI's."""
from __future__ import annotations

from gpuhil.qtest import pci
from gpuhil.qtest.client import QtestClient

#: q35's ACPI hotplug of root ports off, so their native (PCIe slot) hotplug is used
NATIVE_HOTPLUG = ("-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off")
CAP_ID_EXP = 0x10
SLTCTL, SLTSTA = 0x18, 0x1A
PCC_OFF, PIC_OFF = 0x0400, 0x0300  # power controller off; power indicator off
SLTSTA_ABP, SLTSTA_PDS = 0x01, 0x40  # attention button pressed; presence detected


def express_cap(client: QtestClient, dev: int) -> int:
    """Config offset of the PCI Express capability of bus 0 device ``dev`` (LookupError)."""
    for cap in pci.PciFunction(client, 0, dev, 0).capabilities():
        if cap.id == CAP_ID_EXP:
            return cap.position
    raise LookupError(f"PCI 00:{dev:02x}.0 has no PCI Express capability")


def slot_status(client: QtestClient, dev: int) -> int:
    """The root port's Slot Status register."""
    return pci.config_read(client, 0, dev, 0, express_cap(client, dev) + SLTSTA, 2)


def power_off_slot(client: QtestClient, dev: int) -> None:
    """Switch the slot of the root port at bus 0 device ``dev`` off (power controller and
    power indicator): what a guest does after the attention button."""
    ctl = express_cap(client, dev) + SLTCTL
    pci.config_write(client, 0, dev, 0, ctl, 2,
                     pci.config_read(client, 0, dev, 0, ctl, 2) | PCC_OFF | PIC_OFF)


__all__ = ["NATIVE_HOTPLUG", "power_off_slot", "slot_status"]
