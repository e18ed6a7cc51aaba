"""gpuhil.handles: every device handle runs ``func(<its device>, *args, **kwargs)`` on its machine,
carries that machine, and the raw one adds QEMU's state to a gpuhil error."""
from __future__ import annotations

from typing import Any

import pytest

from gpuhil.errors import GpuhilError
from gpuhil.gating.capabilities import Capabilities, GuestProbe
from gpuhil.handles import RawGpuDevice, UdmabufDevice, VfioDevice, VirtGpu, bound_to_vfio
from gpuhil.lab.errors import LabError
from gpuhil.machine import LocalMachine


def echo(target: str, *args: Any, **kwargs: Any) -> tuple[str, tuple, dict]:
    return target, args, kwargs


def _handles(machine: Any) -> list[Any]:
    caps = Capabilities("local", GuestProbe("7.2"))
    return [VirtGpu(machine, "/dev/dri/renderD128", caps),
            UdmabufDevice(machine, "/dev/udmabuf", 64, 1024),
            VfioDevice(machine, "0000:00:04.0", 0x1af4, 0x1110, 7, "ivshmem"),
            RawGpuDevice(machine, "0000:00:03.0", 5, "virtio-pci")]


@pytest.mark.parametrize("index", range(4), ids=["virtgpu", "udmabuf", "vfio", "raw"])
def test_call_passes_the_device_first(index: int) -> None:
    """The handle's device path or PCI address comes first, then the caller's arguments."""
    machine = LocalMachine()
    handle = _handles(machine)[index]
    assert handle.machine is machine
    expected = {VirtGpu: "/dev/dri/renderD128", UdmabufDevice: "/dev/udmabuf",
                VfioDevice: "0000:00:04.0", RawGpuDevice: "0000:00:03.0"}[type(handle)]
    assert handle.target == expected
    assert handle.call(echo, 1, "b", key=3) == (expected, (1, "b"), {"key": 3})


class _FailingQemu(LocalMachine):
    def call(self, func: Any, /, *args: Any, **kwargs: Any) -> Any:
        raise GpuhilError(f"{func.__name__}{args}: timed out")

    def status(self) -> str:
        return "paused"

    def qemu_stderr(self, since: int = 0) -> str:
        return "line 1\nvfio: DMA fault at 0x1000\n"[since:]


def test_raw_gpu_error_gets_qemu_state_as_note() -> None:
    """A gpuhil error from a raw-path payload carries QEMU's run state and stderr tail."""
    device = RawGpuDevice(_FailingQemu(), "0000:00:03.0", 5, "virtio-pci")
    with pytest.raises(GpuhilError) as info:
        device.call(echo, 1)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "QEMU run state: paused" in notes and "DMA fault at 0x1000" in notes


class _Binder(LocalMachine):
    def __init__(self, restored_to: str | None) -> None:
        self.restored_to = restored_to
        self.calls: list[str] = []

    def call(self, func: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(func.__name__)
        if func.__name__ == "bind_vfio":
            return "0000:00:04.0", 7, "ivshmem"
        return self.restored_to


def test_bound_to_vfio_restores_and_checks_the_driver() -> None:
    """The original driver is given back after the block; another driver is a LabError."""
    ok = _Binder("ivshmem")
    with bound_to_vfio(ok, 0x1af4, 0x1110) as bound:
        assert bound == ("0000:00:04.0", 7, "ivshmem")
    assert ok.calls == ["bind_vfio", "restore_driver"]
    with pytest.raises(LabError, match="0000:00:04.0 went back to None, not ivshmem"):
        with bound_to_vfio(_Binder(None), 0x1af4, 0x1110):
            pass
