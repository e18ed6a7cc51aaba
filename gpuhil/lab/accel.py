"""Choosing the accelerator: KVM only when it really works, otherwise TCG.

``/dev/kvm`` existing proves little: on this project's machines it is PVM (``kvm_pvm``), a
software nested hypervisor under which stock kernels never boot (LAB.md §3).  The probe checks,
in order: the device node, that it opens, that it is not PVM, the KVM API version, and, when a
smoke test is given, that a real kernel boots under it.  The result is cached per host boot.
"""
from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from gpuhil.lab.spec import Accel

KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO=0xAE, 0x00)
KVM_API_VERSION = 12

#: A callable that boots a kernel under KVM and returns None if it worked, else why not.
SmokeTest = Callable[[], "str | None"]


@dataclass(frozen=True)
class AccelChoice:
    """The accelerator to use and why."""

    accel: Accel
    reason: str


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def check_kvm(dev: Path = Path("/dev/kvm"), sysfs_module: Path = Path("/sys/module"),
              smoke: SmokeTest | None = None) -> AccelChoice:
    """Decide between KVM and TCG by looking at the host (no caching)."""
    if not dev.exists():
        return AccelChoice(Accel.TCG, f"{dev} does not exist")
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return AccelChoice(Accel.TCG, f"{dev} cannot be opened: {exc.strerror}")
    try:
        if (sysfs_module / "kvm_pvm").exists():
            return AccelChoice(Accel.TCG, f"{dev} is PVM ({sysfs_module / 'kvm_pvm'} exists), "
                               "a software hypervisor stock guest kernels do not boot under")
        try:
            version = fcntl.ioctl(fd, KVM_GET_API_VERSION)
        except OSError as exc:
            return AccelChoice(Accel.TCG, f"KVM_GET_API_VERSION failed: {exc.strerror}")
        if version != KVM_API_VERSION:
            return AccelChoice(Accel.TCG, f"KVM API version {version}, expected {KVM_API_VERSION}")
    finally:
        os.close(fd)
    if smoke is not None:
        problem = smoke()
        if problem is not None:
            return AccelChoice(Accel.TCG, f"a kernel does not boot under KVM: {problem}")
        return AccelChoice(Accel.KVM, "KVM works (a kernel booted under it)")
    return AccelChoice(Accel.KVM, f"{dev} answers KVM API version {KVM_API_VERSION}")


_memo: dict[str, AccelChoice] = {}


def probe(cache_file: Path | None = None, smoke: SmokeTest | None = None,
          **checks: Path) -> AccelChoice:
    """:func:`check_kvm`, cached in memory and in ``cache_file`` for the current host boot."""
    key = _boot_id()
    if key in _memo and not checks:
        return _memo[key]
    if cache_file is not None and not checks:
        try:
            data = json.loads(cache_file.read_text())
            if data.get("boot_id") == key:
                choice = AccelChoice(Accel(data["accel"]), data["reason"])
                _memo[key] = choice
                return choice
        except (OSError, ValueError, KeyError):
            pass
    choice = check_kvm(smoke=smoke, **checks)
    if not checks:
        _memo[key] = choice
        if cache_file is not None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"boot_id": key, **asdict(choice)}))
            os.replace(tmp, cache_file)
    return choice


def resolve(requested: Accel, cache_file: Path | None = None,
            smoke: SmokeTest | None = None) -> AccelChoice:
    """The accelerator to use for ``requested`` (``AUTO`` probes; explicit choices are kept)."""
    if requested is Accel.AUTO:
        return probe(cache_file, smoke)
    return AccelChoice(requested, "requested explicitly")
