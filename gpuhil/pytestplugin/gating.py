"""Run-time gating of a test: its ``requires`` expressions against the probed capabilities (skip,
or fail under ``--must-have``), and the expectation files of the platform (xfail)."""
from __future__ import annotations

import warnings

import pytest

from gpuhil.gating import capexpr
from gpuhil.gating.capabilities import Capabilities, capset_summary
from gpuhil.gating.catalogue import unknown_names
from gpuhil.gating.expectations import Expectation, ExpectationFile, Platform, governing_files
from gpuhil.pytestplugin.keys import EXPECTATIONS_KEY, MUST_HAVE_FAILURE, REQUIRES_KEY, UNTRIAGED_KEY

__all__ = ["apply_expectations", "check_requirements", "describe_values", "expectations_of",
           "pytest_runtest_call", "requirements", "warn_unmatched"]


def requirements(item: pytest.Item) -> list[capexpr.Expr]:
    """The parsed ``requires`` markers of ``item`` (a UsageError naming the test when bad)."""
    out = []
    for mark in item.iter_markers("requires"):
        if len(mark.args) != 1 or mark.kwargs or not isinstance(mark.args[0], str):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires takes one expression "
                                    f"string, got args={mark.args!r} kwargs={mark.kwargs!r}")
        try:
            out.append(capexpr.parse(mark.args[0]))
        except capexpr.CapExprError as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires: {exc}") from None
        problem = unknown_names(out[-1].names)
        if problem:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires({mark.args[0]!r}): "
                                    f"{problem}")
    return out


def describe_values(names: tuple[str, ...], capabilities: Capabilities) -> str:
    """``capset.drm=absent (capsets: virgl v1, ...)``: the probed values of ``names``."""
    values = capabilities.as_dict()
    parts = []
    for name in names:
        text = f"{name}={values[name]!r}" if name in values else f"{name}=absent"
        if name.startswith("param.") and name not in values:
            errno_name = capabilities.probe.param_errors.get(name[len("param."):])
            if errno_name:
                text += f" (GETPARAM: {errno_name})"
        parts.append(text)
    context = []
    if any(n.startswith(("capset.", "renderer.")) for n in names):
        context.append(f"capsets: {capset_summary(capabilities.probe)}")
    if capabilities.device_error and not any(n == "device.error" for n in names):
        context.append(f"device error: {capabilities.device_error.splitlines()[0]}")
    return ", ".join(parts) + (f" ({'; '.join(context)})" if context else "")


def check_requirements(requirements: list[capexpr.Expr], must_have: tuple[capexpr.Expr, ...],
                       capabilities: Capabilities) -> str | None:
    """Skip unless every requirement holds; a requirement sharing a name with a --must-have
    expression that does not hold returns the failure message instead (the test then fails in
    its call phase, see :func:`pytest_runtest_call`)."""
    values = capabilities.as_dict()
    for requirement in requirements:
        if requirement.evaluate(values):
            continue
        reason = f"requires {requirement}: {describe_values(requirement.names, capabilities)} " \
                 f"[{capabilities.configuration}]"
        broken = [m for m in must_have
                  if not m.evaluate(values) and set(m.names) & set(requirement.names)]
        if broken:
            return f"--must-have {broken[0]} does not hold: {reason}"
        pytest.skip(reason)
    return None


def gate(item: pytest.Item, must_have: tuple[capexpr.Expr, ...], capabilities: Capabilities) -> None:
    """Gate ``item`` on the capabilities of its machine (skips, or records a must-have failure)."""
    failure = check_requirements(item.stash.get(REQUIRES_KEY, []), must_have, capabilities)
    if failure is not None:
        item.stash[MUST_HAVE_FAILURE] = failure


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A test whose requirement a --must-have guarantees fails instead of running or skipping."""
    message = item.stash.get(MUST_HAVE_FAILURE, None)
    if message is not None:
        pytest.fail(message, pytrace=False)


# --- expectation files -------------------------------------------------------------------------

def expectations_of(nodeid: str, files: tuple[ExpectationFile, ...]
                    ) -> list[tuple[ExpectationFile, Expectation]]:
    """The entries (of any platform) that cover ``nodeid``."""
    return [(f, e) for f in files for e in f.entries if e.covers(nodeid)]


def apply_expectations(item: pytest.Item, platform: Platform,
                       files: tuple[ExpectationFile, ...]) -> None:
    """A test with an entry in a file that governs ``platform`` (the newest not newer than it)
    becomes an xfail: strict on the stack the entry was triaged on (unless the bug is
    intermittent), not strict on a newer one, where a pass is "not reproduced"."""
    governing = governing_files(files, platform)
    for file, entry in item.stash.get(EXPECTATIONS_KEY, []):
        if any(file is g for g in governing) and entry.holds_on(platform):
            triaged = file.triaged_on(platform)
            item.add_marker(pytest.mark.xfail(reason=entry.marker_reason(platform, triaged),
                                              strict=entry.strict and triaged))
            if not triaged:
                item.stash[UNTRIAGED_KEY] = platform.describe()
            return


def warn_unmatched(files: tuple[ExpectationFile, ...], items: list[pytest.Item]) -> None:
    """An entry for a collected test file that matches none of its tests is stale or mistyped."""
    nodeids = [item.nodeid for item in items]
    for file in files:
        for entry in file.entries:
            module = entry.test.split("::", 1)[0]
            collected = [n for n in nodeids if n.split("::", 1)[0] == module]
            if collected and not any(entry.covers(n) for n in collected):
                warnings.warn(pytest.PytestConfigWarning(
                    f"{entry.source}: {entry.test!r} matches no collected test"))
