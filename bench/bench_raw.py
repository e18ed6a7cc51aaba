"""Raw-path benchmark: commands per second and round-trip latency through gpuhil.raw.rawgpu over
its two transports, against the kernel's virtio_gpu ioctls on the same device:

- qtest: QEMU under ``-accel qtest`` on this host, the device driven from this process (the
  lab's ``qtest-venus`` configuration);
- VFIO: the device on vfio-pci in the lab's "raw" guest behind intel-iommu, then rebound to
  virtio-pci for the kernel path in the same boot.

Same operations on each: a capset query (GET_CAPSET_INFO + GET_CAPSET), a 4 KiB blob
create+unref, one GET_CAPSET_INFO per notify (median and p99; typed, and as bytes), 32 per notify, 128
GET_DISPLAY_INFO per notify as bytes (a 256-entry queue); and fuzzing
throughput with the oracle (``fuzz.long_batches``, the suite's at-scale campaign) on qtest.
Ratios: kernel time / raw time and VFIO time / qtest time (above 1: the second is faster).
``python -m bench.bench_raw --transport qtest`` skips the guest.  Caveats the report prints:
the kernel answers GET_CAPS from its capset cache after the first query (no device round trip),
and its blob create and GEM_CLOSE queue their commands without waiting for the response, while
every raw submission waits for its completion.
"""
from __future__ import annotations

import argparse
import sys
import time

from bench import Result
from bench import raw_payload
from bench.raw_payload import PathTimings

#: fuzzing throughput: batches of the at-scale campaign per measurement
FUZZ_BATCHES = 400


def _results(raw: PathTimings, kernel: PathTimings | None, qtest: PathTimings | None) -> list[Result]:
    out = []
    for label, r, k, q in (("capset query (info+get)", raw.capset, kernel and kernel.capset,
                            qtest and qtest.capset),
                           ("4 KiB blob create+unref", raw.blob, kernel and kernel.blob,
                            qtest and qtest.blob)):
        if k is not None:
            out.append(Result("raw", f"VFIO {label} median", r.median * 1e-9, k.median * 1e-9,
                              "kernel ioctl"))
        if q is not None:
            out.append(Result("raw", f"qtest {label} median", q.median * 1e-9, r.median * 1e-9,
                              "VFIO transport"))
    if qtest is not None and qtest.single_ns and raw.single_ns:
        out.append(Result("raw", "qtest one command median", qtest.single_ns[0] * 1e-9,
                          raw.single_ns[0] * 1e-9, "VFIO transport"))
        out.append(Result("raw", "qtest 32 per notify, per command",
                          qtest.batched_ns_per_command * 1e-9, raw.batched_ns_per_command * 1e-9,
                          "VFIO transport"))
        out.append(Result("raw", "qtest one command as bytes median",
                          qtest.bytes_single_ns[0] * 1e-9, raw.bytes_single_ns[0] * 1e-9,
                          "VFIO transport"))
        out.append(Result("raw", f"qtest {raw_payload.WIDE_QUEUE // 2} per notify as bytes",
                          qtest.wide_ns_per_command * 1e-9, raw.wide_ns_per_command * 1e-9,
                          "VFIO transport"))
    return out


def report(name: str, t: PathTimings) -> list[str]:
    """Latency per operation and device commands per second of one path."""
    lines = []
    for label, op, n in (("capset query", t.capset, t.capset_commands),
                         ("blob create+unref", t.blob, t.blob_commands)):
        lines.append(f"{name} {label}: {op.best / 1e3:.1f} us/op best, {op.median / 1e3:.1f} us "
                     f"median ({n * 1e9 / op.median:.0f} commands/s)")
    if t.single_ns:
        med, p99 = t.single_ns
        lines.append(f"{name} one GET_CAPSET_INFO per notify: median {med / 1e3:.1f} us, p99 "
                     f"{p99 / 1e3:.1f} us ({1e9 / med:.0f} commands/s; issue 12 target <= 50 us)")
    if t.bytes_single_ns:
        med, p99 = t.bytes_single_ns
        lines.append(f"{name} one GET_CAPSET_INFO per notify as bytes (transact, no typed "
                     f"encode/decode): median {med / 1e3:.1f} us, p99 {p99 / 1e3:.1f} us "
                     f"({1e9 / med:.0f} commands/s; target <= 50 us)")
    if t.batched_ns_per_command:
        lines.append(f"{name} {raw_payload.BATCH} per notify: {t.batched_ns_per_command / 1e3:.2f} "
                     f"us/command ({1e9 / t.batched_ns_per_command:.0f} commands/s; "
                     f"target >= 500,000/s)")
    if t.wide_ns_per_command:
        lines.append(f"{name} {raw_payload.WIDE_QUEUE // 2} GET_DISPLAY_INFO per notify as bytes: "
                     f"{t.wide_ns_per_command / 1e3:.2f} us/command "
                     f"({1e9 / t.wide_ns_per_command:.0f} commands/s; target >= 500,000/s)")
    return lines


