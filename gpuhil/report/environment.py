"""What a gpuhil run writes next to its Allure results: ``environment.properties`` (provenance and
the capability snapshot, shown on the report's overview) and ``categories.json`` (which failures
are product defects, test defects or infrastructure, matched on the ``[<outcome>]`` prefix of the
status message, see :mod:`gpuhil.outcomes`; which skips are known product bugs, matched on the
expectation entry's xfail reason).  :mod:`gpuhil.report.machines` writes them per run."""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import gpuhil
from gpuhil.gating.expectations import Platform
from gpuhil.lab.platform import platform_of
from gpuhil.outcomes import Outcome

PROJECT_ROOT = Path(gpuhil.__file__).resolve().parent.parent


@dataclass(frozen=True)
class CategoryRule:
    """One entry of ``categories.json``."""

    name: str
    statuses: tuple[str, ...]
    message_regex: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "matchedStatuses": list(self.statuses),
                "messageRegex": self.message_regex}


def _prefixed(*outcomes: Outcome) -> str:
    names = "|".join(o.value for o in outcomes)
    return rf"(?s)^\[({names})\].*"


_SPECIAL = (Outcome.CRASH, Outcome.DMESG_WARN, Outcome.DMESG_FAIL, Outcome.TIMEOUT, Outcome.INFRA)

#: Most specific first; the last two catch the remaining failed (product) and broken (test) ones.
CATEGORIES: tuple[CategoryRule, ...] = (
    CategoryRule("Infrastructure: the lab could not start", ("broken",), _prefixed(Outcome.INFRA)),
    CategoryRule("Product defect: guest crash (panic, QEMU died)", ("failed",),
                 _prefixed(Outcome.CRASH)),
    CategoryRule("Product defect: guest kernel BUG/oops (dmesg-fail)", ("failed",),
                 _prefixed(Outcome.DMESG_FAIL)),
    CategoryRule("Product defect: guest kernel warnings (dmesg-warn)", ("failed",),
                 _prefixed(Outcome.DMESG_WARN)),
    CategoryRule("Product defect: timeout (state dumped, then killed)", ("broken",),
                 _prefixed(Outcome.TIMEOUT)),
    CategoryRule("Known bug fixed? A strict expectation entry's test passed", ("failed",),
                 rf"(?s)^\[{Outcome.FAIL.value}\] \[XPASS\(strict\)\] .*"),
    CategoryRule("Product defect: failed assertion", ("failed",),
                 rf"(?s)^(?!\[({'|'.join(o.value for o in _SPECIAL)})\]).*"),
    CategoryRule("Test defect: the test code broke", ("broken",), _prefixed(Outcome.ERROR)),
    CategoryRule("Interrupted: the run was stopped before the test ended", ("skipped",),
                 _prefixed(Outcome.INTERRUPTED)),
    # Known product bugs (expectation entries: the xfail reason names the platform and the bug)
    CategoryRule("Known product bug (expectation entry)", ("skipped",),
                 r"(?s)^XFAIL known bug on .*"),
    CategoryRule("Known intermittent product bug (expectation entry)", ("skipped", "passed"),
                 r"(?s)^(XFAIL|XPASS) known intermittent bug on .*"),
    CategoryRule("Known bug not reproduced on a newer stack", ("passed",),
                 r"(?s)^not reproduced on .*"),
)


def categories_json() -> str:
    """The text of ``categories.json``."""
    return json.dumps([rule.as_json() for rule in CATEGORIES], indent=1)


@dataclass
class Provenance:
    """Where a run's results come from: the stack's versions (its :attr:`platform`, read with
    :func:`gpuhil.lab.platform.platform_of`), host, GPUs and gpuhil itself."""

    gpuhil_version: str = gpuhil.__version__
    gpuhil_git: str = ""
    host_kernel: str = ""
    qemu: str = ""
    virglrenderer: str = ""
    mesa: str = ""
    guest_kernel: str = ""
    gpu_pci_ids: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def platform(self) -> Platform:
        """The stack these results come from, as expectation files see it."""
        return Platform(self.qemu, self.virglrenderer, self.guest_kernel, self.mesa)

    @platform.setter
    def platform(self, platform: Platform) -> None:
        self.qemu, self.virglrenderer = platform.qemu, platform.virglrenderer
        self.guest_kernel, self.mesa = platform.kernel, platform.mesa

    def properties(self) -> dict[str, str]:
        """Flat ``name -> value`` pairs (unknown values are left out)."""
        pairs = {
            "gpuhil.version": self.gpuhil_version, "gpuhil.git": self.gpuhil_git,
            "host.kernel": self.host_kernel, "lab.qemu": self.qemu,
            "lab.virglrenderer": self.virglrenderer, "lab.mesa": self.mesa,
            "guest.kernel": self.guest_kernel, "host.gpu_pci_ids": " ".join(self.gpu_pci_ids),
        }
        pairs.update(self.extra)
        return {k: v for k, v in pairs.items() if v}


