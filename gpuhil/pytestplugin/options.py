"""The lab plugin's options (``--gpuhil-*``, each also an ini key) and their validated form,
:class:`Settings`; a bad value is a UsageError naming the option and the value."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpuhil.gating import capexpr
from gpuhil.gating.catalogue import unknown_names
from gpuhil.gating.expectations import ExpectationError, ExpectationFile, load_directory
from gpuhil.host.inventory import SelectorError, parse_selector
from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.lab.targets import Target, TargetError, parse_target
from gpuhil.host.labgrid_place import place_request
from gpuhil.host.lease import DEFAULT_DIRECTORY as DEFAULT_LEASE_DIRECTORY
from gpuhil.pytestplugin.leasing import BUSY_POLICIES, default_busy_policy

__all__ = ["Settings", "parse_settings", "pytest_addoption"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpuhil", "gpuhil hardware-in-the-loop")

    def option(name: str, ini: str, help: str, default: Any = None, kind: str = "string",
               append: bool = False) -> None:
        group.addoption(name, action="append" if append else "store", dest=ini, default=None,
                        help=f"{help} (ini: {ini})")
        parser.addini(ini, help, type="linelist" if append else kind, default=default)

    option("--gpuhil-target", "gpuhil_target",
           "where suites run: 'lab' (the virtual lab), 'local' (this machine has the device) or "
           "the path of a lab config TOML file", default="lab")
    option("--gpuhil-gpu", "gpuhil_gpu", "host GPU selection: PCI slot, vendor:device or render "
           "node (repeatable)", default=[], append=True)
    option("--must-have", "gpuhil_must_have", "capability expression that must hold: a test "
           "skipped for a capability it names fails instead (repeatable)", default=[], append=True)
    option("--gpuhil-guest", "gpuhil_guest", f"default guest configuration "
           f"({', '.join(CONFIGURATIONS)})", default="venus")
    option("--gpuhil-boot-timeout", "gpuhil_boot_timeout", "seconds a guest may take to boot",
           default="180")
    option("--gpuhil-device-timeout", "gpuhil_device_timeout", "seconds for the guest's render "
           "node to appear after loading virtio_gpu", default="120")
    option("--gpuhil-expectations", "gpuhil_expectations", "directory of per-platform "
           "expectation files (known bugs => strict xfail); default: <rootdir>/suites/expectations",
           default="")
    option("--gpuhil-max-guests", "gpuhil_max_guests", "guests a worker keeps alive at once "
           "(the least recently used is stopped first; also fewer when the host lacks memory; "
           "0: one per configuration)", default="2")
    option("--gpuhil-log-dir", "gpuhil_log_dir", "where guests' console and QEMU logs are kept, "
           "one directory per run (default: gpuhil-logs beside --alluredir; without it, "
           "pytest's basetemp)", default="")
    option("--gpuhil-lease-dir", "gpuhil_lease_dir", "directory of host resource leases "
           "(host-wide by default, so every user of the host shares them)",
           default=str(DEFAULT_LEASE_DIRECTORY))
    option("--gpuhil-lease-timeout", "gpuhil_lease_timeout", "seconds to wait for a leased host "
           "resource before the busy policy applies", default="60")
    option("--gpuhil-lease-busy", "gpuhil_lease_busy", "what a test does when its host resource "
           f"stays leased by someone else: {', '.join(BUSY_POLICIES)} (default: fail under CI, "
           "else skip)", default="")
    option("--gpuhil-place", "gpuhil_place", "labgrid place (name, alias or +TOKEN of a "
           "reservation) whose GPUs the session runs on; default: LG_PLACE / LG_TOKEN",
           default="")
    option("--gpuhil-coordinator", "gpuhil_coordinator", "labgrid coordinator HOST:PORT; "
           "default: LG_COORDINATOR, else 127.0.0.1:20408", default="")
    option("--gpuhil-fuzz-budget", "gpuhil_fuzz_budget", "seconds of qtest fuzzing: rounds of "
           "new seeds instead of the suite's fixed campaign (gpuhil fuzz)", default="")
    option("--gpuhil-fuzz-seed", "gpuhil_fuzz_seed", "first seed of --gpuhil-fuzz-budget's "
           "rounds", default="0")
    option("--gpuhil-fuzz-corpus", "gpuhil_fuzz_corpus", "directory where failing fuzz "
           "examples are kept and replayed first (hypothesis' example database)", default="")


@dataclass(frozen=True)
class Settings:
    """The validated options."""

    target: Target
    gpu_selectors: tuple[str, ...]
    must_have: tuple[capexpr.Expr, ...]
    default_guest: str
    boot_timeout: float
    device_timeout: float
    lease_dir: Path
    lease_timeout: float
    expectations: tuple[ExpectationFile, ...] = ()
    max_guests: int = 2
    log_dir: Path | None = None  # None: beside the Allure results, else pytest's basetemp
    lease_busy: str = "skip"  # one of leasing.BUSY_POLICIES
    place: tuple[str, str] | None = None  # (labgrid place pattern, coordinator address)


def _value(config: pytest.Config, ini: str) -> Any:
    cli = getattr(config.option, ini, None)
    return cli if cli is not None else config.getini(ini)


def _seconds(config: pytest.Config, ini: str, option: str, allow_zero: bool = False) -> float:
    raw = _value(config, ini)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{option}={raw!r}: expected a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise pytest.UsageError(f"{option}={raw!r}: must be {'>= 0' if allow_zero else '> 0'}")
    return value


def parse_settings(config: pytest.Config) -> Settings:
    """Validate every gpuhil option; a bad one is a UsageError naming the option and value."""
    try:
        target = parse_target(str(_value(config, "gpuhil_target")))
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    selectors = tuple(_value(config, "gpuhil_gpu") or ())
    for selector in selectors:
        try:
            parse_selector(selector)
        except SelectorError as exc:
            raise pytest.UsageError(str(exc)) from None
    must_have = []
    for text in _value(config, "gpuhil_must_have") or ():
        try:
            must_have.append(capexpr.parse(text))
        except capexpr.CapExprError as exc:
            raise pytest.UsageError(f"--must-have: {exc}") from None
        problem = unknown_names(must_have[-1].names)
        if problem:
            raise pytest.UsageError(f"--must-have {text!r}: {problem}")
    default_guest = str(_value(config, "gpuhil_guest"))
    if default_guest not in CONFIGURATIONS:
        raise pytest.UsageError(f"--gpuhil-guest={default_guest!r}: unknown configuration "
                                f"(known: {', '.join(CONFIGURATIONS)})")
    where = str(_value(config, "gpuhil_expectations") or "")
    directory = Path(where).expanduser() if where else config.rootpath / "suites" / "expectations"
    if where and not directory.is_dir():
        raise pytest.UsageError(f"--gpuhil-expectations={where!r}: not a directory")
    try:
        expectations = tuple(load_directory(directory))
    except ExpectationError as exc:
        raise pytest.UsageError(f"expectations: {exc}") from None
    return Settings(
        target, selectors, tuple(must_have), default_guest,
        _seconds(config, "gpuhil_boot_timeout", "--gpuhil-boot-timeout"),
        _seconds(config, "gpuhil_device_timeout", "--gpuhil-device-timeout"),
        Path(str(_value(config, "gpuhil_lease_dir"))).expanduser(),
        _seconds(config, "gpuhil_lease_timeout", "--gpuhil-lease-timeout", allow_zero=True),
        expectations,
        _count(config, "gpuhil_max_guests", "--gpuhil-max-guests"),
        _log_dir(config),
        _busy_policy(config),
        place_request(str(_value(config, "gpuhil_place") or ""),
                      str(_value(config, "gpuhil_coordinator") or "")),
    )


def _busy_policy(config: pytest.Config) -> str:
    raw = str(_value(config, "gpuhil_lease_busy") or "") or default_busy_policy()
    if raw not in BUSY_POLICIES:
        raise pytest.UsageError(f"--gpuhil-lease-busy={raw!r}: expected one of "
                                f"{', '.join(BUSY_POLICIES)}")
    return raw


def _log_dir(config: pytest.Config) -> Path | None:
    """--gpuhil-log-dir, else ``gpuhil-logs`` beside the Allure results directory, else None."""
    where = str(_value(config, "gpuhil_log_dir") or "")
    if where:
        path = Path(where).expanduser()
        if path.exists() and not path.is_dir():
            raise pytest.UsageError(f"--gpuhil-log-dir={where!r}: not a directory")
        return path
    results = getattr(config.option, "allure_report_dir", None)
    return Path(results).expanduser().resolve().parent / "gpuhil-logs" if results else None


def _count(config: pytest.Config, ini: str, option: str) -> int:
    raw = _value(config, ini)
    try:
        value = int(str(raw))
    except ValueError:
        raise pytest.UsageError(f"{option}={raw!r}: expected a whole number") from None
    if value < 0:
        raise pytest.UsageError(f"{option}={raw!r}: must be >= 0")
    return value
