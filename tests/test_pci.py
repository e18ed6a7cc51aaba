"""gpuhil.devices.pci against this machine's real sysfs, read-only (nothing is rebound here).

Binding to vfio-pci and restoring is exercised in the lab (tests/test_vfio_lab.py).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from gpuhil.devices import pci
from gpuhil.errors import GpuhilError, IoctlError, Unsupported

SYSFS_DEVICES = Path("/sys/bus/pci/devices")


@pytest.fixture(scope="module")
def host_devices() -> list[pci.PciDevice]:
    found = pci.devices()
    if not found:
        pytest.skip("this machine exposes no PCI functions in sysfs")
    return found


def config_header(address: str) -> bytes:
    """The first 16 bytes of the function's config space, read from sysfs' config file."""
    with open(SYSFS_DEVICES / address / "config", "rb") as f:
        return f.read(16)


def test_lists_every_function_in_address_order(host_devices):
    """devices() returns exactly the entries of /sys/bus/pci/devices, sorted."""
    assert [d.address for d in host_devices] == sorted(os.listdir(SYSFS_DEVICES))


def test_ids_match_config_space(host_devices):
    """vendor, device, revision and class agree with the raw config space header."""
    for dev in host_devices:
        header = config_header(dev.address)
        ids = dev.ids
        assert ids.vendor == int.from_bytes(header[0:2], "little") == dev.vendor
        assert ids.device == int.from_bytes(header[2:4], "little") == dev.device
        assert ids.revision == header[8]
        assert ids.class_code == int.from_bytes(header[9:12], "little") == dev.class_code


def test_driver_matches_the_drivers_directory(host_devices):
    """A function's driver is the one whose sysfs directory lists it; unbound ones say None."""
    for dev in host_devices:
        if dev.driver is None:
            assert not (dev.path / "driver").exists()
        else:
            assert (pci.SYSFS_PCI / "drivers" / dev.driver / dev.address).exists()


def test_at_least_one_function_has_a_driver(host_devices):
    assert any(d.driver for d in host_devices), [repr(d) for d in host_devices]


def test_driver_override_unset_reads_as_none(host_devices):
    """The kernel prints "(null)" for an unset override; gpuhil gives None."""
    for dev in host_devices:
        raw = (dev.path / "driver_override").read_text().strip()
        assert dev.driver_override == (None if raw == "(null)" else raw)


def test_iommu_group_matches_the_group_link(host_devices):
    """iommu_group is the number of the group directory, None without an IOMMU."""
    for dev in host_devices:
        link = dev.path / "iommu_group"
        if link.exists():
            assert dev.iommu_group == int(os.path.basename(os.readlink(link)))
            assert dev.address in dev.iommu_group_devices()
            assert str(dev.vfio_group_path) == f"/dev/vfio/{dev.iommu_group}"
        else:
            assert dev.iommu_group is None and dev.iommu_group_devices() == []
            with pytest.raises(IoctlError, match="no IOMMU group"):
                _ = dev.vfio_group_path


def test_find_by_ids(host_devices):
    """find() returns the functions with that vendor:device pair, and nothing for unknown ids."""
    first = host_devices[0]
    matches = pci.find(first.vendor, first.device)
    assert first in matches
    assert all(d.vendor == first.vendor and d.device == first.device for d in matches)
    assert pci.find(0xFFFF, 0xFFFF) == []


def test_no_vfio_cdev_for_functions_not_bound_to_vfio(host_devices):
    for dev in host_devices:
        if dev.driver != "vfio-pci":
            assert dev.vfio_cdev_name() is None


def test_missing_function_names_the_path():
    with pytest.raises(IoctlError) as info:
        pci.PciDevice("0000:ff:1f.7")
    assert info.value.errno == errno.ENOENT and not isinstance(info.value, Unsupported)
    assert "/sys/bus/pci/devices/0000:ff:1f.7" in str(info.value)


def test_modprobe_failure_is_reported():
    """An unknown module makes modprobe fail with its message in the exception."""
    if not any(Path(p, "modprobe").exists() for p in os.environ.get("PATH", "").split(":") + ["/sbin"]):
        pytest.skip("no modprobe on this machine")
    with pytest.raises(GpuhilError, match="gpuhil_no_such_module"):
        pci.modprobe("gpuhil_no_such_module")
