"""``gpuhil fuzz``: the protocol suite's qtest fuzz campaign for longer than CI's, for nightly
runs: rounds of new seeds until a time budget is spent, failing examples kept in a corpus
directory and replayed first next time.  It runs the suite test itself through pytest (so the
pool, expectations, evidence and Allure results are the suite's), with the campaign options
``--gpuhil-fuzz-budget``, ``--gpuhil-fuzz-seed`` and ``--gpuhil-fuzz-corpus``."""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_commands", "cmd_fuzz", "pytest_args"]

#: the campaign's test (its qtest parameter)
FUZZ_TEST = "suites/protocol/test_fuzz.py::test_fuzzed_batches_are_answered_and_state_stays_consistent"


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budget {value!r}: not a number of seconds") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"--budget {value!r}: must be more than 0 seconds")
    return seconds


def add_commands(sub) -> None:
    """Register ``gpuhil fuzz`` on the top-level subparsers."""
    fuzz = sub.add_parser("fuzz", help="fuzz the virtio-gpu device over qtest for a time budget "
                                       "(the protocol suite's campaign, new seeds each round)")
    fuzz.add_argument("--budget", type=_seconds, default=600.0,
                      help="seconds of fuzzing (default: %(default)s)")
    fuzz.add_argument("--seed", type=int, default=0, help="first round's seed (default: 0)")
    fuzz.add_argument("--corpus", type=Path, default=None,
                      help="directory keeping failing examples, replayed first on the next run")
    fuzz.add_argument("--alluredir", type=Path, default=None, help="Allure results directory")
    fuzz.add_argument("--target", default=None, help="--gpuhil-target (default: the lab)")
    fuzz.set_defaults(func=cmd_fuzz)


def pytest_args(args: argparse.Namespace, root: Path) -> list[str]:
    """pytest's argv for ``args``, run from the project ``root``."""
    argv = [f"{root / FUZZ_TEST}[qtest]", "-p", "no:cacheprovider", "-q", "-rxXs",
            f"--rootdir={root}", f"--gpuhil-fuzz-budget={args.budget:g}",
            f"--gpuhil-fuzz-seed={args.seed}"]
    if args.corpus is not None:
        argv.append(f"--gpuhil-fuzz-corpus={args.corpus.resolve()}")
    if args.alluredir is not None:
        argv.append(f"--alluredir={args.alluredir.resolve()}")
    if args.target is not None:
        argv.append(f"--gpuhil-target={args.target}")
    return argv


def cmd_fuzz(args: argparse.Namespace) -> int:
    """Run the campaign in a pytest of its own (this process has imported gpuhil already, which
    pytest's assertion rewriting needs to do itself); its exit status."""
    import subprocess
    import sys
    import tempfile

    from gpuhil.lab.setup import PROJECT_ROOT

    if args.corpus is not None and args.corpus.exists() and not args.corpus.is_dir():
        print(f"gpuhil fuzz: --corpus {args.corpus}: exists and is not a directory",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpuhil-fuzz-") as scratch:
        junit = Path(scratch) / "junit.xml"
        status = subprocess.call([sys.executable, "-m", "pytest",
                                  *pytest_args(args, PROJECT_ROOT), f"--junitxml={junit}",
                                  "-o", "junit_family=legacy"], cwd=PROJECT_ROOT)
        summary = _summary(junit)
    if summary:
        print(f"gpuhil fuzz: {summary}")
    return status


def _summary(junit: Path) -> str:
    """'N batches, M commands in S s' from the campaign test's recorded properties."""
    import xml.etree.ElementTree as ET

    if not junit.exists():
        return ""
    for case in ET.parse(junit).iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if "fuzz_commands" in props:
            return (f"{props['fuzz_batches']} batches, {props['fuzz_commands']} commands in "
                    f"{float(case.get('time', 0)):.1f} s")
    return ""
