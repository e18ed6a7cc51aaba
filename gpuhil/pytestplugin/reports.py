"""What the lab plugin reads from a test's reports as they are made: whether its call phase
failed (its guest is then replaced, see :meth:`GpuhilSession.after_test`), and the "not
reproduced on <stack>" note of an untriaged known bug that passed."""
from __future__ import annotations

from typing import Iterator

import pytest

from gpuhil.pytestplugin.keys import (CALL_FAILED_KEY, MUST_HAVE_FAILURE, NOT_REPRODUCED,
                                      NOT_REPRODUCED_KEY, UNTRIAGED_KEY)

__all__ = ["not_reproduced", "pytest_runtest_makereport"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Iterator[pytest.TestReport]:
    report = yield
    if report.when != "call":
        return report
    # Not an xfail (reported as skipped), nor a --must-have failure (the test never ran).
    item.stash[CALL_FAILED_KEY] = report.failed and MUST_HAVE_FAILURE not in item.stash
    untriaged = item.stash.get(UNTRIAGED_KEY, None)
    if untriaged and report.passed and hasattr(report, "wasxfail"):
        note = f"not reproduced on {untriaged}"
        item.stash[NOT_REPRODUCED_KEY] = note
        report.user_properties.append((NOT_REPRODUCED, note))
    return report


def not_reproduced(report: pytest.TestReport) -> str | None:
    """The "not reproduced on <stack>" note of a test's report (None for any other test)."""
    return dict(getattr(report, "user_properties", ())).get(NOT_REPRODUCED)
