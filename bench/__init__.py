"""gpuhil benchmarks: ratios against plain Python and against C, never timed tests.

Each ``bench/bench_<name>.py`` has ``main()`` returning ``list[Result]`` (or an exit code
when it prints its own report); ``python -m bench [name ...]`` runs them all (or the named
ones) and prints every ratio.  Timing helpers live here so the
benches measure the same way.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Result:
    """One measured comparison: ``ours`` vs ``baseline`` in seconds per operation.

    ``ratio`` is baseline / ours (how many times faster we are); ``target`` is the ratio the
    issue asks for (None: informative only).
    """
    bench: str
    name: str
    ours: float
    baseline: float
    baseline_name: str
    target: float | None = None

    @property
    def ratio(self) -> float:
        return self.baseline / self.ours if self.ours else float("inf")

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target

    def line(self) -> str:
        """One printable line: names, ns/op on both sides, ratio, target."""
        target = "" if self.target is None else (
            f"  target >= {self.target:g}x: {'met' if self.met else 'NOT met'}")
        return (f"{self.bench:10} {self.name:34} {self.ours * 1e9:10.1f} ns/op  vs "
                f"{self.baseline_name:22} {self.baseline * 1e9:10.1f} ns/op  "
                f"= {self.ratio:7.2f}x{target}")


def best_time(func: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of `repeat` wall-clock runs of func(), in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return best
