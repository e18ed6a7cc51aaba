"""prepare_gpu's verdict when the device timeout expires: classified from what QEMU said by then
(a busy machine can reach the deadline before it read QEMU's stderr), quoted in the message.

The machine here is a stand-in that replays what a real QEMU printed; the real QEMU's side is in
tests/test_plugin_lab.py (the drm configuration on a host without DRM native context)."""
from __future__ import annotations

import subprocess

import pytest

from gpuhil.bringup import prepare_gpu
from gpuhil.gating.capabilities import DeviceInitError
from gpuhil.lab.errors import LabError

SAID = ("qemu-system-x86_64: DRM native context support was not enabled in virglrenderer\n"
        "qemu-system-x86_64: virgl could not be initialized: -1\n")


class Replay:
    """A machine whose QEMU prints ``late`` only after the first look at its stderr."""

    def __init__(self, late: str) -> None:
        self.late, self.looks = late, 0

    def qemu_stderr(self, since: int = 0) -> str:
        self.looks += 1
        return "" if self.looks <= 2 else self.late  # before modprobe, first poll: nothing yet

    def kmsg_mark(self, label: str) -> str:
        return label

    def kernel_log(self, since: str = "") -> list[str]:
        return ["[drm] pci: virtio-gpu-pci detected at 0000:00:02.0"]

    def run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(argv, 1 if argv[0] == "test" else 0)


def test_a_renderer_failure_seen_only_at_the_deadline_is_a_device_gap():
    with pytest.raises(DeviceInitError) as info:
        prepare_gpu(Replay(SAID), timeout=0)
    message = str(info.value)
    assert "seen when the 0 s device timeout expired" in message
    assert "DRM native context support was not enabled in virglrenderer" in message
    assert "virgl could not be initialized: -1" in message


def test_a_silent_timeout_is_an_infrastructure_error_quoting_qemu():
    with pytest.raises(LabError) as info:
        prepare_gpu(Replay("qemu-system-x86_64: warning: host doesn't support requested feature\n"),
                    timeout=0)
    assert not isinstance(info.value, DeviceInitError)
    message = str(info.value)
    assert message.startswith("/dev/dri/renderD128 did not appear within 0 s of modprobe virtio_gpu")
    assert "QEMU said: qemu-system-x86_64: warning: host doesn't support requested feature" in message
    assert "virtio-gpu-pci detected" in message
