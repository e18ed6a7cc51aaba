"""The guest pool's bookkeeping without guests: which configuration a collected test boots (the
order tests run in), least-recently-used eviction at the bound and under memory pressure.  Booting and reaping real guests:
test_plugin_faults.py."""
from __future__ import annotations

import pytest

from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.pytestplugin import pool

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


def test_modules_stay_together_and_follow_one_another_by_configuration(pytester):
    pytester.makepyfile(test_b_virgl="""
        import pytest
        @pytest.mark.guest("virgl")
        def test_v(guest): pass
        def test_plain_python(): pass
    """, test_a_venus="""
        def test_default(guest): pass
    """, test_c_plain="""
        import pytest
        @pytest.mark.guest("plain")
        def test_p(guest): pass
    """)
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "--co", "-q",
                                          "-p", "no:randomly")
    names = [line for line in result.outlines if "::" in line]
    assert names == ["test_c_plain.py::test_p", "test_a_venus.py::test_default",
                     "test_b_virgl.py::test_plain_python", "test_b_virgl.py::test_v"]


class _DeadGuest(_Machine):
    """A guest whose QEMU aborted after its last test (what the pool reads of a dead Guest)."""

    alive, returncode = False, -6

    def qemu_status(self) -> str:
        return "killed by SIGABRT"

    def qemu_stderr(self) -> str:
        return "virgl ready\nqemu: epoxy_get_proc_address: Assertion failed\n"


def test_qemu_that_died_idle_is_recorded_with_what_it_said(monkeypatch):
    session, closed = _session(2), []
    _live(session, closed, "drm")
    session._slots["drm"].machine = _DeadGuest("drm", closed)
    session.note_idle_deaths()
    assert session.stats.idle_deaths == [
        "[drm] QEMU killed by SIGABRT while idle between tests; its stderr ends: virgl ready | "
        "qemu: epoxy_get_proc_address: Assertion failed"]
