"""The gpuhil pytest plugin: lab fixtures, run-time capability gating, host resource leases.

Fixtures: ``lab`` (session: the target and its guests), ``guest`` (a booted guest of the test's
configuration, reused across tests, replaced when a test crashed it), ``virtgpu`` (the guest's
render node, driver loaded), ``udmabuf``, ``vfio_device`` (a lab PCI device bound to vfio-pci in
a vIOMMU guest, original driver restored afterwards), ``raw_gpu`` (the "raw" guest's virtio-gpu
bound to vfio-pci for :class:`gpuhil.raw.rawgpu.RawGpu`), ``host_gpu`` (a leased host GPU).

Markers: ``@pytest.mark.requires("capset.venus and param.host_visible")`` skips (or, under
``--must-have``, fails) when the probed capabilities do not satisfy the expression;
``@pytest.mark.guest("vfio")`` / ``@pytest.mark.guest(spec=GuestSpec(...))`` picks the guest
configuration (``@pytest.mark.parametrize("guest", ["venus", "virgl"], indirect=True)`` too).

Seams for the report plugin: the test's guest is ``item.funcargs["guest"]``; the first
configuration's capability snapshot is ``config.stash[SNAPSHOT_KEY]`` and all of them are
``config.stash[SNAPSHOTS_KEY]`` (label -> :class:`~gpuhil.gating.capabilities.Capabilities`).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from gpuhil.gating import capexpr
from gpuhil.gating.snapshot import snapshot
from gpuhil.gating.expectations import (
    Expectation, ExpectationError, ExpectationFile, Platform, load_directory,
)
from gpuhil.gating.capabilities import (
    Capabilities, DeviceInitError, GuestProbe, capset_summary, device_init_failure, probe_machine,
    qemu_properties,
)
from gpuhil.host.inventory import HostGpu, SelectorError, host_gpus, parse_selector, select
from gpuhil.lab.errors import LabError
from gpuhil.lab.configurations import CONFIGURATIONS, is_raw_spec, label_of
from gpuhil.lab.spec import GuestSpec
from gpuhil.devices.pci_ids import IVSHMEM, VIRTIO_GPU
from gpuhil.devices.vfio_binding import bind_vfio, restore_driver
from gpuhil.machine import LocalMachine
from gpuhil.host.lease import Lease, LeaseBusy, acquire_any
from gpuhil.lab.targets import Target, TargetError, TargetKind, parse_target

__all__ = ["CONFIGURATIONS", "GpuhilSession", "LocalMachine", "SNAPSHOT_KEY", "SNAPSHOTS_KEY",
           "UdmabufDevice", "VfioDevice", "VirtGpu"]

RENDER_NODE = "/dev/dri/renderD128"

SNAPSHOT_KEY = pytest.StashKey[Capabilities]()
SNAPSHOTS_KEY = pytest.StashKey[dict[str, Capabilities]]()
SESSION_KEY = pytest.StashKey["GpuhilSession"]()


# --- options -----------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gpuhil", "gpuhil hardware-in-the-loop")

    def option(name: str, ini: str, help: str, default: Any = None, kind: str = "string",
               append: bool = False) -> None:
        group.addoption(name, action="append" if append else "store", dest=ini, default=None,
                        help=f"{help} (ini: {ini})")
        parser.addini(ini, help, type="linelist" if append else kind, default=default)

    option("--gpuhil-target", "gpuhil_target",
           "where suites run: 'lab' (the virtual lab), 'local' (this machine has the device) or "
           "the path of a lab config TOML file", default="lab")
    option("--gpuhil-gpu", "gpuhil_gpu", "host GPU selection: PCI slot, vendor:device or render "
           "node (repeatable)", default=[], append=True)
    option("--must-have", "gpuhil_must_have", "capability expression that must hold: a test "
           "skipped for a capability it names fails instead (repeatable)", default=[], append=True)
    option("--gpuhil-guest", "gpuhil_guest", f"default guest configuration "
           f"({', '.join(CONFIGURATIONS)})", default="venus")
    option("--gpuhil-boot-timeout", "gpuhil_boot_timeout", "seconds a guest may take to boot",
           default="180")
    option("--gpuhil-device-timeout", "gpuhil_device_timeout", "seconds for the guest's render "
           "node to appear after loading virtio_gpu", default="30")
    option("--gpuhil-expectations", "gpuhil_expectations", "directory of per-platform "
           "expectation files (known bugs => strict xfail); default: <rootdir>/suites/expectations",
           default="")
    option("--gpuhil-lease-dir", "gpuhil_lease_dir", "directory of host resource leases",
           default="~/.cache/gpuhil/leases")
    option("--gpuhil-lease-timeout", "gpuhil_lease_timeout", "seconds to wait for a leased host "
           "resource before skipping", default="60")


@dataclass(frozen=True)
class Settings:
    """The validated options."""

    target: Target
    gpu_selectors: tuple[str, ...]
    must_have: tuple[capexpr.Expr, ...]
    default_guest: str
    boot_timeout: float
    device_timeout: float
    lease_dir: Path
    lease_timeout: float
    expectations: tuple[ExpectationFile, ...] = ()


def _value(config: pytest.Config, ini: str) -> Any:
    cli = getattr(config.option, ini, None)
    return cli if cli is not None else config.getini(ini)


def _seconds(config: pytest.Config, ini: str, option: str, allow_zero: bool = False) -> float:
    raw = _value(config, ini)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{option}={raw!r}: expected a number of seconds") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise pytest.UsageError(f"{option}={raw!r}: must be {'>= 0' if allow_zero else '> 0'}")
    return value


def parse_settings(config: pytest.Config) -> Settings:
    """Validate every gpuhil option; a bad one is a UsageError naming the option and value."""
    try:
        target = parse_target(str(_value(config, "gpuhil_target")))
    except TargetError as exc:
        raise pytest.UsageError(str(exc)) from None
    selectors = tuple(_value(config, "gpuhil_gpu") or ())
    for selector in selectors:
        try:
            parse_selector(selector)
        except SelectorError as exc:
            raise pytest.UsageError(str(exc)) from None
    must_have = []
    for text in _value(config, "gpuhil_must_have") or ():
        try:
            must_have.append(capexpr.parse(text))
        except capexpr.CapExprError as exc:
            raise pytest.UsageError(f"--must-have: {exc}") from None
    default_guest = str(_value(config, "gpuhil_guest"))
    if default_guest not in CONFIGURATIONS:
        raise pytest.UsageError(f"--gpuhil-guest={default_guest!r}: unknown configuration "
                                f"(known: {', '.join(CONFIGURATIONS)})")
    where = str(_value(config, "gpuhil_expectations") or "")
    directory = Path(where).expanduser() if where else config.rootpath / "suites" / "expectations"
    if where and not directory.is_dir():
        raise pytest.UsageError(f"--gpuhil-expectations={where!r}: not a directory")
    try:
        expectations = tuple(load_directory(directory))
    except ExpectationError as exc:
        raise pytest.UsageError(f"expectations: {exc}") from None
    return Settings(
        target, selectors, tuple(must_have), default_guest,
        _seconds(config, "gpuhil_boot_timeout", "--gpuhil-boot-timeout"),
        _seconds(config, "gpuhil_device_timeout", "--gpuhil-device-timeout"),
        Path(str(_value(config, "gpuhil_lease_dir"))).expanduser(),
        _seconds(config, "gpuhil_lease_timeout", "--gpuhil-lease-timeout", allow_zero=True),
        expectations,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requires(expression): skip (or fail under --must-have) "
                            "unless the probed capabilities satisfy the expression")
    config.addinivalue_line("markers", "guest(name=None, *, spec=None): the guest configuration "
                            "the test's guest fixture boots")
    config.addinivalue_line("markers", "vfio_ids(vendor, device): the PCI function the "
                            "vfio_device fixture binds (default: ivshmem-plain)")
    settings = parse_settings(config)
    config.stash[SESSION_KEY] = GpuhilSession(config, settings)
    config.stash[SNAPSHOTS_KEY] = {}


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def _requirements(item: pytest.Item) -> list[capexpr.Expr]:
    out = []
    for mark in item.iter_markers("requires"):
        if len(mark.args) != 1 or mark.kwargs or not isinstance(mark.args[0], str):
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires takes one expression "
                                    f"string, got args={mark.args!r} kwargs={mark.kwargs!r}")
        try:
            out.append(capexpr.parse(mark.args[0]))
        except capexpr.CapExprError as exc:
            raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.requires: {exc}") from None
    return out


REQUIRES_KEY = pytest.StashKey[list[capexpr.Expr]]()
EXPECTATIONS_KEY = pytest.StashKey[list[tuple[ExpectationFile, Expectation]]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[SESSION_KEY].settings
    for item in items:
        item.stash[REQUIRES_KEY] = _requirements(item)
        if item.get_closest_marker("guest") is not None:
            resolve_spec(item.get_closest_marker("guest"), item.nodeid)  # validate early
        item.stash[EXPECTATIONS_KEY] = [(f, e) for f in settings.expectations for e in f.entries
                                        if e.covers(item.nodeid)]
    _warn_unmatched(settings.expectations, items)


def _warn_unmatched(files: tuple[ExpectationFile, ...], items: list[pytest.Item]) -> None:
    """An entry for a collected test file that matches none of its tests is stale or mistyped."""
    nodeids = [item.nodeid for item in items]
    for file in files:
        for entry in file.entries:
            module = entry.test.split("::", 1)[0]
            collected = [n for n in nodeids if n.split("::", 1)[0] == module]
            if collected and not any(entry.covers(n) for n in collected):
                warnings.warn(pytest.PytestConfigWarning(
                    f"{entry.source}: {entry.test!r} matches no collected test"))


def resolve_spec(source: Any, where: str = "") -> tuple[str, GuestSpec]:
    """A configuration label and spec from a name, a GuestSpec, or a ``guest`` marker."""
    if isinstance(source, pytest.Mark):
        spec = source.kwargs.get("spec")
        name = source.args[0] if source.args else source.kwargs.get("name")
        source = spec if spec is not None else name
    if isinstance(source, GuestSpec):
        return label_of(source), source
    if isinstance(source, str) and source in CONFIGURATIONS:
        return source, CONFIGURATIONS[source]
    raise pytest.UsageError(f"{where}: unknown guest configuration {source!r} (a GuestSpec or "
                            f"one of {', '.join(CONFIGURATIONS)})")


# --- the machines tests talk to ----------------------------------------------------------------

@dataclass
class GuestSlot:
    """One configuration's guest in this worker, and its capability snapshot."""

    label: str
    spec: GuestSpec
    machine: Any = None  # Guest, or LocalMachine
    capabilities: Capabilities | None = None
    render_node: str | None = None
    boots: int = 0
    boot_error: LabError | None = None  # a configuration that failed to boot is not retried


