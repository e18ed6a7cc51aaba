"""The gpuhil pytest plugin: lab fixtures, run-time capability gating, host resource leases.

Fixtures (:mod:`~gpuhil.pytestplugin.fixtures`): ``lab`` (session: the target and its guests),
``guest`` (a booted guest of the test's configuration, reused across tests, replaced when a test
crashed it), ``capabilities``, the device handles of :mod:`gpuhil.handles` (``virtgpu``: the
guest's render node, driver loaded; ``udmabuf``; ``vfio_device``: a lab PCI device bound to
vfio-pci in a vIOMMU guest, original driver restored afterwards; ``raw_gpu``: the "raw" guest's
virtio-gpu bound to vfio-pci for :class:`gpuhil.raw.rawgpu.RawGpu`), ``host_gpu`` (a leased
host GPU).

Markers: ``@pytest.mark.requires("capset.venus and param.host_visible")`` skips (or, under
``--must-have``, fails) when the probed capabilities do not satisfy the expression
(:mod:`~gpuhil.pytestplugin.gating`); ``@pytest.mark.guest("vfio")`` /
``@pytest.mark.guest(spec=GuestSpec(...))`` picks the guest configuration
(``@pytest.mark.parametrize("guest", ["venus", "virgl"], indirect=True)`` too).

Options: :mod:`~gpuhil.pytestplugin.options`; the per-worker guests:
:mod:`~gpuhil.pytestplugin.pool`.  What the results plugin reads is in
:mod:`~gpuhil.pytestplugin.keys`: the test's machine (``item.stash[MACHINE_KEY]``) and the
capability snapshots (``config.stash[SNAPSHOTS_KEY]``, label ->
:class:`~gpuhil.gating.capabilities.Capabilities`; the first one ``config.stash[SNAPSHOT_KEY]``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gpuhil.outcomes import Outcome
from gpuhil.pytestplugin.fixtures import (  # noqa: F401 - the plugin's fixtures
    _gpuhil_expectations, _gpuhil_requires, capabilities, guest, host_gpu, lab, raw_gpu, udmabuf,
    vfio_device, virtgpu,
)
from gpuhil.pytestplugin.gating import (  # noqa: F401 - pytest_runtest_call is a hook
    expectations_of, pytest_runtest_call, requirements, warn_unmatched,
)
from gpuhil.pytestplugin.reports import not_reproduced, pytest_runtest_makereport  # noqa: F401
from gpuhil.pytestplugin.keys import (EXPECTATIONS_KEY, POOL_STATS_KEY, REQUIRES_KEY, SESSION_KEY,
                                      SNAPSHOTS_KEY)
from gpuhil.pytestplugin.options import parse_settings, pytest_addoption  # noqa: F401 - a hook
from gpuhil.pytestplugin.allure_result import write_result
from gpuhil.pytestplugin.faults import WorkerFaults
from gpuhil.pytestplugin.places import hold_place, release_place
from gpuhil.pytestplugin.pool import GpuhilSession, grouped_by_configuration, resolve_spec


def _runs_root(session: GpuhilSession):
    """The run directories' root a dead worker may have left entries in (None: no lab guests)."""
    if not session.settings.target.boots_guests:
        return None
    from gpuhil.errors import GpuhilError
    from gpuhil.lab.setup import cache_dir_of

    try:
        return cache_dir_of() / "run"
    except GpuhilError:
        return None  # a cache that is no directory was reported when the lab was set up


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(expression): skip (or fail under --must-have) "
                            "unless the probed capabilities satisfy the expression")
    config.addinivalue_line("markers", "guest(name=None, *, spec=None): the guest configuration "
                            "the test's guest fixture boots")
    config.addinivalue_line("markers", "guest_may_die: this test may kill its guest on purpose "
                            "(a guest left unsound after it is replaced, not this test's error)")
    config.addinivalue_line("markers", "vfio_ids(vendor, device): the PCI function the "
                            "vfio_device fixture binds (default: ivshmem-plain)")
    session = config.stash[SESSION_KEY] = GpuhilSession(
        config, hold_place(config, parse_settings(config)))
    config.stash[SNAPSHOTS_KEY] = {}
    config.stash[POOL_STATS_KEY] = {}
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.pluginmanager.register(WorkerFaults(config, lambda: _runs_root(session)),
                                      "gpuhil-faults")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    try:
        if session is not None:
            session.close()
    finally:
        release_place(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SESSION_KEY].settings
    for item in items:
        item.stash[REQUIRES_KEY] = requirements(item)
        marker = item.get_closest_marker("guest")
        if marker is not None:
            resolve_spec(marker, item.nodeid)  # validate early
        item.stash[EXPECTATIONS_KEY] = expectations_of(item.nodeid, settings.expectations)
    warn_unmatched(settings.expectations, items)
    items[:] = grouped_by_configuration(items, settings.default_guest)


def pytest_sessionfinish(session: pytest.Session) -> None:
    pool_session = session.config.stash[SESSION_KEY]
    pool_session.note_idle_deaths()  # QEMUs that died after their last test
    stats = pool_session.stats
    worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
    for n, death in enumerate(stats.idle_deaths):  # a result QA sees in the report too
        write_result(session.config, f"gpuhil guest pool::{worker}::idle-death-{n}", Outcome.CRASH,
                     death, name=f"guest pool ({worker}): QEMU died while idle between tests")
    if hasattr(session.config, "workeroutput"):  # an xdist worker: the controller reports
        session.config.workeroutput["gpuhil_pool"] = dataclasses.asdict(stats)
    else:
        session.config.stash[POOL_STATS_KEY]["main"] = dataclasses.asdict(stats)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    stats = getattr(node, "workeroutput", {}).get("gpuhil_pool")
    if stats is not None:
        node.config.stash[POOL_STATS_KEY][node.gateway.id] = stats


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The known bugs not reproduced on a newer stack; one line for the pool's bound, boots,
    evictions and peak live guests per worker."""
    notes = [(r.nodeid, not_reproduced(r)) for r in terminalreporter.stats.get("xpassed", [])]
    notes = [(nodeid, note) for nodeid, note in notes if note is not None]
    if notes:
        terminalreporter.write_sep("=", "known bugs not reproduced (their entries may go)")
    for nodeid, note in notes:
        terminalreporter.write_line(f"gpuhil: known bug {note}: {nodeid}", yellow=True)
    per_worker = config.stash.get(POOL_STATS_KEY, {})
    for worker, stats in sorted(per_worker.items()):
        for death in stats["idle_deaths"]:
            terminalreporter.write_line(f"gpuhil: {worker}: {death}", red=True, bold=True)
    if not any(s["boots"] for s in per_worker.values()):
        return
    bound = config.stash[SESSION_KEY].settings.max_guests or "one per configuration"
    peaks = ", ".join(f"{w} {s['peak_live']}" for w, s in sorted(per_worker.items()))
    terminalreporter.write_line(
        f"gpuhil guest pool: bound {bound} per worker; {sum(s['boots'] for s in per_worker.values())}"
        f" boots, {sum(s['evictions'] for s in per_worker.values())} evictions,"
        f" {sum(s.get('replaced', 0) for s in per_worker.values())} replaced after a test;"
        f" peak live guests:"
        f" {peaks}")
