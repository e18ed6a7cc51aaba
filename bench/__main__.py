"""Run every bench/bench_*.py (or those named on the command line) and print the ratios."""
from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from bench import Result


def discover() -> list[str]:
    """Names of the bench modules (bench_<name>.py -> <name>)."""
    here = Path(__file__).parent
    return sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules([str(here)])
                  if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = argv or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"unknown bench(es): {', '.join(unknown)}; have: {', '.join(discover())}")
        return 2
    results: list[Result] = []
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"== {name}", flush=True)
        outcome = module.main()
        if isinstance(outcome, list):      # benches that print their own report return an exit code
            results.extend(outcome)
    if results:
        print("\n== ratios (baseline time / ours)")
        for r in results:
            print(r.line())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
