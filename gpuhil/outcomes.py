"""The status model of a gpuhil test: what happened, beyond pass/fail/skip, and how it shows in Allure.

A test ends in one :class:`Outcome`.  :func:`classify` decides it from what the run saw (the
exception of the failing phase, whether the watchdog fired, the guest kernel log lines written
during the test); :data:`ALLURE` maps each outcome to an Allure status and the category it is
filed under (product defect, test defect, infrastructure).  The Allure message of every
non-passing outcome starts with ``[<outcome>]`` so that ``categories.json`` can match it.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Iterable

from gpuhil.devices.kmsg import WARNING_LEVEL, KmsgRecord
from gpuhil.lab.errors import GuestDied, LabError


class Outcome(str, enum.Enum):
    """How one test ended."""

    PASS = "pass"
    FAIL = "fail"                # an assertion about the stack under test did not hold
    SKIP = "skip"                # a requirement was not met (the reason says which)
    TIMEOUT = "timeout"          # per-test or inactivity timeout; state dumped, then killed
    CRASH = "crash"              # the guest kernel panicked or QEMU died during the test
    DMESG_WARN = "dmesg-warn"    # the test passed, but the guest kernel warned meanwhile
    DMESG_FAIL = "dmesg-fail"    # the guest kernel hit a BUG/oops during the test
    INFRA = "infrastructure"     # the lab could not start (LabError before the test ran)
    ERROR = "error"              # the test code itself broke (unexpected exception)
    INTERRUPTED = "interrupted"  # the run was stopped (Ctrl-C, SIGINT) before the test ended


class Category(str, enum.Enum):
    """Who has to act on an outcome."""

    NONE = "none"
    PRODUCT = "product defect"
    TEST = "test defect"
    INFRASTRUCTURE = "infrastructure"


@dataclass(frozen=True)
class AllureMapping:
    """An outcome's Allure status (passed/failed/broken/skipped) and category."""

    status: str
    category: Category


ALLURE: dict[Outcome, AllureMapping] = {
    Outcome.PASS: AllureMapping("passed", Category.NONE),
    Outcome.SKIP: AllureMapping("skipped", Category.NONE),
    Outcome.FAIL: AllureMapping("failed", Category.PRODUCT),
    Outcome.CRASH: AllureMapping("failed", Category.PRODUCT),
    Outcome.DMESG_WARN: AllureMapping("failed", Category.PRODUCT),
    Outcome.DMESG_FAIL: AllureMapping("failed", Category.PRODUCT),
    Outcome.TIMEOUT: AllureMapping("broken", Category.PRODUCT),
    Outcome.ERROR: AllureMapping("broken", Category.TEST),
    Outcome.INFRA: AllureMapping("broken", Category.INFRASTRUCTURE),
    Outcome.INTERRUPTED: AllureMapping("skipped", Category.NONE),  # no verdict either way
}

#: Kernel log text that means the kernel itself is broken, whatever level it was logged at.
_DMESG_FAIL = re.compile(
    r"\bBUG:|kernel BUG at|\bOops\b|general protection fault|Unable to handle|"
    r"\bKASAN:|\bUBSAN:|\bKFENCE:|refcount_t:|list_(add|del) corruption|"
    r"blocked for more than|RCU detected stall|Kernel panic")
_CRIT_LEVEL = 2


#: A warning splat that only says a guest CPU was starved of wall-clock time: the atomic commit
#: helper waits 100 ms of real time for the next vblank, which a TCG guest on a loaded host can
#: miss without anything being wrong.  Gating on it would make a verdict of the host's load.
_STARVED = re.compile(r"vblank wait timed out")
_SPLAT_START, _SPLAT_END = "[ cut here ]", "---[ end trace"


@dataclass(frozen=True)
class KernelLogVerdict:
    """The problem lines of a kernel log slice: ``failures`` (BUG/oops, crit or worse) and
    ``warnings`` (kernel messages at warning or error level); ``tolerated`` holds the lines of
    warning splats that only show a starved guest CPU (kept as evidence, never a verdict)."""

    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    tolerated: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.failures and not self.warnings

    def summary(self, limit: int = 5) -> str:
        """The first few problem lines, failures first."""
        lines = (self.failures + self.warnings)[:limit]
        more = len(self.failures) + len(self.warnings) - len(lines)
        return "\n".join(lines) + (f"\n(+{more} more)" if more > 0 else "")


def _splats(records: Iterable[KmsgRecord]) -> Iterable[list[KmsgRecord]]:
    """The kernel's records in groups: a warning splat ("cut here" to "end trace") is one group,
    every other record a group of its own."""
    splat: list[KmsgRecord] = []
    for record in records:
        if not record.from_kernel:
            continue
        if _SPLAT_START in record.text:
            yield from ([r] for r in splat)  # an unterminated splat counts line by line
            splat = [record]
        elif splat:
            splat.append(record)
            if _SPLAT_END in record.text:
                yield splat
                splat = []
        else:
            yield [record]
    yield from ([r] for r in splat)


