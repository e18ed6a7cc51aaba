"""What QEMU printed about the raw path: VT-d faults and the virgl command errors.

A DMA fault is not reported to the driver (the device completes the request anyway), and the
virgl path prints every command it failed, so a test slices QEMU's stderr around its device
work (:class:`gpuhil.machine.StderrSlice`) and reads both from it with :func:`parse`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["QemuLog", "parse"]

_VTD = re.compile(r"^.*\bvtd_\w+: .*$", re.MULTILINE)
_CMD_ERROR = re.compile(
    r"virtio_gpu_virgl_process_cmd: ctrl (0x[0-9a-fA-F]+), error (0x[0-9a-fA-F]+)")


@dataclass(frozen=True)
class QemuLog:
    """The raw-path lines of one stderr slice."""

    vtd_faults: tuple[str, ...]
    cmd_errors: tuple[tuple[int, int], ...]  # (command type, response type)

    def summary(self) -> str:
        """One line per finding, for assertion messages and the report."""
        lines = [f"vtd: {line.strip()}" for line in self.vtd_faults]
        lines += [f"virgl: ctrl {ctrl:#x} -> {err:#x}" for ctrl, err in self.cmd_errors]
        return "\n".join(lines) or "(no vtd_ faults, no virgl command errors)"


def parse(text: str) -> QemuLog:
    """The VT-d fault lines and the (command, error) pairs of virtio_gpu_virgl_process_cmd."""
    return QemuLog(tuple(_VTD.findall(text)),
                   tuple((int(c, 16), int(e, 16)) for c, e in _CMD_ERROR.findall(text)))
