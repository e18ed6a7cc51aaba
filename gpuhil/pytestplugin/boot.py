"""Bringing up a pool slot's machine: a lab guest booted (its render node prepared), or a
device-tier QEMU under qtest started (its bus enumerated by gpuhil), and the configuration's
capability snapshot the first time."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuhil.bringup import prepare_gpu
from gpuhil.gating.capabilities import Capabilities, DeviceInitError
from gpuhil.gating.snapshot import device_snapshot, snapshot
from gpuhil.lab.configurations import is_raw_spec
from gpuhil.lab.qtest_spec import QtestSpec
from gpuhil.pytestplugin.options import Settings

__all__ = ["boot_slot"]


def boot_slot(slot: Any, setup: Any, settings: Settings, log_dir: Path,
              name: str) -> Capabilities | None:
    """Start ``slot``'s machine (``slot.machine``, ``slot.render_node`` set); its snapshot when
    the slot has none yet.  LabError subclasses propagate (infrastructure errors); a GPU
    property the QEMU lacks is a MissingQemuFeature (a capability, not a crash)."""
    spec = slot.spec
    if spec.gpu is not None:
        setup.check_device(spec.gpu.model.value, spec.gpu.properties())
    if isinstance(spec, QtestSpec):
        return _start_qtest(slot, setup, settings, log_dir, name)
    from gpuhil.lab.guest import Guest

    guest = Guest(spec, setup=setup, boot_timeout=settings.boot_timeout, log_dir=log_dir,
                  name=name)
    guest.start()
    slot.machine = guest
    slot.render_node = None
    device_error: str | None = None
    if spec.gpu is not None and not is_raw_spec(spec):
        try:
            slot.render_node = prepare_gpu(guest, settings.device_timeout)
        except DeviceInitError as exc:
            device_error = str(exc)
    if slot.capabilities is not None:
        return None
    vfio = spec.iommu is not None and bool(spec.devices)
    return snapshot(guest, slot.label, render_node=slot.render_node, vfio=vfio,
                    raw=is_raw_spec(spec), device_error=device_error)


def _start_qtest(slot: Any, setup: Any, settings: Settings, log_dir: Path,
                 name: str) -> Capabilities | None:
    from gpuhil.lab.qtest_machine import QtestMachine

    machine = QtestMachine.from_spec(slot.spec, setup=setup, name=name, log_dir=log_dir,
                                     start_timeout=settings.boot_timeout)
    machine.start()
    slot.machine = machine
    slot.render_node = None
    machine.raw_target()  # enumerate the bus and assign the BARs now: a LabError if no GPU
    return None if slot.capabilities is not None else device_snapshot(machine, slot.label)