def fuzz_rate(machine, per_notify: int, kept_open: bool, batches: int = FUZZ_BATCHES) -> float:
    """Commands per second of the suite's qtest campaign (hypothesis generation, the device,
    the oracle) on ``machine``'s device: ``per_notify`` requests per notify, one device kept
    open across batches or opened (reset) per batch."""
    from hypothesis import HealthCheck, Phase, given, settings

    from gpuhil.raw.rawgpu import RawGpu
    from suites.protocol import fuzz, fuzz_payload

    ids, ctxs, commands = list(fuzz.RESOURCE_IDS), list(fuzz.CONTEXT_IDS), [0]
    target = machine.raw_target()
    with RawGpu.open(target) as gpu, gpu.dma(fuzz_payload.BACKING_SIZE) as backing:
        @settings(max_examples=batches, deadline=None, derandomize=True, database=None,
                  phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
        @given(fuzz.long_batches)
        def run(requests: list[bytes]) -> None:
            if kept_open:
                result = fuzz_payload.fuzz_on(gpu, backing.iova, requests, ids, ctxs, per_notify)
            else:
                result = fuzz_payload.fuzz_batch(target, requests, ids, ctxs, per_notify)
            assert not fuzz.judge(requests, result), fuzz.describe(requests, result)
            commands[0] += len(requests)

        start = time.perf_counter()
        run()
        return commands[0] / (time.perf_counter() - start)


def _qtest(setup) -> tuple[PathTimings, dict[str, float]]:
    from gpuhil.lab.configurations import DEVICE_CONFIGURATIONS
    from gpuhil.lab.qtest_machine import QtestMachine

    with QtestMachine.from_spec(DEVICE_CONFIGURATIONS["qtest-venus"], setup=setup,
                                name="bench-raw") as machine:
        timings = machine.call(raw_payload.run_raw, machine.raw_target())
        rates = {f"{per} per notify, {'device kept open' if kept else 'opened per batch'}":
                 fuzz_rate(machine, per, kept)
                 for per, kept in ((32, True), (1, True), (1, False))}
    return timings, rates


def _vfio(setup) -> tuple[str, PathTimings, PathTimings]:
    from gpuhil.devices.pci_ids import VIRTIO_GPU
    from gpuhil.devices.vfio_binding import bind_vfio, restore_driver
    from gpuhil.lab.configurations import CONFIGURATIONS
    from gpuhil.lab.guest import Guest

    print("bench_raw: booting the lab's raw configuration (virtio-gpu-gl behind intel-iommu)",
          flush=True)
    with Guest(CONFIGURATIONS["raw"], setup=setup, boot_timeout=300) as guest:
        address, _group, original = guest.call(bind_vfio, *VIRTIO_GPU)
        raw = guest.call(raw_payload.run_raw, address)
        guest.call(restore_driver, address, original)
        node = guest.call(raw_payload.load_virtio_gpu)
        kernel = guest.call(raw_payload.run_kernel, node)
    return f"{address}, render node {node} after rebinding", raw, kernel


def main(argv: list[str] | None = None) -> list[Result]:
    """qtest first (no guest), then the VFIO guest and its kernel path; the ratios."""
    from gpuhil.lab.setup import LabSetup

    parser = argparse.ArgumentParser(prog="bench_raw")
    parser.add_argument("--transport", choices=("qtest", "vfio", "both"), default="both")
    args = parser.parse_args(argv or [])
    setup = LabSetup.default(progress=lambda line: print(f"  {line}", file=sys.stderr))
    qtest = vfio = kernel = None
    if args.transport in ("qtest", "both"):
        qtest, rates = _qtest(setup)
        print("\n".join(report("qtest", qtest)))
        for label, rate in rates.items():
            print(f"qtest fuzzing with the oracle, {label}: {rate:.0f} commands/s "
                  f"(target >= 10,000/s)")
    if args.transport in ("vfio", "both"):
        where, vfio, kernel = _vfio(setup)
        print(f"VFIO on {where}")
        print("\n".join(report("VFIO", vfio) + report("kernel", kernel)))
        print("note: the kernel serves GET_CAPS from its cache after the first query and does "
              "not wait for CREATE_BLOB/UNREF responses; raw waits for every response")
    return _results(vfio, kernel, qtest) if vfio is not None else []


if __name__ == "__main__":
    for result in main(sys.argv[1:]):
        print(result.line())
