"""Taking the capability snapshot of a booted lab guest: one sequence, used by the pytest
plugin's guest pool and by ``gpuhil capabilities --guest``.

Host side (it asks the machine over ``call`` and QMP); the probes themselves run where the
device is.
"""
from __future__ import annotations

from typing import Any

from gpuhil.gating.capabilities import Capabilities, probe_machine, qemu_properties

__all__ = ["snapshot"]


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
