"""The stash keys the two gpuhil plugins share (neither imports the other's internals).

On the config: ``SESSION_KEY`` (this worker's :class:`~gpuhil.pytestplugin.pool.GpuhilSession`),
``SNAPSHOTS_KEY`` (configuration label -> :class:`~gpuhil.gating.capabilities.Capabilities`) and
``SNAPSHOT_KEY`` (the first of them).  On a test item: ``MACHINE_KEY``, the
:class:`~gpuhil.machine.Machine` the test talks to (the lab plugin's fixtures record it; a
fixture of your own records its machine with :func:`use_machine`), and the lab plugin's gating
state (``REQUIRES_KEY``, ``EXPECTATIONS_KEY``, ``MUST_HAVE_FAILURE``).
"""
from __future__ import annotations

from typing import Any

import pytest

from gpuhil.gating import capexpr
from gpuhil.gating.capabilities import Capabilities
from gpuhil.machine import Machine

__all__ = ["CALL_FAILED_KEY", "EXPECTATIONS_KEY", "MACHINE_KEY", "MUST_HAVE_FAILURE", "NOT_REPRODUCED",
           "NOT_REPRODUCED_KEY", "ORIGIN_KEY", "PLACE_KEY", "POOL_STATS_KEY", "REQUIRES_KEY", "SESSION_KEY", "UNTRIAGED_KEY",
           "SNAPSHOTS_KEY", "SNAPSHOT_KEY", "TIMER_KEY", "machine_of", "use_machine"]

SESSION_KEY = pytest.StashKey[Any]()
SNAPSHOT_KEY = pytest.StashKey[Capabilities]()
SNAPSHOTS_KEY = pytest.StashKey[dict[str, Capabilities]]()
#: The guest pool's numbers per worker ("main" without xdist): boots, evictions, peak_live.
POOL_STATS_KEY = pytest.StashKey[dict[str, dict[str, int]]]()

MACHINE_KEY = pytest.StashKey[Machine]()
REQUIRES_KEY = pytest.StashKey[list[capexpr.Expr]]()
EXPECTATIONS_KEY = pytest.StashKey[list[tuple[Any, Any]]]()  # (ExpectationFile, Expectation)
MUST_HAVE_FAILURE = pytest.StashKey[str]()
#: The stack a test's expectation entry was not yet triaged on (its xfail is not strict).
UNTRIAGED_KEY = pytest.StashKey[str]()
#: "not reproduced on <stack>": an untriaged known bug whose test passed (report and Allure).
NOT_REPRODUCED_KEY = pytest.StashKey[str]()
NOT_REPRODUCED = "gpuhil_not_reproduced"  # its user_properties name on the test's report
#: Whether the test's call phase failed (not an xfail): its guest may be damaged.
CALL_FAILED_KEY = pytest.StashKey[bool]()
#: Where this run's results come from (:class:`gpuhil.report.machines.RunOrigin`; results plugin).
ORIGIN_KEY = pytest.StashKey[Any]()
#: The labgrid place the session runs on (:class:`gpuhil.host.labgrid_place.PlaceInfo`; lab plugin).
PLACE_KEY = pytest.StashKey[Any]()
#: The watchdog pytest-timeout's timer hook started for the item (results plugin).
TIMER_KEY = pytest.StashKey[Any]()


def use_machine(request: pytest.FixtureRequest, machine: Machine) -> Machine:
    """Record ``machine`` as the test's machine (for its evidence and watchdog); returns it.

    Call it from a function-scoped fixture: ``return use_machine(request, my_guest)``.
    """
    request.node.stash[MACHINE_KEY] = machine
    return machine


def machine_of(item: pytest.Item) -> Machine | None:
    """The machine a test talks to, if a fixture recorded one."""
    return item.stash.get(MACHINE_KEY, None)