def git_revision(root: Path = PROJECT_ROOT) -> str:
    """``<sha>`` of the project tree, ``<sha>-dirty`` with local changes, "" outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}-dirty" if dirty else sha


def host_gpu_pci_ids(sysfs: Path = Path("/sys/bus/pci/devices")) -> tuple[str, ...]:
    """``vendor:device@slot`` of the host's display-class PCI functions (class 0x03xxxx)."""
    found = []
    if not sysfs.is_dir():
        return ()
    for dev in sorted(sysfs.iterdir()):
        try:
            if not (dev / "class").read_text().strip().startswith("0x03"):
                continue
            vendor = (dev / "vendor").read_text().strip().removeprefix("0x")
            device = (dev / "device").read_text().strip().removeprefix("0x")
        except OSError:
            continue
        found.append(f"{vendor}:{device}@{dev.name}")
    return tuple(found)


def collect_provenance(guests: Iterable[Any] = ()) -> Provenance:
    """Provenance of this host and of the lab guests the run used (the first with assets wins)."""
    prov = Provenance(gpuhil_git=git_revision(), host_kernel=os.uname().release,
                      gpu_pci_ids=host_gpu_pci_ids())
    for guest in guests:
        setup = getattr(guest, "setup", None)
        if setup is not None and not prov.qemu:
            prov.platform = platform_of(setup)
            if not prov.qemu:  # a QEMU that cannot say its version: its path is what is known
                prov.qemu = f"unknown version ({getattr(setup, 'qemu', '')})"
        info = getattr(guest, "info", None)
        if info is not None and getattr(info, "kernel", ""):
            prov.guest_kernel = info.kernel
    return prov


def _escape(text: str) -> str:
    """Java properties escaping for a value (backslashes, line breaks)."""
    return (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r"))


def stack_summary(provenance: Provenance) -> str:
    """One line: the versions of the stack under test."""
    parts = [("QEMU", provenance.qemu), ("virglrenderer", provenance.virglrenderer),
             ("Mesa", provenance.mesa), ("guest kernel", provenance.guest_kernel),
             ("host kernel", provenance.host_kernel)]
    return ", ".join(f"{name} {value}" for name, value in parts if value)


def capability_summary(snapshot: Mapping[str, Any]) -> str:
    """One line: the capsets (with their highest versions) and the features that are on."""
    capsets = [f"{key.split('.')[1]} v{snapshot.get(key + '.max_version', '?')}"
               for key, value in snapshot.items()
               if key.startswith("capset.") and key.count(".") == 1 and value is True]
    features = [key.split(".", 1)[1] for key, value in snapshot.items()
                if key.startswith("feature.") and value is True]
    text = f"capsets: {', '.join(capsets) or 'none'}"
    return text + (f"; features: {', '.join(features)}" if features else "")


def environment_properties(provenance: Provenance,
                           snapshots: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The text of ``environment.properties``; ``snapshots`` maps a guest configuration to its
    flat capability snapshot.

    Allure's overview shows the first five entries, so the one-line summaries of the stack and
    of the capability snapshots come first; then the provenance fields and the snapshot entries
    (``capability.<name>``, or ``capability.<configuration>.<name>`` with several).
    """
    snapshots = dict(sorted((snapshots or {}).items()))
    lines = [f"stack={_escape(stack_summary(provenance))}"]
    if len(snapshots) == 1:
        lines.append(f"capabilities={_escape(capability_summary(next(iter(snapshots.values()))))}")
    else:  # one row per configuration (the full tables are in each machine's set-up step)
        lines += [f"capabilities.{name}={_escape(capability_summary(snap))}"
                  for name, snap in snapshots.items()]
    lines += [f"{key}={_escape(value)}" for key, value in provenance.properties().items()]
    for name, snapshot in snapshots.items():
        prefix = "capability." if len(snapshots) == 1 else f"capability.{name}."
        for key, value in sorted(snapshot.items()):
            lines.append(f"{prefix}{key.replace(' ', '_')}={_escape(str(value))}")
    return "\n".join(lines) + "\n"


__all__ = ["CATEGORIES", "CategoryRule", "Provenance", "capability_summary", "categories_json",
           "collect_provenance", "environment_properties", "stack_summary", "git_revision", "host_gpu_pci_ids"]
