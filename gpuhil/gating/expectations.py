"""Known product bugs per platform: expectation files that turn a suite test into a strict xfail.

A real bug found by a suite stays a test that asserts the correct behaviour.  Its entry in the
expectations file of the platform it was seen on (``suites/expectations/<platform>.toml``) says
why it fails there::

    [platform]                      # every key given must match (version prefix, by component)
    qemu = "11.1"
    virglrenderer = "1.3"
    kernel = "7.2"                  # the guest kernel release

    [[xfail]]
    test = "suites/blob/test_lifecycle.py::test_reuse*"   # node id; * and ? are wildcards
    reason = "UNMAP_BLOB answers before the mapping is gone (QEMU virtio-gpu-virgl)"
    seen = "QEMU 11.1.3, virglrenderer 1.3.0, Linux 7.2.13"
    strict = false                  # optional: a race that does not show on every run

The plugin marks a matching test ``xfail(strict=True)``: when the bug is fixed the test passes,
the run fails as XPASS(strict), and the entry must go.  An intermittent bug (``strict = false``)
may pass (XPASS) without failing the run.  On other platforms the test runs as is.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Expectation", "ExpectationError", "ExpectationFile", "Platform", "load_directory",
           "load_file", "version_matches"]

PLATFORM_KEYS = ("qemu", "virglrenderer", "kernel")


class ExpectationError(ValueError):
    """An expectations file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Platform:
    """The versions of the stack under test (Debian or upstream version strings; "" = unknown)."""

    qemu: str = ""
    virglrenderer: str = ""
    kernel: str = ""
    mesa: str = ""  # not matched on by expectation files; reported with the provenance

    @classmethod
    def of(cls, setup: Any) -> "Platform":
        """The stack a lab setup boots (its assets' manifest and kernel); a lab machine with its
        own QEMU and kernel has unknown versions, and the local target (``setup`` None) is this
        machine's kernel.  The one place the stack's versions are read."""
        assets = getattr(setup, "assets", None)
        if assets is not None:
            m = assets.manifest
            return cls(m.qemu, m.virglrenderer, assets.kernel_release, m.mesa)
        return cls(kernel=os.uname().release if setup is None else "")

    def describe(self) -> str:
        """The components expectation files match on, with their versions."""
        parts = [("QEMU", self.qemu), ("virglrenderer", self.virglrenderer),
                 ("Linux", self.kernel)]
        return ", ".join(f"{name} {value}" for name, value in parts if value) or "unknown"


def _components(version: str) -> tuple[int, ...]:
    """'1:11.1.3+ds-1' -> (11, 1, 3); '7.2.13+deb14-amd64' -> (7, 2, 13); '' -> ()."""
    match = re.match(r"\d+(?:\.\d+)*", version.split(":", 1)[-1])
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()


def version_matches(wanted: str, actual: str) -> bool:
    """True when ``actual``'s leading numeric components start with ``wanted``'s (11.1 ~ 11.1.3)."""
    want, have = _components(wanted), _components(actual)
    return bool(want) and have[:len(want)] == want


@dataclass(frozen=True)
class Expectation:
    """One known failure: the tests it covers and why they fail on this platform."""

    test: str
    reason: str
    seen: str
    source: str  # "<file>: xfail[<index>]", for messages
    strict: bool = True  # False: an intermittent bug, whose test may also pass

    def covers(self, nodeid: str) -> bool:
        """``*`` and ``?`` are wildcards; brackets are literal (they hold test parameters)."""
        pattern = re.escape(self.test).replace(r"\*", ".*").replace(r"\?", ".")
        return re.fullmatch(pattern, nodeid, re.DOTALL) is not None

    def marker_reason(self, platform: Platform) -> str:
        kind = "known bug" if self.strict else "known intermittent bug"
        return f"{kind} on {platform.describe()} ({self.source}, seen on {self.seen}): {self.reason}"


@dataclass(frozen=True)
class ExpectationFile:
    """One platform's expectations."""

    path: Path
    platform: dict[str, str]
    entries: tuple[Expectation, ...]

    def applies_to(self, platform: Platform) -> bool:
        return all(version_matches(wanted, getattr(platform, key))
                   for key, wanted in self.platform.items())


def _text(table: Mapping[str, object], key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ExpectationError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def load_file(path: Path) -> ExpectationFile:
    """Parse and validate one expectations file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ExpectationError(f"{path}: {exc}") from None
    unknown = set(data) - {"platform", "xfail"}
    if unknown:
        raise ExpectationError(f"{path}: unknown tables {sorted(unknown)} (expected platform, xfail)")
    platform = data.get("platform")
    if not isinstance(platform, dict) or not platform:
        raise ExpectationError(f"{path}: a [platform] table with some of {PLATFORM_KEYS} is needed")
    for key, value in platform.items():
        if key not in PLATFORM_KEYS:
            raise ExpectationError(f"{path}: [platform] {key!r} is not one of {PLATFORM_KEYS}")
        if not _components(_text(platform, key, f"{path}: [platform]")):
            raise ExpectationError(f"{path}: [platform] {key} = {value!r} is not a version")
    entries = []
    for index, entry in enumerate(data.get("xfail", [])):
        where = f"{path.name}: xfail[{index}]"
        if not isinstance(entry, dict):
            raise ExpectationError(f"{where}: expected a table")
        extra = set(entry) - {"test", "reason", "seen", "strict"}
        if extra:
            raise ExpectationError(f"{where}: unknown keys {sorted(extra)} "
                                   f"(test, reason, seen, strict)")
        strict = entry.get("strict", True)
        if not isinstance(strict, bool):
            raise ExpectationError(f"{where}: 'strict' must be true or false, got {strict!r}")
        entries.append(Expectation(_text(entry, "test", where), _text(entry, "reason", where),
                                   _text(entry, "seen", where), where, strict))
    return ExpectationFile(path, dict(platform), tuple(entries))


def load_directory(directory: Path) -> list[ExpectationFile]:
    """Every ``*.toml`` in ``directory`` (none when it does not exist)."""
    if not directory.is_dir():
        return []
    return [load_file(path) for path in sorted(directory.glob("*.toml"))]
