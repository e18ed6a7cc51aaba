"""Functions the lab's own tests run inside the guest (stdlib and gpuhil only: the guest has no
qemu.qmp, so nothing here imports the host-side lab modules)."""
from __future__ import annotations

import errno
import os
import time

from gpuhil.errors import ioctl_error


def boot_id() -> str:
    """This kernel's random boot id (differs between guests)."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def write_run_file(name: str, text: str) -> str:
    """Write a file into the guest's run share (/gpuhil/run) and return its guest path."""
    path = os.path.join("/gpuhil/run", name)
    with open(path, "w") as f:
        f.write(text)
    return path


def failing_ioctl() -> None:
    """Raise the error a failing blob create would raise."""
    raise ioctl_error("RESOURCE_CREATE_BLOB", {"blob_mem": "HOST3D", "size": 0}, errno.EINVAL)


def sleep(seconds: float) -> float:
    """Sleep in the guest (a long agent call to interrupt)."""
    time.sleep(seconds)
    return seconds


def pci_ids() -> list[str]:
    """vendor:device of every PCI function, as hex strings."""
    ids = []
    for dev in sorted(os.listdir("/sys/bus/pci/devices")):
        base = os.path.join("/sys/bus/pci/devices", dev)
        with open(os.path.join(base, "vendor")) as v, open(os.path.join(base, "device")) as d:
            ids.append(f"{v.read().strip()[2:]}:{d.read().strip()[2:]}")
    return ids


def iommu_group_of(pci_id: str) -> list[str]:
    """The vendor:device ids of every PCI function in the IOMMU group of device ``pci_id``."""
    devices = "/sys/bus/pci/devices"
    for dev in sorted(os.listdir(devices)):
        with open(f"{devices}/{dev}/vendor") as v, open(f"{devices}/{dev}/device") as d:
            if f"{v.read().strip()[2:]}:{d.read().strip()[2:]}" != pci_id:
                continue
        members = os.listdir(f"{devices}/{dev}/iommu_group/devices")
        ids = []
        for member in sorted(members):
            with open(f"{devices}/{member}/vendor") as v, open(f"{devices}/{member}/device") as d:
                ids.append(f"{v.read().strip()[2:]}:{d.read().strip()[2:]}")
        return ids
    raise LookupError(f"no PCI device {pci_id}")


def pytest_version() -> str:
    """pytest as the guest's Python sees it (test modules holding payloads import it)."""
    import pytest

    return pytest.__version__


def kmsg_since_last_seq() -> tuple[list[str], list[str]]:
    """Kernel log texts after ``last_seq()`` once a line was written there, and after the seq
    just before the newest record (what records_since returns for an older position)."""
    from gpuhil.devices import kmsg

    os.system("echo gpuhil-before-seq > /dev/kmsg")
    seq = kmsg.last_seq()
    os.system("echo gpuhil-after-seq > /dev/kmsg")
    return ([r.text for r in kmsg.records_since(seq)],
            [r.text for r in kmsg.records_since(seq - 1)])


def split_pr_cont_records(tries: int = 30) -> list:
    """The kernel records of ``tries`` sysrq help texts (a pr_info head, then one pr_cont per
    key) written while another task floods /dev/kmsg, so some tails are split from their head."""
    import subprocess

    from gpuhil.devices import kmsg

    limit = "/proc/sys/kernel/printk_devkmsg"
    with open(limit) as f:
        before = f.read()
    marker = kmsg.mark("split pr_cont")
    with open(limit, "w") as f:
        f.write("on\n")  # no rate limit for the flooding writer
    flood = subprocess.Popen(["sh", "-c", "while :; do echo gpuhil-flood > /dev/kmsg; done"])
    try:
        for _ in range(tries):
            with open("/proc/sysrq-trigger", "w") as f:
                f.write("h")
    finally:
        flood.kill()
        flood.wait()
        with open(limit, "w") as f:
            f.write(before)
    return [r for r in kmsg.records_after(marker) if r.from_kernel]


def read_text(path: str) -> str:
    """The text of a file in the guest."""
    with open(path) as f:
        return f.read()
