"""Lab benchmarks: warm boot-to-agent-ready under the chosen accelerator, and the agent round trip.

Printed as numbers and as ratios to the targets of issue 3 (boot <= 3 s under TCG, round trip
<= 1 ms median).  Run: ``python -m bench.bench_lab [--boots N] [--calls N]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Sequence

BOOT_TARGET_S = 3.0
ROUND_TRIP_TARGET_MS = 1.0


def _load() -> float:
    return os.getloadavg()[0]


def bench_boot(setup, boots: int) -> list[float]:
    """Seconds from QEMU spawn to the agent's handshake answer, one per fresh guest."""
    from gpuhil.lab.guest import Guest
    from gpuhil.lab.spec import GuestSpec

    times = []
    for _ in range(boots):
        with Guest(GuestSpec(), setup=setup, name="bench") as guest:
            assert guest.boot_seconds is not None
            times.append(guest.boot_seconds)
    return times


def bench_round_trip(setup, calls: int) -> list[float]:
    """Milliseconds per agent call of a trivial function (os.getpid), after a warm-up."""
    from gpuhil.lab.guest import Guest
    from gpuhil.lab.spec import GuestSpec

    with Guest(GuestSpec(), setup=setup, name="bench-rt") as guest:
        for _ in range(20):
            guest.call(os.getpid)
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            guest.call(os.getpid)
            samples.append((time.perf_counter() - start) * 1e3)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    """Run the lab benchmarks and print the results."""
    parser = argparse.ArgumentParser(prog="bench_lab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args(list(argv) if argv is not None else [])

    from gpuhil.lab.setup import LabSetup

    start = time.monotonic()
    setup = LabSetup.default(progress=lambda line: print(f"  {line}", file=sys.stderr))
    print(f"lab assets ready in {time.monotonic() - start:.2f} s (warm: no build)")
    load_before = _load()
    boots = bench_boot(setup, args.boots)
    median_boot = statistics.median(boots)
    print(f"boot-to-agent-ready: median {median_boot:.2f} s, min {min(boots):.2f} s, "
          f"max {max(boots):.2f} s (n={len(boots)}; host load {load_before:.1f} -> {_load():.1f})"
          f"  ratio to the {BOOT_TARGET_S:g} s target: {median_boot / BOOT_TARGET_S:.2f}")
    samples = bench_round_trip(setup, args.calls)
    median_rt = statistics.median(samples)
    p90 = statistics.quantiles(samples, n=10)[-1]
    print(f"agent round trip: median {median_rt:.3f} ms, p90 {p90:.3f} ms (n={len(samples)})"
          f"  ratio to the {ROUND_TRIP_TARGET_MS:g} ms target: {median_rt / ROUND_TRIP_TARGET_MS:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
