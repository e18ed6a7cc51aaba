"""Ioctl-path benchmark payload: runs where the virtio-gpu render node is (a lab guest).

Three implementations of the same work are timed per operation:

- ``gpuhil``: gpuhil.devices.virtgpu.RenderNode;
- ``c``: bench/c/ioctl_ref.c (built with gcc/cc here, or a prebuilt static
  ``bench/out/ioctl_ref``);
- ``fcntl``: ``fcntl.ioctl`` + ``struct`` + ``ctypes``/``mmap`` as plain Python would.

Workloads: GETPARAM in a tight loop, and a 64 KiB GUEST blob create + MAP + mmap + touch +
munmap + GEM_CLOSE cycle.  Call :func:`run` (e.g. ``gl_guest.call(run)``); it returns an
:class:`IoctlBench`.  Imports only the standard library and gpuhil.
"""
from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import shutil
import statistics
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from gpuhil.devices.virtgpu import BlobFlag, BlobMem, Param, RenderNode

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "bench" / "c" / "ioctl_ref.c"
PREBUILT = ROOT / "bench" / "out" / "ioctl_ref"
BLOB_SIZE = 64 * 1024


@dataclass(frozen=True)
class Timing:
    """Nanoseconds per operation of each implementation: the fastest round (``*``, robust
    against a busy host) and the median round (``*_median``).  ``c`` is None without a C
    reference."""

    gpuhil: float
    c: float | None
    fcntl: float
    gpuhil_median: float
    c_median: float | None
    fcntl_median: float

    @property
    def gpuhil_vs_c(self) -> float | None:
        """gpuhil time / C time (target: <= 1.2)."""
        return None if not self.c else self.gpuhil / self.c

    @property
    def fcntl_vs_gpuhil(self) -> float:
        """fcntl+struct time / gpuhil time (target for GETPARAM: >= 2)."""
        return self.fcntl / self.gpuhil


@dataclass(frozen=True)
class IoctlBench:
    """Result of :func:`run`."""

    node: str
    getparam: Timing
    blob_cycle: Timing
    getparam_iterations: int
    blob_iterations: int
    rounds: int
    c_binary: str | None

    def report(self) -> str:
        """Human-readable lines with the ratios and their targets."""
        lines = []
        for label, t, fcntl_target in (("GETPARAM", self.getparam, 2.0),
                                       ("64 KiB GUEST blob cycle", self.blob_cycle, None)):
            c = f"{t.c:.0f}" if t.c else "n/a"
            ratio_c = f"{t.gpuhil_vs_c:.2f}x" if t.gpuhil_vs_c else "n/a"
            line = (f"{label}: gpuhil {t.gpuhil:.0f} ns/op, C {c} ns/op, fcntl+struct "
                    f"{t.fcntl:.0f} ns/op (fastest of {self.rounds} rounds); gpuhil/C {ratio_c} "
                    f"(target <= 1.2), fcntl/gpuhil {t.fcntl_vs_gpuhil:.2f}x")
            if fcntl_target:
                line += f" (target >= {fcntl_target:g})"
            lines.append(line)
        return "\n".join(lines)


# ---- reference C program ----------------------------------------------------------------------


