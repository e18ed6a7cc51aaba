"""GPU bring-up on a machine: load ``virtio_gpu`` and wait for its render node, once.

:func:`prepare_gpu` is the one copy: the lab plugin's guest pool, the CLI, the lab's own test
fixtures and the suites that reboot a guest all call it.  It works on the
:class:`~gpuhil.machine.Machine` protocol (``run``, ``kmsg_mark``, ``kernel_log``,
``qemu_stderr``).
"""
from __future__ import annotations

import time

from gpuhil.gating.capabilities import DeviceInitError, device_init_failure
from gpuhil.lab.errors import LabError
from gpuhil.machine import Machine

__all__ = ["RENDER_NODE", "prepare_gpu"]

#: The render node of the lab's (only) virtio-gpu.
RENDER_NODE = "/dev/dri/renderD128"


def _gpu_name(machine: Machine) -> str:
    gpu = getattr(getattr(machine, "spec", None), "gpu", None)
    return gpu.device_arg() if gpu is not None else "virtio-gpu"


def prepare_gpu(machine: Machine, timeout: float, node: str = RENDER_NODE) -> str:
    """Load virtio_gpu on ``machine`` and wait for ``node``; its path.

    Raises DeviceInitError within about a second when QEMU says the renderer could not
    initialize (the guest would wait for capsets forever), LabError when the node does not
    appear within ``timeout``."""
    qemu_before = len(machine.qemu_stderr())
    started = time.monotonic()
    marker = machine.kmsg_mark("gpuhil: loading virtio_gpu")
    machine.run(["sh", "-c", "modprobe virtio_gpu </dev/null >/dev/null 2>&1 &"], check=True)
    deadline = time.monotonic() + timeout
    while True:
        failure = device_init_failure(machine.qemu_stderr(qemu_before))
        if failure:
            time.sleep(0.5)  # let the guest's side of the story reach the log
            failure = device_init_failure(machine.qemu_stderr(qemu_before),
                                          machine.kernel_log(marker))
            raise DeviceInitError(f"the GPU ({_gpu_name(machine)}) could not initialize its "
                                  f"renderer on this host (seen {time.monotonic() - started:.1f} s "
                                  f"after loading virtio_gpu)", failure)
        if machine.run(["test", "-e", node]).returncode == 0:
            late = device_init_failure("", machine.kernel_log(marker))
            if late:
                raise DeviceInitError("the guest driver timed out waiting for capsets", late)
            return node
        if time.monotonic() >= deadline:
            raise _timed_out(machine, node, timeout, qemu_before, marker)
        time.sleep(0.1)


def _timed_out(machine: Machine, node: str, timeout: float, qemu_before: int,
               marker: str) -> LabError:
    """The error for a render node that did not appear: classified from what QEMU and the guest
    said by now (a slow machine can reach the deadline before QEMU's stderr was read)."""
    qemu_said = machine.qemu_stderr(qemu_before)
    guest_log = machine.kernel_log(marker)
    failure = device_init_failure(qemu_said, guest_log)
    if failure:
        return DeviceInitError(f"the GPU ({_gpu_name(machine)}) could not initialize its renderer "
                               f"on this host (seen when the {timeout:g} s device timeout "
                               f"expired)", failure)
    said = [line for line in qemu_said.splitlines() if line.strip()][-10:]
    return LabError(f"{node} did not appear within {timeout:g} s of modprobe virtio_gpu; QEMU "
                    f"said: " + ("\n".join(said) if said else "nothing") + "\nguest log:\n"
                    + "\n".join(guest_log[-20:]))
