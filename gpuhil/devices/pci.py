"""PCI functions as sysfs shows them, and rebinding one to another driver (e.g. vfio-pci).

:class:`PciDevice` reads ``/sys/bus/pci/devices/<address>``: ids, class, bound driver,
``driver_override`` and IOMMU group.  :meth:`PciDevice.bound_to` binds the function to a driver
through ``driver_override`` + ``unbind`` + ``drivers_probe`` for the duration of a ``with``
block, and afterwards puts back the original driver and ``driver_override``, also when the
block (or the bind itself) fails.
"""
from __future__ import annotations

import errno
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gpuhil.errors import GpuhilError, IoctlError, ioctl_error

#: Where the kernel lists PCI functions and drivers.
SYSFS_PCI = Path("/sys/bus/pci")


class BindError(GpuhilError):
    """A PCI function did not end up bound to the driver it was asked to bind to."""


@dataclass(frozen=True)
class PciIds:
    """Identity of a PCI function (config space header fields as sysfs exports them)."""

    vendor: int
    device: int
    subsystem_vendor: int
    subsystem_device: int
    class_code: int  # 24 bits: base class, subclass, programming interface
    revision: int


class PciDevice:
    """One PCI function in sysfs, named by its address (domain:bus:device.function)."""

    def __init__(self, address: str, sysfs: Path = SYSFS_PCI) -> None:
        self.address = address
        self.sysfs = sysfs
        self.path = sysfs / "devices" / address
        if not self.path.is_dir():
            raise ioctl_error("OPEN", {"path": str(self.path)}, errno.ENOENT, "no such PCI function")

    def __repr__(self) -> str:
        return f"PciDevice({self.address!r}, driver={self.driver!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PciDevice) and (self.path == other.path)

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- reading ----

    def _read(self, name: str) -> str:
        path = self.path / name
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ioctl_error("READ", {"path": str(path)}, exc.errno or errno.EIO) from exc

    def _hex(self, name: str) -> int:
        return int(self._read(name), 16)

    @property
    def ids(self) -> PciIds:
        """Vendor, device, subsystem ids, class and revision."""
        return PciIds(
            vendor=self._hex("vendor"), device=self._hex("device"),
            subsystem_vendor=self._hex("subsystem_vendor"),
            subsystem_device=self._hex("subsystem_device"),
            class_code=self._hex("class"), revision=self._hex("revision"),
        )

    @property
    def vendor(self) -> int:
        """PCI vendor id."""
        return self._hex("vendor")

    @property
    def device(self) -> int:
        """PCI device id."""
        return self._hex("device")

    @property
    def class_code(self) -> int:
        """24-bit class code (e.g. 0x030000 for a VGA controller)."""
        return self._hex("class")

    @property
    def driver(self) -> str | None:
        """Name of the bound driver, or None."""
        link = self.path / "driver"
        return link.resolve().name if link.exists() else None

    @property
    def driver_override(self) -> str | None:
        """The ``driver_override`` sysfs attribute, None when unset."""
        value = self._read("driver_override")
        return None if value in ("", "(null)") else value

    @property
    def iommu_group(self) -> int | None:
        """Number of the function's IOMMU group, None without an IOMMU."""
        link = self.path / "iommu_group"
        return int(link.resolve().name) if link.exists() else None

    def iommu_group_devices(self) -> list[str]:
        """Addresses of every function in the same IOMMU group (VFIO needs them all bound)."""
        group = self.path / "iommu_group" / "devices"
        return sorted(p.name for p in group.iterdir()) if group.is_dir() else []

    @property
    def vfio_group_path(self) -> Path:
        """The VFIO group node for this function (exists once it is bound to vfio-pci)."""
        group = self.iommu_group
        if group is None:
            raise ioctl_error("OPEN", {"path": str(self.path / "iommu_group")}, errno.ENOENT,
                              "the function has no IOMMU group (no IOMMU, or intel_iommu=off)")
        return Path("/dev/vfio") / str(group)

    def vfio_cdev_name(self) -> str | None:
        """``vfioN`` of the function's /dev/vfio/devices node, None without the cdev interface."""
        devdir = self.path / "vfio-dev"
        if not devdir.is_dir():
            return None
        names = sorted(p.name for p in devdir.iterdir() if p.name.startswith("vfio"))
        return names[0] if names else None

    # ---- binding ----

    def _write(self, path: Path, value: str) -> None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise ioctl_error("WRITE", {"path": str(path), "value": value.strip() or repr(value)},
                              exc.errno or errno.EIO, unsupported=frozenset()) from exc

    def set_driver_override(self, driver: str | None) -> None:
        """Sets (or with None clears) ``driver_override``."""
        self._write(self.path / "driver_override", driver if driver else "\n")

    def unbind(self) -> None:
        """Detaches the function from its driver; nothing to do when unbound."""
        driver = self.driver
        if driver is not None:
            self._write(self.sysfs / "drivers" / driver / "unbind", self.address)

    def probe(self) -> None:
        """Asks the PCI core to bind a driver (honours ``driver_override``)."""
        try:
            self._write(self.sysfs / "drivers_probe", self.address)
        except IoctlError:
            # drivers_probe fails when no driver takes the function; callers check .driver.
            pass

    def _await_driver(self, wanted: str | None, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            current = self.driver
            if current == wanted or time.monotonic() >= deadline:
                return current
            time.sleep(0.01)

    def bind(self, driver: str, timeout: float = 5.0) -> None:
        """Binds the function to ``driver`` (override + unbind + probe); BindError otherwise.

        Leaves ``driver_override`` set; :meth:`bound_to` is the variant that restores.
        """
        if self.driver == driver:
            return
        self.set_driver_override(driver)
        self.unbind()
        self.probe()
        current = self._await_driver(driver, timeout)
        if current != driver:
            raise BindError(f"{self.address} did not bind to {driver} (driver is {current}); "
                            f"is the {driver} module loaded?")

    @contextmanager
    def bound_to(self, driver: str, timeout: float = 5.0) -> Iterator[PciDevice]:
        """Context manager: the function is bound to ``driver`` inside the block.

        On exit the original driver (or none) and ``driver_override`` are restored, whether
        the block, or the bind itself, raised.  A failed restore raises BindError, or is
        added as a note to the exception already propagating.
        """
        original_driver = self.driver
        original_override = self.driver_override
        try:
            self.bind(driver, timeout)
            yield self
        except BaseException as exc:
            try:
                self.restore(original_driver, original_override, timeout)
            except GpuhilError as restore_error:
                exc.add_note(f"restoring {self.address} failed too: {restore_error}")
            raise
        else:
            self.restore(original_driver, original_override, timeout)

    def restore(self, driver: str | None, override: str | None = None,
                timeout: float = 5.0) -> None:
        """Puts back ``driver`` (or none) and ``driver_override``; BindError if the function
        does not end up bound to ``driver``."""
        if self.driver == driver and self.driver_override == override:
            return
        self.set_driver_override(override)
        if self.driver != driver:
            self.unbind()
            if driver is not None:
                self.probe()
        current = self._await_driver(driver, timeout)
        if current != driver:
            raise BindError(f"{self.address} went back to driver {current}, not {driver}")


def devices(sysfs: Path = SYSFS_PCI) -> list[PciDevice]:
    """Every PCI function the kernel knows, in address order."""
    root = sysfs / "devices"
    return [PciDevice(p.name, sysfs) for p in sorted(root.iterdir())] if root.is_dir() else []


def find(vendor: int, device: int, sysfs: Path = SYSFS_PCI) -> list[PciDevice]:
    """Functions with the given vendor and device id (see :mod:`gpuhil.devices.pci_ids`)."""
    return [d for d in devices(sysfs) if d.vendor == vendor and d.device == device]


def modprobe(*modules: str) -> None:
    """Loads kernel modules (e.g. ``vfio-pci``); GpuhilError with modprobe's message otherwise."""
    result = subprocess.run(["modprobe", "-a", *modules], capture_output=True, text=True)
    if result.returncode != 0:
        raise GpuhilError(f"modprobe {' '.join(modules)} failed: {result.stderr.strip()}")
