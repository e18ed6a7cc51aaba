"""How soon the drm-native-context gap is seen: seconds from ``modprobe virtio_gpu`` to
prepare_gpu's DeviceInitError on a host whose virglrenderer lacks DRM native context (the guest
itself would wait for capsets until its own timeout).  Times live here, not in a test's verdict:
tests/test_plugin_lab.py only checks that the early path (QEMU's words) reported it.

Run: ``python -m bench.bench_drm_gap [--runs N]``.  Prints the host load with each number.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Sequence


def detection_seconds(setup, runs: int) -> list[float]:
    """One fresh drm guest per run; seconds until the gap was reported (the guest's boot excluded)."""
    from gpuhil.bringup import prepare_gpu
    from gpuhil.gating.capabilities import DeviceInitError
    from gpuhil.lab.configurations import CONFIGURATIONS
    from gpuhil.lab.guest import Guest

    times = []
    for _ in range(runs):
        with Guest(CONFIGURATIONS["drm"], setup=setup, name="bench-drm-gap") as guest:
            started = time.monotonic()
            try:
                prepare_gpu(guest, timeout=600)
            except DeviceInitError:
                times.append(time.monotonic() - started)
            else:
                print("  this host's virglrenderer has DRM native context: no gap to detect")
                return []
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_drm_gap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(list(argv) if argv is not None else [])

    from gpuhil.lab.setup import LabSetup

    setup = LabSetup.default(progress=lambda line: print(f"  {line}", file=sys.stderr))
    load_before = os.getloadavg()[0]
    times = detection_seconds(setup, args.runs)
    if times:
        print(f"drm native context gap seen after: median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s (n={len(times)}; host load {load_before:.1f} -> "
              f"{os.getloadavg()[0]:.1f}; the device timeout it stands in for: 120 s by default)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
