"""Stacks compared: the same suites' Allure results from two or more targets, test by test.

:func:`load_side` reads one ``--alluredir`` (its ``*-result.json`` files and the ``stack=`` line
of its ``environment.properties``); :func:`compare` lines the sides up by test and keeps the
tests whose outcome differs; :func:`summary` is the terminal text and :func:`write_html` the
page written beside the Allure reports, each side's evidence (status message, trace head and
attachments, linked) in its column.  This is how a QA engineer sees what a QEMU update fixes
and breaks.  ``gpuhil stacks`` runs the suites on each target first (:func:`run_targets`).
"""
from __future__ import annotations

import argparse
import html
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["Comparison", "Result", "Side", "add_commands", "compare", "load_side", "run_targets",
           "summary", "write_html"]


@dataclass(frozen=True)
class Result:
    """One test's outcome on one side, with its evidence."""

    outcome: str               # gpuhil's outcome label when present, else Allure's status
    message: str = ""
    trace: str = ""
    attachments: tuple[tuple[str, str], ...] = ()  # (name, file in the results directory)


@dataclass
class Side:
    """One target's results."""

    name: str
    directory: Path
    stack: str = ""
    results: dict[str, Result] = field(default_factory=dict)  # test name -> its result

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for result in self.results.values():
            out[result.outcome] = out.get(result.outcome, 0) + 1
        return dict(sorted(out.items()))


@dataclass(frozen=True)
class Comparison:
    sides: tuple[Side, ...]
    differing: tuple[str, ...]  # test names whose outcome is not the same on every side


def _test_name(data: dict) -> str:
    """``suites.blob.test_lifecycle#test_blob_lifecycle[host3d-mappable]``: module and test id."""
    full = str(data.get("fullName") or data.get("name", "?"))
    name = str(data.get("name", ""))
    return f"{full.rsplit('#', 1)[0]}#{name}" if "#" in full and name else full


def load_side(directory: Path | str, name: str | None = None) -> Side:
    """The results in an Allure results directory (ValueError naming it when there are none)."""
    directory = Path(directory)
    files = sorted(directory.glob("*-result.json"))
    if not files:
        raise ValueError(f"{directory}: no Allure results (*-result.json) in it")
    side = Side(name or directory.name, directory)
    latest: dict[str, tuple[int, Result]] = {}
    for path in files:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not an Allure result ({exc})") from None
        labels = {label.get("name"): label.get("value") for label in data.get("labels", [])}
        details = data.get("statusDetails") or {}
        result = Result(str(labels.get("gpuhil.outcome") or data.get("status", "unknown")),
                        str(details.get("message") or "").strip(),
                        "\n".join(str(details.get("trace") or "").splitlines()[:12]),
                        tuple((str(a.get("name")), str(a.get("source")))
                              for a in data.get("attachments", [])))
        key, stop = _test_name(data), int(data.get("stop") or 0)
        if key not in latest or stop >= latest[key][0]:
            latest[key] = (stop, result)  # a test run again (rerun) counts once, last wins
    side.results = {key: result for key, (_, result) in sorted(latest.items())}
    env = directory / "environment.properties"
    if env.is_file():
        for line in env.read_text(errors="replace").splitlines():
            if line.startswith("stack="):
                side.stack = line.split("=", 1)[1].strip()
    return side


def compare(sides: Sequence[Side]) -> Comparison:
    """The tests whose outcome differs between the sides (missing on a side counts as 'absent')."""
    if len(sides) < 2:
        raise ValueError("a comparison needs two or more sides")
    names = sorted(set().union(*(side.results for side in sides)))
    differing = tuple(n for n in names
                      if len({s.results[n].outcome if n in s.results else "absent"
                              for s in sides}) > 1)
    return Comparison(tuple(sides), differing)


def _cell(side: Side, name: str) -> Result:
    return side.results.get(name, Result("absent"))


def summary(comparison: Comparison) -> str:
    """The terminal text: each side's stack and counts, then every differing test."""
    lines = []
    for side in comparison.sides:
        counts = ", ".join(f"{n} {k}" for k, n in side.counts().items())
        lines.append(f"{side.name}: {side.stack or 'stack unknown'}: {len(side.results)} tests "
                     f"({counts})")
    lines.append(f"{len(comparison.differing)} tests differ")
    for name in comparison.differing:
        lines.append(f"  {name}")
        for side in comparison.sides:
            result = _cell(side, name)
            message = result.message.removeprefix(f"[{result.outcome}] ")
            message = message.splitlines()[0][:160] if message else ""
            lines.append(f"    {side.name}: {result.outcome}" + (f": {message}" if message else ""))
    return "\n".join(lines)


