"""This worker's machines: one per guest configuration (booted on first use, reused, booted
again when a test broke it), with their capability snapshots, and which configuration a test
asks for."""
from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpuhil.bringup import RENDER_NODE
from gpuhil.gating.capabilities import Capabilities, probe_machine
from gpuhil.gating.expectations import Platform
from gpuhil.lab.configurations import CONFIGURATIONS, DEVICE_CONFIGURATIONS, label_of
from gpuhil.lab.qtest_spec import QtestSpec
from gpuhil.lab.errors import LabError
from gpuhil.lab.platform import platform_of
from gpuhil.lab.spec import GuestSpec
from gpuhil.lab.targets import TargetKind
from gpuhil.machine import LocalMachine, Machine
from gpuhil.pytestplugin.boot import boot_slot
from gpuhil.pytestplugin.keys import SNAPSHOT_KEY, SNAPSHOTS_KEY
from gpuhil.pytestplugin.options import Settings

__all__ = ["GpuhilSession", "GuestSlot", "PoolStats", "configuration_of", "grouped_by_configuration",
           "mem_available_mib",
           "resolve_spec", "spec_for"]

#: Memory a guest needs beyond its own RAM (QEMU, virglrenderer, the TCG translation cache).
_QEMU_OVERHEAD_MIB = 512


def resolve_spec(source: Any, where: str = "") -> tuple[str, GuestSpec | QtestSpec]:
    """A configuration label and spec from a name, a GuestSpec or QtestSpec, or a ``guest``
    marker."""
    if isinstance(source, pytest.Mark):
        spec = source.kwargs.get("spec")
        name = source.args[0] if source.args else source.kwargs.get("name")
        source = spec if spec is not None else name
    if isinstance(source, (GuestSpec, QtestSpec)):
        return label_of(source), source
    known = {**CONFIGURATIONS, **DEVICE_CONFIGURATIONS}
    if isinstance(source, str) and source in known:
        return source, known[source]
    raise pytest.UsageError(f"{where}: unknown guest configuration {source!r} (a GuestSpec, a "
                            f"QtestSpec or one of {', '.join(known)})")


def spec_for(request: pytest.FixtureRequest, default: str) -> tuple[str, GuestSpec]:
    """The configuration of the requesting test: indirect parametrization of ``guest``, else
    its ``guest`` marker, else what its device fixtures need, else ``default``."""
    return _spec_of(request.node, request.fixturenames, default)


def _spec_of(node: Any, fixturenames: Any, default: str) -> tuple[str, GuestSpec]:
    callspec = getattr(node, "callspec", None)
    if callspec is not None and "guest" in callspec.params:  # indirect parametrization
        return resolve_spec(callspec.params["guest"], node.nodeid)
    marker = node.get_closest_marker("guest")
    if marker is not None:
        return resolve_spec(marker, node.nodeid)
    if "vfio_device" in fixturenames:
        return resolve_spec("vfio")
    if "raw_gpu" in fixturenames:
        return resolve_spec("raw")
    return resolve_spec(default)


def configuration_of(item: pytest.Item, default: str) -> str:
    """The configuration label a collected test will boot ("" for a test that uses no guest):
    what tests are ordered by, so one configuration's tests run back to back."""
    names = getattr(item, "fixturenames", ())
    uses = {"guest", "capabilities", "virtgpu", "udmabuf", "vfio_device", "raw_gpu"}
    if not uses.intersection(names) and item.get_closest_marker("requires") is None:
        return ""
    return _spec_of(item, names, default)[0]


def grouped_by_configuration(items: list[pytest.Item], default: str) -> list[pytest.Item]:
    """The run order for a bounded pool: a module's tests stay together (its module fixtures
    are set up once) and within it tests of one configuration run back to back (file order
    otherwise kept); modules follow one another by the configuration of their first guest
    test, so modules of one configuration are adjacent."""
    modules: dict[Any, list[tuple[str, pytest.Item]]] = {}
    for item in items:
        modules.setdefault(item.path, []).append((configuration_of(item, default), item))
    order = sorted(modules.values(), key=lambda tests: min(
        (label for label, _ in tests if label), default=""))
    return [item for tests in order for _, item in sorted(tests, key=lambda t: t[0])]


