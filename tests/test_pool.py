"""The guest pool's bookkeeping without guests: which configuration a collected test boots (the
order tests run in), least-recently-used eviction at the bound and under memory pressure, and
how a dead worker's end is described.  Booting and reaping real guests: test_plugin_faults.py."""
from __future__ import annotations

import pytest

from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.pytestplugin import pool
from gpuhil.pytestplugin.faults import exit_description

pytest_plugins = ["pytester"]


class _Machine:
    """Stands in for a Guest: only close() and the health check's attributes are used."""

    alive, fatal = True, None

    def __init__(self, label: str, closed: list[str]) -> None:
        self.label, self.closed = label, closed

    def close(self) -> None:
        self.closed.append(self.label)


def _session(max_guests: int) -> pool.GpuhilSession:
    session = object.__new__(pool.GpuhilSession)
    session.settings = type("S", (), {"max_guests": max_guests})()
    session._slots, session.stats, session._uses = {}, pool.PoolStats(), 0
    return session


def _live(session: pool.GpuhilSession, closed: list[str], *labels: str) -> None:
    for use, label in enumerate(labels, 1):
        slot = session._slots[label] = pool.GuestSlot(label, CONFIGURATIONS[label])
        slot.machine, slot.last_used = _Machine(label, closed), use


def test_bound_evicts_the_least_recently_used_guest(monkeypatch):
    monkeypatch.setattr(pool, "mem_available_mib", lambda: 1 << 20)
    session, closed = _session(2), []
    _live(session, closed, "plain", "virgl")
    session._make_room(pool.GuestSlot("venus", CONFIGURATIONS["venus"]))
    assert closed == ["plain"] and session.stats.evictions == 1
    assert session._slots["plain"].machine is None and session._slots["virgl"].machine is not None


def test_memory_pressure_evicts_below_the_bound_but_not_the_last_resort(monkeypatch):
    monkeypatch.setattr(pool, "mem_available_mib", lambda: 100)
    session, closed = _session(0), []
    _live(session, closed, "plain", "virgl", "drm")
    session._make_room(pool.GuestSlot("venus", CONFIGURATIONS["venus"]))
    assert closed == ["plain", "virgl", "drm"]  # then it boots and lets QEMU say what is wrong


def test_unbounded_pool_with_memory_keeps_every_guest(monkeypatch):
    monkeypatch.setattr(pool, "mem_available_mib", lambda: 1 << 20)
    session, closed = _session(0), []
    _live(session, closed, "plain", "virgl", "drm")
    session._make_room(pool.GuestSlot("venus", CONFIGURATIONS["venus"]))
    assert closed == []


def test_collection_orders_tests_by_configuration(pytester):
    pytester.makepyfile(test_order="""
        import pytest
        def test_no_guest(): pass
        @pytest.mark.guest("virgl")
        def test_virgl_1(guest): pass
        def test_default(guest): pass
        @pytest.mark.guest("virgl")
        def test_virgl_2(guest): pass
        @pytest.mark.parametrize("guest", ["plain", "virgl"], indirect=True)
        def test_param(guest): pass
    """)
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "--co", "-q",
                                          "-p", "no:randomly")
    names = [line.split("::")[1] for line in result.outlines if "::" in line]
    assert names == ["test_no_guest", "test_param[plain]", "test_default", "test_virgl_1",
                     "test_virgl_2", "test_param[virgl]"]


def test_worker_end_names_the_signal():
    assert exit_description(-9) == "killed by SIGKILL"
    assert exit_description(-11) == "killed by SIGSEGV"
    assert exit_description(3) == "exited with status 3"
    assert exit_description(None) == "still running"
