"""Taking the capability snapshot of a booted lab guest: one sequence, used by the pytest
plugin's guest pool and by ``gpuhil capabilities --guest``.

Host side (it asks the machine over ``call`` and QMP); the probes themselves run where the
device is.
"""
from __future__ import annotations

from typing import Any

from gpuhil.gating.capabilities import Capabilities, GuestProbe, probe_machine, qemu_properties

__all__ = ["NO_GUEST_KERNEL", "device_snapshot", "snapshot"]

#: ``kernel.guest`` of a device-tier machine: there is no guest
NO_GUEST_KERNEL = "none (qtest: no guest)"


def snapshot(machine: Any, label: str, *, render_node: str | None = None, vfio: bool = False,
             raw: bool = False, device_error: str | None = None) -> Capabilities:
    """The :class:`Capabilities` of configuration ``label`` booted as ``machine``:
    :func:`probe_machine` in it (the render node if there is one, VFIO DMA_BUF when ``vfio``),
    the GPU's QOM properties over QMP, and on a ``raw`` configuration the raw driver's probe
    (:func:`gpuhil.raw.probe.probe_raw_gpu`: the ``raw.*`` names)."""
    from gpuhil.raw.probe import probe_raw_gpu

    probe = machine.call(probe_machine, render_node, gpu=render_node is not None, vfio=vfio)
    qemu_type, props = qemu_properties(machine.qmp)
    raw_probe = machine.call(probe_raw_gpu) if raw else None
    return Capabilities(label, probe, qemu_device=qemu_type, qemu=props,
                        device_error=device_error, raw=raw_probe)


def device_snapshot(machine: Any, label: str) -> Capabilities:
    """The :class:`Capabilities` of a device-tier machine (QEMU under qtest, no guest): the
    GPU's QOM properties and trace events over QMP, and the raw driver's probe of the device
    itself (features, config, hostmem, capsets: the ``raw.*`` names), from this process."""
    from gpuhil.raw.probe import probe_raw_target

    qemu_type, props = qemu_properties(machine.qmp)
    return Capabilities(label, GuestProbe(kernel=NO_GUEST_KERNEL), qemu_device=qemu_type,
                        qemu=props, raw=probe_raw_target(machine.raw_target()))