def prepare_gpu(guest: Any, timeout: float, node: str = RENDER_NODE) -> str:
    """Load virtio_gpu in the guest and wait for ``node``; raise DeviceInitError within about a
    second when QEMU says the renderer could not initialize (the guest would wait for capsets
    forever), LabError when the node does not appear within ``timeout``."""
    qemu_before = len(guest.process.stderr_text())
    started = time.monotonic()
    marker = guest.kmsg_mark("gpuhil: loading virtio_gpu")
    guest.run(["sh", "-c", "modprobe virtio_gpu </dev/null >/dev/null 2>&1 &"], check=True)
    deadline = time.monotonic() + timeout
    while True:
        failure = device_init_failure(guest.process.stderr_text()[qemu_before:])
        if failure:
            time.sleep(0.5)  # let the guest's side of the story reach the log
            failure = device_init_failure(guest.process.stderr_text()[qemu_before:],
                                          guest.kernel_log(marker))
            raise DeviceInitError(f"the GPU ({guest.spec.gpu.device_arg()}) could not initialize "
                                  f"its renderer on this host (seen {time.monotonic() - started:.1f} s "
                                  f"after loading virtio_gpu)", failure)
        if guest.run(["test", "-e", node]).returncode == 0:
            late = device_init_failure("", guest.kernel_log(marker))
            if late:
                raise DeviceInitError("the guest driver timed out waiting for capsets", late)
            return node
        if time.monotonic() >= deadline:
            raise LabError(f"{node} did not appear within {timeout:g} s of modprobe virtio_gpu; "
                           f"guest log:\n" + "\n".join(guest.kernel_log(marker)[-20:]))
        time.sleep(0.1)


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
            setup = self.lab_setup()
            assets = getattr(setup, "assets", None)
            if assets is not None:
                self._platform = Platform(assets.manifest.qemu, assets.manifest.virglrenderer,
                                          assets.kernel_release)
            else:  # the local machine, or a lab machine with its own QEMU and kernel
                self._platform = Platform(kernel=os.uname().release if setup is None else "")
        return self._platform

    def _healthy(self, slot: GuestSlot) -> bool:
        guest = slot.machine
        if isinstance(guest, LocalMachine):
            return True
        try:
            if guest.process.poll() is not None or guest.process.console.fatal is not None:
                return False
            check = f"test -e {slot.render_node}" if slot.render_node else "true"
            return guest.run(["sh", "-c", check], timeout=15).returncode == 0
        except Exception:
            return False

    def _boot(self, slot: GuestSlot) -> None:
        from gpuhil.lab.guest import Guest

        slot.boots += 1
        assert self.log_dir is not None
        log_dir = self.log_dir / f"{self.worker}-{slot.label.replace(':', '_')}-{slot.boots}"
        guest = Guest(slot.spec, setup=self.lab_setup(), boot_timeout=self.settings.boot_timeout,
                      log_dir=log_dir, name=f"{self.worker}-{slot.label.split(':')[0]}")
        guest.start()  # LabError subclasses propagate: infrastructure errors
        slot.machine = guest
        slot.render_node = None
        device_error: str | None = None
        if slot.spec.gpu is not None and not is_raw_spec(slot.spec):
            try:
                slot.render_node = prepare_gpu(guest, self.settings.device_timeout)
            except DeviceInitError as exc:
                device_error = str(exc)
        if slot.capabilities is None:
            vfio = slot.spec.iommu is not None and bool(slot.spec.devices)
            self._record(snapshot(guest, slot.label, render_node=slot.render_node, vfio=vfio,
                                  raw=is_raw_spec(slot.spec), device_error=device_error), slot)

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
            slot.machine.close()
            slot.machine = None
        if slot.boot_error is not None:
            raise slot.boot_error
        if slot.machine is None:
            try:
                self._boot(slot)
            except LabError as exc:
                if slot.machine is not None:
                    slot.machine.close()
                    slot.machine = None
                if slot.capabilities is None:
                    slot.boot_error = exc  # it never worked: later tests get the same error at once
                raise
        return slot

    def close(self) -> None:
        for slot in self._slots.values():
            if slot.machine is not None:
                slot.machine.close()
                slot.machine = None


