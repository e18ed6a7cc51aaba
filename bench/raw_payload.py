"""Raw-path benchmark payloads: run in a lab guest whose virtio-gpu sits behind a vIOMMU.

The same operations are timed through the raw virtqueue driver (:class:`gpuhil.raw.rawgpu.RawGpu`,
device bound to vfio-pci) and through the kernel driver (virtio_gpu, render node ioctls) on the
same device in the same boot: :func:`run_raw` first (the host binds the
function to vfio-pci), then :func:`load_virtio_gpu` / :func:`run_kernel` (back on virtio-pci).
Workloads:

- capset query: GET_CAPSET_INFO + GET_CAPSET (raw) vs DRM_IOCTL_VIRTGPU_GET_CAPS (kernel);
- blob create+unref: RESOURCE_CREATE_BLOB + RESOURCE_UNREF of a 4 KiB GUEST blob (raw) vs
  the RESOURCE_CREATE_BLOB ioctl + GEM_CLOSE (kernel).

Each is timed in ``rounds`` rounds of ``iterations`` operations; the fastest and the median
round are kept, in nanoseconds per operation.  Imports only the standard library and gpuhil.
"""
from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import dataclass
from typing import Callable

from gpuhil import protocol as P

BLOB_SIZE = 4096
BENCH_RID = 0x700
#: commands per batch (a 64-entry control queue holds 32 two-descriptor chains)
BATCH = 32
#: the widest control queue QEMU's virtio-gpu takes: 128 commands per notify
WIDE_QUEUE = 256


@dataclass(frozen=True)
class OpTiming:
    """Nanoseconds per operation: fastest and median round."""

    best: float
    median: float


@dataclass(frozen=True)
class PathTimings:
    """One path's timings; ``commands`` is virtio commands per operation."""

    path: str
    capset: OpTiming
    blob: OpTiming
    capset_commands: int
    blob_commands: int
    batched_ns_per_command: float | None = None  # raw only: a batch of BATCH commands
    #: raw only: one GET_CAPSET_INFO per notify, each timed alone: (median, p99) in ns
    single_ns: tuple[float, float] | None = None
    #: raw only: the same, as encoded bytes through ``transact`` (no typed encode/decode)
    bytes_single_ns: tuple[float, float] | None = None
    #: raw only: GET_DISPLAY_INFO as bytes, WIDE_QUEUE // 2 per notify, ns per command
    wide_ns_per_command: float | None = None


def _rounds(op: Callable[[], None], iterations: int, rounds: int) -> OpTiming:
    op()  # warm-up (first virgl command initialises the renderer)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(iterations):
            op()
        samples.append((time.perf_counter_ns() - start) / iterations)
    return OpTiming(min(samples), statistics.median(samples))


# ---- the kernel driver ------------------------------------------------------------------------

def load_virtio_gpu(timeout: float = 60.0) -> str:
    """modprobe virtio_gpu (the function is back on virtio-pci) and wait for the render node;
    its path."""
    from gpuhil.devices.virtgpu import find_render_nodes

    subprocess.run(["modprobe", "virtio_gpu"], check=True, capture_output=True, timeout=timeout)
    deadline = time.monotonic() + timeout
    while not find_render_nodes():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no virtio_gpu render node within {timeout:g} s")
        time.sleep(0.05)
    return str(find_render_nodes()[0])


# ---- the two paths ----------------------------------------------------------------------------

def _single(op: Callable[[], object], n: int) -> tuple[float, float]:
    """(median, p99) in ns of ``op`` timed one call at a time."""
    clock, samples = time.perf_counter_ns, []
    for _ in range(n):
        start = clock()
        op()
        samples.append(clock() - start)
    samples.sort()
    return statistics.median(samples), samples[min(n - 1, int(n * 0.99))]


def run_raw(address: "str | object", iterations: int = 200, rounds: int = 5) -> PathTimings:
    """Time both workloads through RawGpu (a PCI address on VFIO, or a qtest machine's
    ``raw_target()``), one GET_CAPSET_INFO at a time and a batch of BATCH of them."""
    from gpuhil.raw.rawgpu import RawGpu

    with RawGpu.open(address) as gpu, gpu.dma(BLOB_SIZE) as backing:
        submit = gpu.submit
        info = submit(P.GetCapsetInfo(0))
        get_info, get_caps = P.GetCapsetInfo(0), P.GetCapset(info.capset_id,
                                                             info.capset_max_version)

        def capset() -> None:
            submit(get_info)
            submit(get_caps)

        create = P.ResourceCreateBlob(BENCH_RID, P.BlobMem.GUEST, 0, 0, BLOB_SIZE,
                                      (P.MemEntry(backing.iova, BLOB_SIZE),))
        unref = P.ResourceUnref(BENCH_RID)

        def blob() -> None:
            submit(create)
            submit(unref)

        capset_t = _rounds(capset, iterations, rounds)
        blob_t = _rounds(blob, iterations, rounds)
        batch = [get_info] * BATCH
        batch_t = _rounds(lambda: gpu.submit_batch(batch), max(1, iterations // 20), rounds)
        single = _single(lambda: submit(get_info), iterations * rounds)
        info_bytes, info_size = [P.encode(get_info)], [gpu.response_size(get_info)]
        bytes_single = _single(lambda: gpu.transact(info_bytes, info_size), iterations * rounds)
    with RawGpu.open(address, queue_size=WIDE_QUEUE) as gpu:
        display = P.GetDisplayInfo()
        wide = [P.encode(display)] * (WIDE_QUEUE // 2)
        sizes = [gpu.response_size(display)] * len(wide)
        wide_t = _rounds(lambda: gpu.transact(wide, sizes), max(1, iterations // 20), rounds)
    return PathTimings("raw", capset_t, blob_t, 2, 2, batch_t.best / len(batch), single,
                       bytes_single, wide_t.best / len(wide))


def run_kernel(node_path: str, iterations: int = 200, rounds: int = 5) -> PathTimings:
    """Time both workloads through the render node (virtio_gpu)."""
    from gpuhil.devices.virtgpu import BlobMem, RenderNode

    with RenderNode(node_path) as node:
        capsets = node.supported_capsets()
        capset_id = int(capsets[0])
        get_caps = node.get_caps

        def capset() -> None:
            get_caps(capset_id, 0, 512)

        create = node.create_blob

        def blob() -> None:
            create(BlobMem.GUEST, BLOB_SIZE).close()

        capset_t = _rounds(capset, iterations, rounds)
        blob_t = _rounds(blob, iterations, rounds)
    return PathTimings("kernel", capset_t, blob_t, 1, 2)

