"""Known product bugs per platform: expectation files that turn a suite test into an xfail.

A real bug found by a suite stays a test that asserts the correct behaviour.  Its entry in the
expectations file of the platform it was triaged on (``suites/expectations/<platform>.toml``)
says why it fails there::

    [platform]                      # the stack these entries were triaged on (version prefixes)
    qemu = "11.1"
    virglrenderer = "1.3"
    kernel = "7.2"                  # the guest kernel release

    [[xfail]]
    test = "suites/blob/test_lifecycle.py::test_reuse*"   # node id; * and ? are wildcards
    reason = "UNMAP_BLOB answers before the mapping is gone (QEMU virtio-gpu-virgl)"
    seen = "QEMU 11.1.3, virglrenderer 1.3.0, Linux 7.2.13"   # where it was last seen
    since = { qemu = "10.0" }       # optional: the versions from which the bug holds
    strict = false                  # optional: a race that does not show on every run

Which files apply: among the files naming the same platform keys (e.g. kernel only, for the
guest kernel's bugs, or qemu and virglrenderer), the newest one whose platform is not newer
than the stack under test, key by key (a file for 11.1 applies to 11.1.3 and, until a file for
11.2 exists, to 11.2.0 and 12.0).  On the triaged stack itself (every key a prefix match) an entry is a strict xfail: when
the bug is fixed the test passes, the run fails as XPASS(strict), and the entry must go.  On a
newer stack it is not yet triaged: the xfail is not strict, and a pass is reported as "not
reproduced on <stack>" without failing the run.  An entry whose ``since`` is newer than the stack
does not apply; an intermittent bug (``strict = false``) is never strict.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

__all__ = ["Expectation", "ExpectationError", "ExpectationFile", "Platform", "governing_files",
           "load_directory", "load_file", "version_at_least", "version_matches"]

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


def version_at_least(wanted: str, actual: str) -> bool:
    """True when ``actual`` is known and not older than ``wanted`` (11.1 <= 11.1.3 <= 12.0)."""
    want, have = _components(wanted), _components(actual)
    return bool(want) and bool(have) and have[:len(want)] >= want


def _all_at_least(versions: Mapping[str, str], platform: "Platform") -> bool:
    return all(version_at_least(wanted, getattr(platform, key)) for key, wanted in versions.items())


@dataclass(frozen=True)
class Expectation:
    """One known failure: the tests it covers and why they fail on this platform."""

    test: str
    reason: str
    seen: str
    source: str  # "<file>: xfail[<index>]", for messages
    strict: bool = True  # False: an intermittent bug, whose test may also pass
    since: tuple[tuple[str, str], ...] = ()  # the versions from which the bug holds

    def covers(self, nodeid: str) -> bool:
        """``*`` and ``?`` are wildcards; brackets are literal (they hold test parameters)."""
        pattern = re.escape(self.test).replace(r"\*", ".*").replace(r"\?", ".")
        return re.fullmatch(pattern, nodeid, re.DOTALL) is not None

    def holds_on(self, platform: Platform) -> bool:
        """False when the stack is older than the entry's ``since``."""
        return _all_at_least(dict(self.since), platform)

    def marker_reason(self, platform: Platform, triaged: bool = True) -> str:
        kind = "known bug" if self.strict else "known intermittent bug"
        untriaged = "" if triaged else "; not yet triaged on this stack"
        return (f"{kind} on {platform.describe()} ({self.source}, seen on {self.seen}{untriaged}):"
                f" {self.reason}")


@dataclass(frozen=True)
class ExpectationFile:
    """The expectations of the stack they were triaged on."""

    path: Path
    platform: dict[str, str]
    entries: tuple[Expectation, ...]

    def applies_to(self, platform: Platform) -> bool:
        """The stack is this file's or newer (key by key)."""
        return _all_at_least(self.platform, platform)

    def triaged_on(self, platform: Platform) -> bool:
        """The stack is the one these entries were triaged on (every key a prefix match)."""
        return all(version_matches(wanted, getattr(platform, key))
                   for key, wanted in self.platform.items())

    def order(self) -> tuple[tuple[int, ...], ...]:
        """Sort key: a newer platform sorts later (missing keys count as oldest)."""
        return tuple(_components(self.platform.get(key, "")) for key in PLATFORM_KEYS)


def governing_files(files: "tuple[ExpectationFile, ...] | list[ExpectationFile]",
                    platform: Platform) -> list[ExpectationFile]:
    """Per set of platform keys (a kernel-only file is independent of QEMU/virglrenderer
    files), the newest file that applies to ``platform``."""
    newest: dict[frozenset[str], ExpectationFile] = {}
    for file in files:
        keys = frozenset(file.platform)
        if file.applies_to(platform) and (keys not in newest
                                          or file.order() > newest[keys].order()):
            newest[keys] = file
    return list(newest.values())


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
        extra = set(entry) - {"test", "reason", "seen", "strict", "since"}
        if extra:
            raise ExpectationError(f"{where}: unknown keys {sorted(extra)} "
                                   f"(test, reason, seen, since, strict)")
        strict = entry.get("strict", True)
        if not isinstance(strict, bool):
            raise ExpectationError(f"{where}: 'strict' must be true or false, got {strict!r}")
        since = entry.get("since", {})
        if not isinstance(since, dict) or set(since) - set(PLATFORM_KEYS) or not all(
                isinstance(v, str) and _components(v) for v in since.values()):
            raise ExpectationError(f"{where}: 'since' must map some of {PLATFORM_KEYS} to "
                                   f"versions, got {since!r}")
        entries.append(Expectation(_text(entry, "test", where), _text(entry, "reason", where),
                                   _text(entry, "seen", where), where, strict,
                                   tuple(sorted(since.items()))))
    return ExpectationFile(path, dict(platform), tuple(entries))


def load_directory(directory: Path) -> list[ExpectationFile]:
    """Every ``*.toml`` in ``directory`` (none when it does not exist)."""
    if not directory.is_dir():
        return []
    return [load_file(path) for path in sorted(directory.glob("*.toml"))]