def mem_available_mib() -> int | None:
    """The host's MemAvailable (None where /proc/meminfo does not say)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class PoolStats:
    """What the pool did in this worker: boots, evictions, and the most guests alive at once."""

    boots: int = 0
    evictions: int = 0
    peak_live: int = 0
    replaced: int = 0  # guests closed after a test that failed or left them unsound
    idle_deaths: list[str] = field(default_factory=list)  # QEMUs that died between tests


@dataclass
class GuestSlot:
    """One configuration's guest in this worker, and its capability snapshot."""

    label: str
    spec: GuestSpec | QtestSpec
    machine: Machine | None = None  # a Guest, a QtestMachine, or the LocalMachine
    capabilities: Capabilities | None = None
    render_node: str | None = None
    boots: int = 0
    boot_error: LabError | None = None  # a configuration that failed to boot is not retried
    last_used: int = 0  # the pool's use counter when a test last took this guest


class GpuhilSession:
    """This worker's guests (one per configuration), snapshots and leases."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self._setup: Any = None
        self._setup_error: LabError | None = None
        self._slots: dict[str, GuestSlot] = {}
        self._platform: Platform | None = None
        self.log_dir: Path | None = None
        self.stats = PoolStats()
        self._uses = 0

    # lab setup (built lazily: sessions that use no guest never touch the lab)
    def lab_setup(self) -> Any:
        if self._setup_error is not None:
            raise self._setup_error  # building the lab is not retried for every test
        if self._setup is None and self.settings.target.boots_guests:
            def progress(line: str) -> None:
                print(f"[gpuhil lab] {line}", file=sys.stderr, flush=True)
            try:
                self._setup = self.settings.target.lab_setup(progress)
            except LabError as exc:
                self._setup_error = exc
                raise
            except Exception as exc:
                self._setup_error = LabError(f"the lab ({self.settings.target.describe()}) could "
                                             f"not be set up: {type(exc).__name__}: {exc}")
                raise self._setup_error from exc
        return self._setup

    def platform(self) -> Platform:
        """The versions of the stack this session tests (what expectation files match on)."""
        if self._platform is None:
            self._platform = platform_of(self.lab_setup())
        return self._platform

    def _healthy(self, slot: GuestSlot, timeout: float = 15) -> bool:
        return self._unhealthy(slot, timeout) is None

    def _unhealthy(self, slot: GuestSlot, timeout: float) -> str | None:
        """None when the guest is alive and its agent answers (its render node still there),
        else why not."""
        machine = slot.machine
        if isinstance(machine, LocalMachine):
            return None
        if machine is None or not machine.alive:
            status = getattr(machine, "qemu_status", lambda: "gone")()
            said = [ln for ln in machine.qemu_stderr().splitlines() if ln.strip()][-2:] \
                if machine is not None else []
            return f"its QEMU {status}" + (f" ({' | '.join(said)})" if said else "")
        if machine.fatal is not None:
            return f"its console showed a fatal line: {machine.fatal}"
        check = f"test -e {slot.render_node}" if slot.render_node else "true"
        try:
            if machine.run(["sh", "-c", check], timeout=timeout).returncode != 0:
                return f"its render node {slot.render_node} is gone"
        except Exception as exc:
            return f"its agent did not answer ({type(exc).__name__}: {exc})"
        return None

    def after_test(self, slot: GuestSlot, call_failed: bool) -> str | None:
        """After a test on ``slot``'s guest: a test that failed may have damaged the device, so
        its guest is replaced (the next test boots a fresh one); after any other test (passed,
        xfailed, skipped in its body) the guest proves it is still sound (alive, agent answers,
        render node there), else it is replaced too and the reason is returned: the damage
        belongs to this test, not to the next one."""
        if slot.machine is None or isinstance(slot.machine, LocalMachine):
            return None
        reason = None if call_failed else self._unhealthy(slot, timeout=120)
        if call_failed or reason is not None:
            slot.machine.close()
            slot.machine = None
            self.stats.replaced += 1
        return reason

    def _boot(self, slot: GuestSlot) -> None:
        slot.boots += 1
        assert self.log_dir is not None
        log_dir = self.log_dir / f"{self.worker}-{slot.label.replace(':', '_')}-{slot.boots}"
        captured = boot_slot(slot, self.lab_setup(), self.settings, log_dir,
                             f"{self.worker}-{slot.label.split(':')[0]}")
        if captured is not None:
            self._record(captured, slot)

    def _record(self, capabilities: Capabilities, slot: GuestSlot) -> None:
        slot.capabilities = capabilities
        snapshots = self.config.stash[SNAPSHOTS_KEY]
        snapshots[slot.label] = capabilities
        if SNAPSHOT_KEY not in self.config.stash:
            self.config.stash[SNAPSHOT_KEY] = capabilities

    def key(self, label: str) -> str:
        """The slot of a configuration: on the local target every configuration is the machine."""
        return "local" if self.settings.target.kind is TargetKind.LOCAL else label

    def existing(self, label: str) -> GuestSlot:
        return self._slots[self.key(label)]

    def slot(self, label: str, spec: GuestSpec) -> GuestSlot:
        """The configuration's guest, healthy: reused, or booted (again) when missing or broken."""
        label = self.key(label)
        slot = self._slots.setdefault(label, GuestSlot(label, spec))
        if self.settings.target.kind is TargetKind.LOCAL:
            if slot.machine is None:
                slot.machine = LocalMachine()
                node = RENDER_NODE if os.path.exists(RENDER_NODE) else None
                slot.render_node = node
                self._record(Capabilities("local", probe_machine(node, gpu=node is not None)), slot)
            return slot
        if slot.machine is not None and not self._healthy(slot):
            self._note_idle_death(slot)
            slot.machine.close()
            slot.machine = None
        if slot.boot_error is not None:
            raise slot.boot_error
        if slot.machine is None:
            self._make_room(slot)
            try:
                self._boot(slot)
                self.stats.boots += 1
                self.stats.peak_live = max(self.stats.peak_live, len(self._live()))
            except LabError as exc:
                if slot.machine is not None:
                    slot.machine.close()
                    slot.machine = None
                if slot.capabilities is None:
                    slot.boot_error = exc  # it never worked: later tests get the same error at once
                raise
        self._uses += 1
        slot.last_used = self._uses
        return slot

    def _note_idle_death(self, slot: GuestSlot) -> None:
        """A guest's QEMU that exited while no test used it: a session-level record with what
        QEMU last said (an abort message), not only a file in its log directory."""
        machine = slot.machine
        if getattr(machine, "returncode", None) is None:
            return
        said = [line for line in machine.qemu_stderr().splitlines() if line.strip()][-3:]
        self.stats.idle_deaths.append(
            f"[{slot.label}] QEMU {machine.qemu_status()} while idle between tests"
            + (f"; its stderr ends: {' | '.join(said)}" if said else "")
            + (f" (logs: {machine.console_log.parent})" if hasattr(machine, "console_log") else ""))

    def note_idle_deaths(self) -> None:
        """Record the live guests whose QEMU died after their last test."""
        for slot in self._live():
            self._note_idle_death(slot)

    def _live(self) -> list[GuestSlot]:
        return [s for s in self._slots.values() if s.machine is not None]

    def _make_room(self, booting: GuestSlot) -> None:
        """Before a boot: stop the least recently used guests while this worker is at its bound
        (``--gpuhil-max-guests``) or the host lacks the memory the new guest needs.  An evicted
        configuration keeps its capability snapshot and boots again when a test needs it."""
        need = booting.spec.memory_mib + _QEMU_OVERHEAD_MIB
        bound = self.settings.max_guests
        while True:
            live = sorted(self._live(), key=lambda s: s.last_used)
            available = mem_available_mib()
            if not live or not ((bound and len(live) >= bound)
                                or (available is not None and available < need)):
                return
            victim = live[0]
            assert victim.machine is not None
            victim.machine.close()
            victim.machine = None
            self.stats.evictions += 1

    def close(self) -> None:
        """Stop every guest at once (in parallel: a worker ended by Ctrl-C has seconds, not a
        grace period per guest, before xdist kills it)."""
        machines = [slot.machine for slot in self._slots.values() if slot.machine is not None]
        for slot in self._slots.values():
            slot.machine = None
        threads = [threading.Thread(target=machine.close, name=f"close-{n}", daemon=True)
                   for n, machine in enumerate(machines)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
