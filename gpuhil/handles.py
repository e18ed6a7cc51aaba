"""Device handles: a device on a machine, with one calling convention.

Every handle carries the :class:`~gpuhil.machine.Machine` its device is on (``.machine``) and
the device's name there (``.target``: a path for a character device, a PCI address for a
function bound to vfio-pci).  ``handle.call(func, *args, **kwargs)`` runs
``func(handle.target, *args, **kwargs)`` where the device is, so a payload takes the device as
its first argument whatever the handle::

    virtgpu.call(payloads.getparam, 3)          # getparam("/dev/dri/renderD128", 3)
    raw_gpu.call(payloads.capsets)              # capsets("0000:00:03.0")

The pytest plugin's fixtures (``virtgpu``, ``udmabuf``, ``vfio_device``, ``raw_gpu``) return
these; :func:`bound_to_vfio` and :func:`raw_gpu_bound` make the PCI ones outside pytest.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from gpuhil.devices.pci_ids import VIRTIO_GPU
from gpuhil.devices.vfio_binding import bind_vfio, restore_driver
from gpuhil.errors import GpuhilError
from gpuhil.gating.capabilities import Capabilities
from gpuhil.lab.errors import LabError
from gpuhil.machine import Machine

__all__ = ["DeviceHandle", "RawGpuDevice", "UdmabufDevice", "VfioDevice", "VirtGpu",
           "bound_to_vfio", "raw_gpu_bound"]


@dataclass(frozen=True)
class DeviceHandle:
    """A device on ``machine``; subclasses say what names it there (:attr:`target`)."""

    machine: Machine

    @property
    def target(self) -> str:
        """The device's name on its machine: the first argument of every :meth:`call`."""
        raise NotImplementedError

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(target, *args, **kwargs)`` where the device is; its result."""
        return self.machine.call(func, self.target, *args, **kwargs)


@dataclass(frozen=True)
class VirtGpu(DeviceHandle):
    """The virtio-gpu render node: payloads open it with ``RenderNode(path)``."""

    path: str
    capabilities: Capabilities

    @property
    def target(self) -> str:
        return self.path


@dataclass(frozen=True)
class UdmabufDevice(DeviceHandle):
    """``/dev/udmabuf`` where the device is, with its probed limits."""

    path: str
    size_limit_mb: int | None
    list_limit: int | None

    @property
    def target(self) -> str:
        return self.path


@dataclass(frozen=True)
class VfioDevice(DeviceHandle):
    """A PCI function bound to vfio-pci (its original driver comes back after); ``iommu`` is
    the vIOMMU of the guest it sits behind (a :class:`gpuhil.lab.spec.Iommu`, None if unknown)."""

    address: str
    vendor: int
    device: int
    iommu_group: int
    original_driver: str | None
    iommu: Any = None

    @property
    def target(self) -> str:
        return self.address


@dataclass(frozen=True)
class RawGpuDevice(DeviceHandle):
    """The virtio-gpu for the raw driver: payloads open ``address`` with
    ``gpuhil.raw.rawgpu.RawGpu.open(address)``: a PCI address bound to vfio-pci (``transport``
    "vfio"), or a qtest machine's device (:class:`gpuhil.qtest.transport.QtestGpu`, "qtest";
    payloads then run in this process).  A gpuhil error of a :meth:`call` (a RawTimeout, ...)
    gets QEMU's run state and stderr tail attached as a note."""

    address: Any  # str, or a QtestGpu
    iommu_group: int | None
    original_driver: str | None

    @property
    def target(self) -> Any:
        return self.address

    @property
    def transport(self) -> str:
        """"vfio" or "qtest": how the raw driver reaches the device."""
        return "vfio" if isinstance(self.address, str) else "qtest"

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().call(func, *args, **kwargs)
        except GpuhilError as exc:
            exc.add_note(self.qemu_state())
            raise

    def qemu_state(self) -> str:
        """QEMU's run state and the tail of its stderr (where DMA faults show up)."""
        try:
            status = self.machine.status()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - the report must not hide the original error
            status = f"unknown ({type(exc).__name__}: {exc})"
        tail = "\n".join(self.machine.qemu_stderr().splitlines()[-20:])
        return f"QEMU run state: {status}; QEMU stderr tail:\n{tail or '(empty)'}"


def qtest_raw_gpu(machine: Any) -> RawGpuDevice:
    """The virtio-gpu of a qtest machine (enumerated by gpuhil; no driver to unbind)."""
    return RawGpuDevice(machine, machine.raw_target(), None, None)


@contextmanager
def bound_to_vfio(machine: Machine, vendor: int, device: int
                  ) -> Iterator[tuple[str, int, str | None]]:
    """The machine's first ``vendor:device`` function bound to vfio-pci inside the block, as
    (address, IOMMU group, original driver); the original driver comes back afterwards
    (LabError if it does not)."""
    address, group, original = machine.call(bind_vfio, vendor, device)
    try:
        yield address, group, original
    finally:
        if machine.alive:
            now = machine.call(restore_driver, address, original)
            if now != original:
                raise LabError(f"{address} went back to {now}, not {original}")


@contextmanager
def raw_gpu_bound(machine: Machine) -> Iterator[RawGpuDevice]:
    """The machine's virtio-gpu bound to vfio-pci inside the block; its original driver comes
    back afterwards (LabError if it does not)."""
    with bound_to_vfio(machine, *VIRTIO_GPU) as (address, group, original):
        yield RawGpuDevice(machine, address, group, original)
