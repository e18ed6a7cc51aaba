"""Which modules run in a lab guest (the guest side), and a payload that reports what a guest
has imported.  Imported in the guest: standard library and gpuhil only."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Packages and modules of gpuhil whose code runs where the device is (the agent, the device
#: interfaces, the raw driver, the protocol, the capability probe, the payload helpers).
GUEST_PACKAGES = ("gpuhil/devices", "gpuhil/raw", "gpuhil/protocol", "gpuhil/qtest",
                  "gpuhil/nested")
GUEST_MODULES = ("gpuhil.agent", "gpuhil.attempts", "gpuhil.errors", "gpuhil.symbols", "gpuhil.patterns",
                 "gpuhil.machine", "gpuhil.gating.capabilities")
#: Payload modules of the suites, the lab's tests and the benchmarks.
PAYLOAD_GLOBS = ("suites/*/payloads.py", "suites/*/*_payload.py", "tests/lab_payloads.py", "tests/guest_side.py",
                 "bench/*_payload.py")

#: What a guest must not need (it belongs to the host's pytest side).
HOST_ONLY = ("pytest", "_pytest", "filelock", "pluggy", "allure", "allure_commons", "qemu")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def guest_modules() -> list[str]:
    """Every module a guest loads, by name."""
    names = set(GUEST_MODULES)
    for package in GUEST_PACKAGES:
        names.update(_module_name(p) for p in (ROOT / package).rglob("*.py"))
    for pattern in PAYLOAD_GLOBS:
        names.update(_module_name(p) for p in ROOT.glob(pattern))
    return sorted(names)


def import_all() -> list[str]:
    """Payload: import every guest-side module; the top-level names of everything imported."""
    for name in guest_modules():
        importlib.import_module(name)
    return sorted({name.split(".")[0] for name in sys.modules})
