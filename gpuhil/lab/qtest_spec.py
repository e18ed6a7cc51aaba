"""The typed description of a device-tier machine (QEMU under ``-accel qtest``, no guest) and
its translation into QEMU's argv: pure, like :mod:`gpuhil.lab.spec` for guests.

:class:`QtestSpec` says which GPU the bare q35 gets, how much guest RAM (a shared
``memory-backend-file`` gpuhil maps too) and on which render node it renders; :func:`qtest_argv`
turns it and a :class:`~gpuhil.lab.spec.Placement` into the command line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from gpuhil.lab.spec import (LOG_ARGS, Channels, Display, GpuSpec, Placement, SpecError,
                             data_dir_args, qmp_args)

__all__ = ["QTEST_RAM", "QTEST_SOCKET", "QtestSpec", "qtest_argv"]

#: the qtest socket and the RAM file in the run directory
QTEST_SOCKET, QTEST_RAM = "qtest.sock", "ram"


@dataclass(frozen=True)
class QtestSpec:
    """A QEMU with ``gpu`` on a bare q35 under qtest, ``ram_mib`` of shared guest RAM."""

    gpu: GpuSpec | None = None
    ram_mib: int = 256
    display: Display = Display()
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 16 <= self.ram_mib <= 2048:  # q35 puts at most 2 GiB below 4 GiB: RAM = offset
            raise SpecError(f"ram_mib must be 16..2048 (guest RAM below 4 GiB), not {self.ram_mib}")

    @property
    def memory_mib(self) -> int:
        """The guest RAM (what the pool checks MemAvailable against)."""
        return self.ram_mib


def qtest_argv(where: Placement, channels: Channels, *, gpu: GpuSpec | None, ram_mib: int,
               display: Display, extra_args: Sequence[str] = ()) -> list[str]:
    """QEMU's command line: bare q35 under qtest, RAM in the run directory's file, the GPU;
    :data:`~gpuhil.lab.spec.LOG_ARGS` so QEMU's complaints about the driver reach its stderr."""
    run = where.run_dir.rstrip("/")
    argv = [
        where.qemu, "-nodefaults", "-no-user-config",
        "-machine", "q35,accel=qtest,memory-backend=mem",
        "-qtest", f"unix:{run}/{QTEST_SOCKET}", "-qtest-log", "/dev/null",
        "-object", f"memory-backend-file,id=mem,size={ram_mib}M,mem-path={run}/{QTEST_RAM},"
                   "share=on",
        "-m", f"{ram_mib}M", *data_dir_args(where), *qmp_args(channels, where),
        "-monitor", "none", *LOG_ARGS,
    ]
    if gpu is not None and gpu.needs_gl:
        argv += ["-display", f"egl-headless,rendernode={display.rendernode}"]
    else:
        argv += ["-display", "none"]
    if gpu is not None:
        argv += ["-device", gpu.device_arg()]
    return argv + list(extra_args)
