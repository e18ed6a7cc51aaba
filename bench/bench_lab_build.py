"""Lab asset build benchmark: a cold build of the sid tree + boot files into a throwaway cache,
the time to remake the initramfs and vmlinux, and the cost of a warm ``ensure_assets``
(in-process and as a fresh interpreter), with the warm/cold ratio.

    python bench/bench_lab_build.py              # cold (~1.5-2 min, network) + warm
    python bench/bench_lab_build.py --warm-only
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gpuhil.lab import bootfiles
from gpuhil.lab.assets import LabAssets, ensure_assets
from gpuhil.lab.cache import cache_dir, remove_tree


def _tree_size(root: Path) -> tuple[int, int]:
    """(bytes on disk, files) of a tree, like du -s and find | wc -l."""
    du = subprocess.run(["du", "-sxB1", str(root)], capture_output=True, text=True, check=True)
    files = subprocess.run(["find", str(root), "-xdev", "-type", "f"], capture_output=True,
                           check=True).stdout.count(b"\n")
    return int(du.stdout.split()[0]), files


def bench_cold(keep: bool = False) -> tuple[float, LabAssets, Path]:
    """Build everything into a new temporary cache; returns (seconds, assets, cache dir)."""
    base = cache_dir().parent if cache_dir().parent.exists() else Path(tempfile.gettempdir())
    tmp = Path(tempfile.mkdtemp(prefix="gpuhil-bench-cache-", dir=base))
    start = time.monotonic()

    def progress(line: str) -> None:
        if not line.startswith((" ", "Get:", "Selecting", "Preparing", "Unpacking", "Setting up")):
            print(f"  {time.monotonic() - start:6.1f}s {line}", flush=True)

    assets = ensure_assets(tmp, progress=progress)
    return time.monotonic() - start, assets, tmp


def bench_warm(repeat: int = 20) -> tuple[float, float]:
    """(median in-process seconds, median fresh-interpreter seconds) of a warm ensure_assets."""
    ensure_assets()
    inproc = []
    for _ in range(repeat):
        t = time.perf_counter()
        ensure_assets()
        inproc.append(time.perf_counter() - t)
    fresh = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "from gpuhil.lab.assets import ensure_assets; ensure_assets()"],
                       check=True)
        fresh.append(time.perf_counter() - t)
    return statistics.median(inproc), statistics.median(fresh)


def bench_bootfiles(assets: LabAssets, repeat: int = 5) -> tuple[float, float]:
    """(median seconds to build the initramfs, seconds to extract vmlinux) from the warm tree."""
    init = bootfiles.INIT_SCRIPT.read_bytes()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        bootfiles.build_initramfs(assets.root, assets.kernel_release, init)
        times.append(time.perf_counter() - t)
    image = (assets.root / "boot" / f"vmlinuz-{assets.kernel_release}").read_bytes()
    t = time.perf_counter()
    bootfiles.extract_vmlinux(image)
    return statistics.median(times), time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-only", action="store_true", help="skip the cold build")
    parser.add_argument("--keep", action="store_true", help="keep the cold build's cache dir")
    args = parser.parse_args(argv if argv is not None else [])
    cold = None
    if not args.warm_only:
        if os.geteuid() != 0:
            print("cold build needs root (mmdebstrap --mode=root)", file=sys.stderr)
            return 2
        print("cold build into a temporary cache:")
        cold, assets, tmp = bench_cold()
        size, files = _tree_size(assets.root)
        print(f"cold build: {cold:.1f} s; tree {size / 1e6:.0f} MB, {files} files; "
              f"vmlinux {assets.kernel.stat().st_size / 1e6:.1f} MB, "
              f"initramfs {assets.initramfs.stat().st_size / 1e6:.1f} MB; {assets.manifest.summary()}")
        if not args.keep:
            remove_tree(tmp)
        else:
            print(f"kept {tmp}")
    initramfs_s, vmlinux_s = bench_bootfiles(ensure_assets())
    print(f"boot files from the warm tree: initramfs {initramfs_s * 1e3:.0f} ms (median of 5), "
          f"vmlinux extraction {vmlinux_s:.2f} s")
    inproc, fresh = bench_warm()
    print(f"warm ensure_assets: {inproc * 1e3:.2f} ms in-process (median of 20), "
          f"{fresh * 1e3:.0f} ms as a fresh python (median of 5, interpreter start included)")
    if cold is not None:
        print(f"warm/cold ratio: 1/{cold / inproc:,.0f} in-process, 1/{cold / fresh:,.0f} fresh")
    return 0


if __name__ == "__main__":
    sys.exit(main())