def scan_kernel_log(records: Iterable[KmsgRecord]) -> KernelLogVerdict:
    """Sort the kernel's records of a test slice into failures and warnings.

    Only the kernel facility counts (userspace writes to /dev/kmsg, like the test markers, do
    not); a BUG/oops text or a level of crit or worse is a failure, warning/err a warning.  A
    warning splat whose only news is a starved guest CPU (:data:`_STARVED`) is tolerated.  A
    ``pr_cont`` tail split from its head (:attr:`KmsgRecord.continuation`) carries the default
    level, not its writer's: it counts by its text only (its head counts by its level).
    """
    failures, warnings, tolerated = [], [], []
    for group in _splats(records):
        fails = [r for r in group if _DMESG_FAIL.search(r.text)
                 or (r.level <= _CRIT_LEVEL and not r.continuation)]
        if not fails and len(group) > 1 and any(_STARVED.search(r.text) for r in group):
            tolerated.extend(r.line() for r in group)
            continue
        for record in group:
            if record in fails:
                failures.append(record.line())
            elif record.level <= WARNING_LEVEL and not record.continuation:
                warnings.append(record.line())
    return KernelLogVerdict(tuple(failures), tuple(warnings), tuple(tolerated))


class KernelLogProblem(AssertionError):
    """Raised after a test whose guest kernel log (between its markers) shows warnings or BUGs."""

    def __init__(self, verdict: KernelLogVerdict) -> None:
        self.verdict = verdict
        what = "BUG/oops" if verdict.failures else "warnings"
        super().__init__(f"the guest kernel logged {what} during the test:\n{verdict.summary()}")


class TestTimeout(Exception):
    """The watchdog ended the test (``kind`` is "per-test" or "inactivity")."""

    __test__ = False  # not a test class, whatever pytest's collection patterns say

    def __init__(self, kind: str, seconds: float) -> None:
        self.kind = kind
        self.seconds = seconds
        what = "ran longer than" if kind == "per-test" else "showed no activity for"
        super().__init__(f"{kind} timeout: the test {what} {seconds:g} s")


def _caused_by(exc: BaseException | None, cls: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception it was raised from/during is a ``cls`` (a fixture that
    turned a LabError into ``pytest.fail`` still reports an infrastructure problem)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, cls):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


@dataclass(frozen=True)
class PhaseResult:
    """What pytest saw in one phase (setup/call/teardown): its outcome and exception."""

    when: str
    outcome: str  # pytest's "passed" / "failed" / "skipped"
    exception: BaseException | None = None


def classify(phases: Iterable[PhaseResult], *, timed_out: bool = False,
             kernel_log: KernelLogVerdict | None = None) -> Outcome:
    """The outcome of a test from its phases, the watchdog and its kernel log slice."""
    phases = list(phases)
    if timed_out:
        return Outcome.TIMEOUT
    if any(isinstance(p.exception, KeyboardInterrupt) for p in phases):
        return Outcome.INTERRUPTED
    failed = [p for p in phases if p.outcome == "failed"]
    for phase in failed:
        exc = phase.exception
        if isinstance(exc, TestTimeout):
            return Outcome.TIMEOUT
        if isinstance(exc, GuestDied):
            return Outcome.CRASH
        if phase.when == "setup" and _caused_by(exc, LabError):
            return Outcome.INFRA
    if any(isinstance(p.exception, KernelLogProblem) for p in failed):
        problem = next(p.exception for p in failed if isinstance(p.exception, KernelLogProblem))
        assert isinstance(problem, KernelLogProblem)
        return Outcome.DMESG_FAIL if problem.verdict.failures else Outcome.DMESG_WARN
    if failed:
        if kernel_log is not None and kernel_log.failures:
            return Outcome.DMESG_FAIL
        exc = failed[0].exception
        if failed[0].when == "call" and (exc is None or isinstance(exc, AssertionError)
                                         or type(exc).__name__ == "Failed"):
            return Outcome.FAIL
        return Outcome.ERROR
    if any(p.outcome == "skipped" for p in phases):
        return Outcome.SKIP
    if kernel_log is not None and not kernel_log.clean:
        return Outcome.DMESG_FAIL if kernel_log.failures else Outcome.DMESG_WARN
    return Outcome.PASS


def allure_message(outcome: Outcome, message: str | None) -> str:
    """The Allure status message: ``[<outcome>] <message>`` (what categories.json matches)."""
    text = (message or "").strip()
    prefix = f"[{outcome.value}]"
    return text if text.startswith(prefix) else f"{prefix} {text}".rstrip()


__all__ = ["ALLURE", "AllureMapping", "Category", "KernelLogProblem", "KernelLogVerdict",
           "Outcome", "PhaseResult", "TestTimeout", "allure_message", "classify",
           "scan_kernel_log"]