def write_html(comparison: Comparison, path: Path | str) -> Path:
    """A page with one row per differing test and one column per side, with its evidence."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    head = "".join(f"<th>{esc(s.name)}<br><small>{esc(s.stack or 'stack unknown')}</small></th>"
                   for s in comparison.sides)
    rows = []
    for name in comparison.differing:
        cells = []
        for side in comparison.sides:
            result = _cell(side, name)
            links = " ".join(
                f'<a href="{esc(os.path.relpath(side.directory / source, path.parent))}">'
                f"{esc(label)}</a>" for label, source in result.attachments)
            cells.append(f'<td class="{esc(result.outcome)}"><b>{esc(result.outcome)}</b>'
                         f"<pre>{esc(result.message)}\n{esc(result.trace)}</pre>{links}</td>")
        rows.append(f"<tr><td><code>{esc(name)}</code></td>{''.join(cells)}</tr>")
    counts = "".join(f"<li>{esc(s.name)}: {len(s.results)} tests, "
                     f"{esc(', '.join(f'{n} {k}' for k, n in s.counts().items()))}</li>"
                     for s in comparison.sides)
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>gpuhil: stacks compared</title>"
        "<style>td{vertical-align:top;border:1px solid #ccc}pre{white-space:pre-wrap;"
        "max-width:60ch}.passed{background:#efe}.failed,.broken{background:#fee}</style>"
        f"<h1>Stacks compared: {len(comparison.differing)} tests differ</h1><ul>{counts}</ul>"
        f"<table><tr><th>test</th>{head}</tr>{''.join(rows)}</table>")
    return path


def run_targets(targets: Sequence[str], output: Path, pytest_args: Sequence[str]) -> list[Side]:
    """Run the suites once per target (``--gpuhil-target``), each into its own results
    directory under ``output``; the sides, named after their targets."""
    sides, used = [], set()
    for target in targets:
        base = Path(target).stem if target not in ("lab", "local") else target
        name = base if base not in used else f"{base}-{len(used) + 1}"
        used.add(name)
        results = output / name / "allure-results"
        argv = [sys.executable, "-m", "pytest", *pytest_args, f"--gpuhil-target={target}",
                "--alluredir", str(results), "--clean-alluredir"]
        print(f"gpuhil stacks: {name}: {' '.join(argv[1:])}", flush=True)
        code = subprocess.run(argv).returncode
        if code not in (0, 1):  # 1: tests failed, which the comparison shows
            raise RuntimeError(f"the suites on target {target!r} did not run (pytest exit {code})")
        sides.append(load_side(results, name))
    return sides


def add_commands(sub: "argparse._SubParsersAction") -> None:
    """``gpuhil compare RESULTS_DIR...`` and ``gpuhil stacks --target T --target U [-- ARGS]``."""
    comp = sub.add_parser("compare", help="two or more Allure results directories, test by test")
    comp.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    stacks = sub.add_parser("stacks", help="run the suites on each --target, then compare them")
    stacks.add_argument("--target", action="append", required=True, metavar="TARGET",
                        help="'lab', 'local' or a lab config TOML (repeat: two or more)")
    stacks.add_argument("--output", default="reports/stacks", help="default: %(default)s")
    stacks.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARG",
                        help="what pytest runs (default: suites -n 2)")
    for command in (comp, stacks):
        command.add_argument("--html", default="reports/stacks/comparison.html",
                             help="the comparison page (default: %(default)s)")
        command.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    try:
        if hasattr(args, "target"):
            sides = run_targets(args.target, Path(args.output),
                                args.pytest_args or ["suites", "-n", "2"])
        else:
            sides = [load_side(d) for d in args.results]
        comparison = compare(sides)
    except (ValueError, RuntimeError) as exc:
        print(f"gpuhil: {exc}", file=sys.stderr)
        return 2
    print(summary(comparison))
    print(f"comparison: {write_html(comparison, args.html)}")
    return 0