# --- capability gating -------------------------------------------------------------------------

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


MUST_HAVE_FAILURE = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """A test whose requirement a --must-have guarantees fails instead of running or skipping."""
    message = item.stash.get(MUST_HAVE_FAILURE, None)
    if message is not None:
        pytest.fail(message, pytrace=False)


# --- fixtures ----------------------------------------------------------------------------------

@dataclass
class Lab:
    """The session's target and this worker's guests."""

    target: Target
    session: GpuhilSession

    @property
    def setup(self) -> Any:
        """The LabSetup guests boot with (None on the local target)."""
        return self.session.lab_setup()

    def snapshots(self) -> dict[str, Capabilities]:
        return dict(self.session.config.stash[SNAPSHOTS_KEY])


@pytest.fixture(scope="session")
def lab(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """The target (virtual lab, lab config file, or local machine) and this worker's guests."""
    session = pytestconfig.stash[SESSION_KEY]
    session.log_dir = tmp_path_factory.mktemp("gpuhil-guests")
    return Lab(session.settings.target, session)


def _spec_for(request: pytest.FixtureRequest, default: str) -> tuple[str, GuestSpec]:
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and "guest" in callspec.params:  # indirect parametrization
        return resolve_spec(callspec.params["guest"], request.node.nodeid)
    marker = request.node.get_closest_marker("guest")
    if marker is not None:
        return resolve_spec(marker, request.node.nodeid)
    if "vfio_device" in request.fixturenames:
        return resolve_spec("vfio")
    if "raw_gpu" in request.fixturenames:
        return resolve_spec("raw")
    return resolve_spec(default)


def _slot(request: pytest.FixtureRequest, lab: Lab) -> GuestSlot:
    label, spec = _spec_for(request, lab.session.settings.default_guest)
    slot = lab.session.slot(label, spec)
    assert slot.capabilities is not None
    failure = check_requirements(request.node.stash.get(REQUIRES_KEY, []),
                                 lab.session.settings.must_have, slot.capabilities)
    if failure is not None:
        request.node.stash[MUST_HAVE_FAILURE] = failure
    return slot


@pytest.fixture
def guest(request: pytest.FixtureRequest, lab: Lab) -> Any:
    """A booted guest of the test's configuration (healthy: reused, or fresh after a crash)."""
    return _slot(request, lab).machine


@pytest.fixture(autouse=True)
def _gpuhil_requires(request: pytest.FixtureRequest) -> None:
    """Tests with ``requires`` markers are gated even when they use no guest fixture directly."""
    if request.node.stash.get(REQUIRES_KEY, None) and "guest" not in request.fixturenames:
        request.getfixturevalue("guest")


@pytest.fixture(autouse=True)
def _gpuhil_expectations(request: pytest.FixtureRequest) -> None:
    """A test with an entry in the expectation file of this platform becomes a strict xfail."""
    candidates = request.node.stash.get(EXPECTATIONS_KEY, [])
    if not candidates:
        return
    platform = request.config.stash[SESSION_KEY].platform()
    for file, entry in candidates:
        if file.applies_to(platform):
            request.node.add_marker(pytest.mark.xfail(reason=entry.marker_reason(platform),
                                                      strict=entry.strict))
            return


@pytest.fixture
def capabilities(request: pytest.FixtureRequest, lab: Lab) -> Capabilities:
    """The capability snapshot of the test's guest configuration."""
    request.getfixturevalue("guest")
    label, _ = _spec_for(request, lab.session.settings.default_guest)
    return lab.session.existing(label).capabilities


@dataclass(frozen=True)
class VirtGpu:
    """The guest's virtio-gpu render node: payloads open ``path`` with ``RenderNode(path)``."""

    machine: Any
    path: str
    capabilities: Capabilities

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(path, *args, **kwargs)`` where the device is."""
        return self.machine.call(func, self.path, *args, **kwargs)


@pytest.fixture
def virtgpu(request: pytest.FixtureRequest, lab: Lab) -> VirtGpu:
    """The render node of the test's guest (virtio_gpu loaded); skips when the device could not
    initialize or the configuration has none."""
    request.getfixturevalue("guest")
    label, _ = _spec_for(request, lab.session.settings.default_guest)
    slot = lab.session.existing(label)
    assert slot.capabilities is not None
    if slot.capabilities.device_error:
        pytest.skip(f"virtio-gpu unavailable [{label}]: {slot.capabilities.device_error}")
    if slot.render_node is None:
        pytest.skip(f"the {label} configuration has no virtio-gpu render node")
    return VirtGpu(slot.machine, slot.render_node, slot.capabilities)


@dataclass(frozen=True)
class UdmabufDevice:
    """``/dev/udmabuf`` where the device is, with its probed limits."""

    machine: Any
    path: str
    size_limit_mb: int | None
    list_limit: int | None


@pytest.fixture
def udmabuf(guest: Any, capabilities: Capabilities) -> UdmabufDevice:
    """/dev/udmabuf in the test's guest (skips with the reason when it is missing)."""
    if not capabilities.probe.udmabuf:
        pytest.skip(f"/dev/udmabuf is missing [{capabilities.configuration}]")
    return UdmabufDevice(guest, "/dev/udmabuf", capabilities.probe.udmabuf_size_limit_mb,
                         capabilities.probe.udmabuf_list_limit)


@dataclass(frozen=True)
class VfioDevice:
    """A PCI function of the guest bound to vfio-pci (its original driver comes back after)."""

    machine: Any
    address: str
    vendor: int
    device: int
    iommu_group: int
    original_driver: str | None


@contextmanager
def bound_to_vfio(guest: Any, vendor: int, device: int) -> Iterator[tuple[str, int, str | None]]:
    """The guest's first ``vendor:device`` function bound to vfio-pci inside the block, as
    (address, IOMMU group, original driver); the original driver comes back afterwards
    (LabError if it does not)."""
    address, group, original = guest.call(bind_vfio, vendor, device)
    try:
        yield address, group, original
    finally:
        if guest.process.poll() is None:
            now = guest.call(restore_driver, address, original)
            if now != original:
                raise LabError(f"{address} went back to {now}, not {original}")


@pytest.fixture
def vfio_device(request: pytest.FixtureRequest, guest: Any, capabilities: Capabilities) -> Iterator[VfioDevice]:
    """The vIOMMU guest's ivshmem-plain device bound to vfio-pci (ids overridable with
    ``@pytest.mark.vfio_ids(vendor, device)``); its original driver is restored afterwards."""
    if isinstance(guest, LocalMachine):
        pytest.skip("vfio_device needs a lab guest with a vIOMMU (the local target has none)")
    label, spec = _spec_for(request, "vfio")
    if spec.iommu is None:
        pytest.skip(f"vfio_device needs a guest with a vIOMMU; [{label}] has none "
                    f"(use @pytest.mark.guest('vfio'))")
    marker = request.node.get_closest_marker("vfio_ids")
    vendor, device = marker.args if marker is not None else IVSHMEM
    with bound_to_vfio(guest, vendor, device) as (address, group, original):
        yield VfioDevice(guest, address, vendor, device, group, original)


@pytest.fixture
def host_gpu(pytestconfig: pytest.Config) -> Iterator[HostGpu]:
    """A host GPU (pyudev) matching --gpuhil-gpu, leased for the test; skips when there is none."""
    settings = pytestconfig.stash[SESSION_KEY].settings
    found = host_gpus()
    selectors = list(settings.gpu_selectors) + [
        g.pci or g.render_node for g in settings.target.gpus if g.pci or g.render_node]
    chosen = select(found, selectors)
    if not chosen:
        seen = ", ".join(str(g) for g in found) or "none"
        pytest.skip(f"no host GPU matches {selectors or 'any'} (pyudev found display-class PCI "
                    f"devices: {seen})")
    try:
        lease: Lease = acquire_any([g.pci_slot for g in chosen], settings.lease_dir,
                                   settings.lease_timeout,
                                   holder=f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}")
    except LeaseBusy as exc:
        pytest.skip(str(exc))
    with lease:
        yield next(g for g in chosen if g.pci_slot == lease.resource)


# --- raw virtio-gpu (issue 6) ------------------------------------------------------------------

@dataclass(frozen=True)
class RawGpuDevice:
    """The guest's virtio-gpu bound to vfio-pci: payloads open ``address`` with
    ``gpuhil.raw.rawgpu.RawGpu.open(address)``."""

    machine: Any
    address: str
    iommu_group: int
    original_driver: str | None

    def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(address, *args, **kwargs)`` in the guest; a RawTimeout or another gpuhil
        error gets QEMU's run state and stderr tail attached as notes."""
        from gpuhil.errors import GpuhilError

        try:
            return self.machine.call(func, self.address, *args, **kwargs)
        except GpuhilError as exc:
            exc.add_note(self.qemu_state())
            raise

    def qemu_state(self) -> str:
        """QEMU's run state and the tail of its stderr (where DMA faults show up)."""
        try:
            status = self.machine.status()
        except Exception as exc:  # noqa: BLE001 - the report must not hide the original error
            status = f"unknown ({type(exc).__name__}: {exc})"
        tail = "\n".join(self.machine.qemu_stderr().splitlines()[-20:])
        return f"QEMU run state: {status}; QEMU stderr tail:\n{tail or '(empty)'}"


@contextmanager
def raw_gpu_bound(guest: Any) -> Iterator[RawGpuDevice]:
    """The guest's virtio-gpu bound to vfio-pci inside the block; its original driver comes
    back afterwards (LabError if it does not)."""
    with bound_to_vfio(guest, *VIRTIO_GPU) as (address, group, original):
        yield RawGpuDevice(guest, address, group, original)


@pytest.fixture
def raw_gpu(request: pytest.FixtureRequest, guest: Any) -> Iterator[RawGpuDevice]:
    """The "raw" guest's virtio-gpu (1af4:1050) bound to vfio-pci for gpuhil.raw.rawgpu; its
    original driver (virtio-pci) is restored afterwards."""
    if isinstance(guest, LocalMachine):
        pytest.skip("raw_gpu needs a lab guest whose virtio-gpu sits behind a vIOMMU")
    label, spec = _spec_for(request, "raw")
    if not is_raw_spec(spec):
        pytest.skip(f"raw_gpu needs a virtio-gpu with iommu_platform=on behind a vIOMMU; "
                    f"[{label}] is {spec.gpu.device_arg() if spec.gpu else 'without a GPU'}")
    with raw_gpu_bound(guest) as device:
        yield device
