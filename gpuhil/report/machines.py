"""The machines a report's results come from: one run per machine, many runs in one report.

Every result says where it ran (:class:`RunOrigin`: the machine's name and its host GPUs) as two
Allure *parameters*, so Allure's history id, which hashes the parameters, keeps a test on one
machine apart from the same test on another (labels would not: they are not hashed).

Every pytest process of a run (each xdist worker, the controller) leaves a fragment in
``<results>/gpuhil-env/``: its origin, provenance and capability snapshots.  From them
:func:`write_environment` writes ``environment.properties`` (one machine: as before; several:
each line under the machine's name) and ``categories.json``, and :func:`write_machine_fixtures`
gives each machine a set-up fixture attached to all of its results whose attachment is that
machine's stack and one table of capabilities per configuration.  :func:`merge_results` copies
several runs' results into one directory for one report.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from gpuhil.report.environment import (Provenance, categories_json, environment_properties,
                                       stack_summary)

__all__ = ["FRAGMENTS_DIR", "MachineRun", "RunOrigin", "merge_results", "read_machines",
           "snapshot_page", "write_environment", "write_fragment", "write_machine_fixtures"]

FRAGMENTS_DIR = "gpuhil-env"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class RunOrigin:
    """Where a run's results come from: the machine (``--gpuhil-machine``, else the host name)
    and its host GPUs (``vendor:device@slot`` list, "none" on a machine without one)."""

    machine: str
    gpu: str = "none"

    @classmethod
    def here(cls, machine: str = "", gpu: str = "none") -> "RunOrigin":
        return cls(machine or socket.gethostname(), gpu)

    def parameters(self) -> dict[str, str]:
        """The Allure parameters that key a result's history on this origin."""
        return {"machine": self.machine, "host GPU": self.gpu}


@dataclass
class MachineRun:
    """What one machine's processes recorded: who, which stack, which capabilities."""

    origin: RunOrigin
    provenance: Provenance
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)


def write_fragment(results_dir: Path, origin: RunOrigin, provenance: Provenance,
                   snapshots: dict[str, dict[str, Any]] | None = None) -> None:
    """This process' fragment: ``gpuhil-env/<machine>-<pid>.json``."""
    fragments = Path(results_dir) / FRAGMENTS_DIR
    fragments.mkdir(parents=True, exist_ok=True)
    data = {"origin": asdict(origin), "provenance": asdict(provenance),
            "snapshots": dict(snapshots or {})}
    name = f"{_UNSAFE.sub('_', origin.machine)}-{os.getpid()}.json"
    (fragments / name).write_text(json.dumps(data, default=str))


def read_machines(results_dir: Path) -> list[MachineRun]:
    """Every machine of ``results_dir``'s fragments, its processes merged (the first provenance
    that knows the stack's QEMU wins: a guest-less controller knows no stack)."""
    runs: dict[str, MachineRun] = {}
    for path in sorted((Path(results_dir) / FRAGMENTS_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
            origin = RunOrigin(**data.get("origin", {"machine": ""}))
            prov = data["provenance"]
            provenance = Provenance(**{**prov, "gpu_pci_ids": tuple(prov["gpu_pci_ids"])})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        run = runs.setdefault(origin.machine, MachineRun(origin, provenance))
        if provenance.qemu and not run.provenance.qemu:
            run.provenance = provenance
        run.snapshots.update(data.get("snapshots", {}))
    return list(runs.values())


def write_environment(results_dir: Path) -> list[MachineRun]:
    """``environment.properties`` and ``categories.json`` from the fragments; the machines."""
    runs = read_machines(results_dir)
    if len(runs) == 1:
        text = environment_properties(runs[0].provenance, runs[0].snapshots)
    else:
        text = "".join(f"{line.split('=', 1)[0]}.{_UNSAFE.sub('_', run.origin.machine)}="
                       f"{line.split('=', 1)[1]}\n" if "=" in line else ""
                       for run in runs
                       for line in environment_properties(run.provenance, run.snapshots).splitlines())
    if runs:
        (Path(results_dir) / "environment.properties").write_text(text)
    (Path(results_dir) / "categories.json").write_text(categories_json())
    return runs


def _table(caption: str, rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in rows)
    return f"<table><caption>{html.escape(caption)}</caption>{body}</table>"


def snapshot_page(run: MachineRun) -> str:
    """An HTML page: the machine's stack, then a table of capabilities per configuration."""
    parts = [f"<h1>{html.escape(run.origin.machine)}</h1>",
             f"<p>{html.escape(stack_summary(run.provenance))}</p>",
             _table("stack and host", [("host GPU", run.origin.gpu),
                                       *run.provenance.properties().items()])]
    for name, snapshot in sorted(run.snapshots.items()):
        parts.append(_table(f"capabilities of {name}", sorted(snapshot.items())))
    style = ("body{font-family:sans-serif}table{border-collapse:collapse;margin:1em 0}"
             "caption{font-weight:bold;text-align:left}th,td{border:1px solid #ccc;"
             "padding:2px 8px;text-align:left}th{font-weight:normal;color:#555}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>" \
           f"<body>{''.join(parts)}</body></html>"


def _results_of(results_dir: Path) -> dict[str, list[str]]:
    """machine -> uuids of its test results (the ``machine`` parameter)."""
    found: dict[str, list[str]] = {}
    for path in Path(results_dir).glob("*-result.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        params = {p.get("name"): p.get("value") for p in data.get("parameters") or ()}
        if "machine" in params:
            found.setdefault(str(params["machine"]), []).append(data["uuid"])
    return found


def write_machine_fixtures(results_dir: Path, runs: Sequence[MachineRun]) -> int:
    """One Allure container per machine: a set-up step named after the machine, attached to
    all of that machine's results, whose attachment is :func:`snapshot_page`; how many."""
    results_dir = Path(results_dir)
    children = _results_of(results_dir)
    now = int(time.time() * 1000)
    written = 0
    for run in runs:
        mine = children.get(run.origin.machine)
        if not mine:
            continue
        safe = _UNSAFE.sub("_", run.origin.machine)
        source = f"gpuhil-machine-{safe}-attachment.html"
        (results_dir / source).write_text(snapshot_page(run))
        step = {"name": f"stack and capabilities of {run.origin.machine}", "status": "passed",
                "stage": "finished", "start": now, "stop": now,
                "attachments": [{"name": f"{run.origin.machine}: stack and capabilities",
                                 "source": source, "type": "text/html"}]}
        container = {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpuhil-machine:{safe}")),
                     "name": run.origin.machine, "children": sorted(mine), "befores": [step],
                     "afters": [], "start": now, "stop": now}
        (results_dir / f"gpuhil-machine-{safe}-container.json").write_text(json.dumps(container))
        written += 1
    return written


def merge_results(sources: Sequence[Path], into: Path) -> None:
    """Copy every run's results (results, containers, attachments, fragments) into ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for source in sources:
        for path in Path(source).iterdir():
            if path.is_file():
                shutil.copy2(path, into / path.name)
            elif path.name == FRAGMENTS_DIR:
                shutil.copytree(path, into / FRAGMENTS_DIR, dirs_exist_ok=True)