def build_reference(out: Path, static: bool = False) -> Path | None:
    """Compile ioctl_ref.c to ``out`` with gcc/cc; None when no compiler is installed."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [compiler, "-O2", "-Wall", "-I", str(ROOT / "_ext" / "include"), "-o", str(out),
           str(SOURCE)]
    if static:
        cmd.insert(1, "-static")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def _reference_binary(workdir: Path) -> Path | None:
    built = build_reference(workdir / "ioctl_ref")
    if built is not None:
        return built
    return PREBUILT if PREBUILT.exists() and os.access(PREBUILT, os.X_OK) else None


def _run_c(binary: Path, bench: str, iterations: int, node: str, extra: str) -> float:
    result = subprocess.run([str(binary), bench, str(iterations), node, extra], check=True,
                            capture_output=True, text=True)
    return float(result.stdout.strip().split("=", 1)[1])


# ---- Python implementations --------------------------------------------------------------------


def _gpuhil_getparam(node: RenderNode, iterations: int) -> float:
    getparam = node.getparam
    param = int(Param.FEATURES_3D)
    start = time.perf_counter_ns()
    for _ in range(iterations):
        getparam(param)
    return (time.perf_counter_ns() - start) / iterations


def _iowr(nr: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (ord("d") << 8) | nr


def _fcntl_getparam(fd: int, iterations: int) -> float:
    request = _iowr(0x43, 16)
    value = ctypes.c_int(0)
    address = ctypes.addressof(value)
    buf = bytearray(16)
    pack_into = struct.Struct("<QQ").pack_into
    ioctl = fcntl.ioctl
    param = int(Param.FEATURES_3D)
    start = time.perf_counter_ns()
    for _ in range(iterations):
        pack_into(buf, 0, param, address)
        ioctl(fd, request, buf, True)
        value.value
    return (time.perf_counter_ns() - start) / iterations


def _gpuhil_blob_cycle(node: RenderNode, iterations: int, size: int) -> float:
    create = node.create_blob
    one = b"\1"
    start = time.perf_counter_ns()
    for _ in range(iterations):
        blob = create(BlobMem.GUEST, size, BlobFlag.MAPPABLE)
        mapping = blob.mmap()
        mapping.write(one, 0)
        mapping.close()
        blob.close()
    return (time.perf_counter_ns() - start) / iterations


def _fcntl_blob_cycle(fd: int, iterations: int, size: int) -> float:
    create_req, map_req = _iowr(0x4A, 56), _iowr(0x41, 16)
    close_req = (1 << 30) | (8 << 16) | (ord("d") << 8) | 0x09
    blob_struct = struct.Struct("<IIIIQIIQQII")
    map_struct = struct.Struct("<QII")
    blob_buf, map_buf = bytearray(56), bytearray(16)
    ioctl = fcntl.ioctl
    start = time.perf_counter_ns()
    for _ in range(iterations):
        blob_struct.pack_into(blob_buf, 0, 1, 1, 0, 0, size, 0, 0, 0, 0, 0, 0)
        ioctl(fd, create_req, blob_buf, True)
        handle = blob_struct.unpack_from(blob_buf)[2]
        map_struct.pack_into(map_buf, 0, 0, handle, 0)
        ioctl(fd, map_req, map_buf, True)
        offset = map_struct.unpack_from(map_buf)[0]
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        m[0] = 1
        m.close()
        ioctl(fd, close_req, struct.pack("<II", handle, 0))
    return (time.perf_counter_ns() - start) / iterations


# ---- entry point -------------------------------------------------------------------------------


def _timing(samples: dict[str, list[float]]) -> Timing:
    def best(key: str) -> float | None:
        return min(samples[key]) if samples[key] else None

    def median(key: str) -> float | None:
        return statistics.median(samples[key]) if samples[key] else None

    return Timing(best("gpuhil"), best("c"), best("fcntl"),
                  median("gpuhil"), median("c"), median("fcntl"))


def run(getparam_iterations: int = 10_000, blob_iterations: int = 40, rounds: int = 8,
        sets: int = 3, node_path: str | None = None) -> IoctlBench:
    """Time the three implementations: ``sets`` times, each implementation runs ``rounds``
    consecutive rounds of ``*_iterations`` operations (GETPARAM first, then the blob cycle;
    one warm-up round each).  Per implementation the fastest and the median round are kept."""
    getparam: dict[str, list[float]] = {"gpuhil": [], "c": [], "fcntl": []}
    blob: dict[str, list[float]] = {"gpuhil": [], "c": [], "fcntl": []}
    param = str(int(Param.FEATURES_3D))
    with RenderNode.open(node_path) as node, tempfile.TemporaryDirectory() as tmp:
        path = node.path
        binary = _reference_binary(Path(tmp))
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            workloads = (
                (getparam, {
                    "gpuhil": lambda: _gpuhil_getparam(node, getparam_iterations),
                    "fcntl": lambda: _fcntl_getparam(fd, getparam_iterations),
                    "c": lambda: _run_c(binary, "getparam", getparam_iterations, path, param),
                }),
                (blob, {
                    "gpuhil": lambda: _gpuhil_blob_cycle(node, blob_iterations, BLOB_SIZE),
                    "fcntl": lambda: _fcntl_blob_cycle(fd, blob_iterations, BLOB_SIZE),
                    "c": lambda: _run_c(binary, "blob", blob_iterations, path, str(BLOB_SIZE)),
                }),
            )
            for samples, implementations in workloads:
                for _ in range(sets):
                    for name, measure in implementations.items():
                        if name == "c" and binary is None:
                            continue
                        measure()
                        samples[name].extend(measure() for _ in range(rounds))
        finally:
            os.close(fd)
    return IoctlBench(
        node=path,
        getparam=_timing(getparam),
        blob_cycle=_timing(blob),
        getparam_iterations=getparam_iterations,
        blob_iterations=blob_iterations,
        rounds=rounds * sets,
        c_binary=str(binary) if binary else None,
    )


def run_when_ready(timeout: float = 30.0) -> IoctlBench:
    """:func:`run` once a virtio_gpu render node has appeared (after ``modprobe virtio_gpu``)."""
    deadline = time.monotonic() + timeout
    from gpuhil.devices.virtgpu import find_render_nodes

    while not find_render_nodes():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no virtio_gpu render node within {timeout:g} s")
        time.sleep(0.05)
    return run()
