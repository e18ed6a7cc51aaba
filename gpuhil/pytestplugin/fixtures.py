"""The lab plugin's fixtures: ``lab``, ``guest``, ``capabilities``, the device handles
(``virtgpu``, ``udmabuf``, ``vfio_device``, ``raw_gpu``), ``host_gpu``, and the autouse ones that
gate a test and apply its expectation entry.  Each fixture that brings a machine into play
records it as the test's machine (:data:`~gpuhil.pytestplugin.keys.MACHINE_KEY`)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from gpuhil.devices.pci_ids import IVSHMEM
from gpuhil.gating.capabilities import Capabilities
from gpuhil.handles import (RawGpuDevice, UdmabufDevice, VfioDevice, VirtGpu, bound_to_vfio,
                            qtest_raw_gpu, raw_gpu_bound)
from gpuhil.host.inventory import HostGpu, host_gpus, select
from gpuhil.lab.configurations import is_raw_spec
from gpuhil.lab.qtest_spec import QtestSpec
from gpuhil.lab.targets import Target
from gpuhil.machine import LocalMachine, Machine
from gpuhil.lab.errors import MissingQemuFeature
from gpuhil.pytestplugin.gating import apply_expectations, gate
from gpuhil.pytestplugin.leasing import lease_for_test
from gpuhil.pytestplugin.keys import (CALL_FAILED_KEY, EXPECTATIONS_KEY, REQUIRES_KEY, SESSION_KEY,
                                      SNAPSHOTS_KEY, use_machine)
from gpuhil.pytestplugin.pool import GpuhilSession, GuestSlot, spec_for

__all__ = ["Lab", "capabilities", "guest", "host_gpu", "lab", "raw_gpu", "udmabuf", "vfio_device",
           "virtgpu"]


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
    root = session.settings.log_dir
    if root is None:
        session.log_dir = tmp_path_factory.mktemp("gpuhil-guests")
    else:  # kept with the run's results: basetemp is pruned by later sessions
        run = getattr(pytestconfig, "workerinput", {}).get("testrunuid") or uuid.uuid4().hex
        session.log_dir = root / f"run-{run[:12]}"  # xdist's run id: one for all workers
        session.log_dir.mkdir(parents=True, exist_ok=True)
    return Lab(session.settings.target, session)


def _slot(request: pytest.FixtureRequest, lab: Lab) -> GuestSlot:
    """The test's slot, healthy, gated on its capabilities, its machine recorded for the test."""
    label, spec = spec_for(request, lab.session.settings.default_guest)
    try:
        slot = lab.session.slot(label, spec)
    except MissingQemuFeature as exc:
        missing = exc  # skipped (or failed) outside the handler: not caused by a LabError
    else:
        missing = None
    if missing is not None:
        message = f"configuration {label}: {missing}"
        broken = [m for m in lab.session.settings.must_have if set(m.names) & set(missing.names)]
        if broken:
            pytest.fail(f"--must-have {broken[0]} does not hold: {message}", pytrace=False)
        pytest.skip(message)
    assert slot.capabilities is not None and slot.machine is not None
    if _AFTER_TEST not in request.node.stash:  # once per test, however many fixtures ask
        request.node.stash[_AFTER_TEST] = True
        request.addfinalizer(lambda: _after_test(request.node, lab, slot))
    gate(request.node, lab.session.settings.must_have, slot.capabilities)
    use_machine(request, slot.machine)  # a test skipped by its requirements has no machine
    return slot


_AFTER_TEST = pytest.StashKey[bool]()


def _after_test(item: pytest.Item, lab: Lab, slot: GuestSlot) -> None:
    """The test's guest is replaced after a failure, and proves it is sound after anything
    else; a guest this test left unsound is this test's error (in its teardown), unless the
    test says it may kill its guest (``guest_may_die``)."""
    reason = lab.session.after_test(slot, item.stash.get(CALL_FAILED_KEY, False))
    if reason is not None and item.get_closest_marker("guest_may_die") is None:
        pytest.fail(f"the guest of configuration {slot.label} was not sound after this test: "
                    f"{reason} (it was replaced, so the next test does not inherit it)",
                    pytrace=False)


def _existing(request: pytest.FixtureRequest, lab: Lab) -> tuple[str, GuestSlot]:
    """The test's configuration label and its slot (booted through the ``guest`` fixture)."""
    request.getfixturevalue("guest")
    label, _ = spec_for(request, lab.session.settings.default_guest)
    return label, lab.session.existing(label)


@pytest.fixture
def guest(request: pytest.FixtureRequest, lab: Lab) -> Machine:
    """A booted guest of the test's configuration (healthy: reused, or fresh after a crash)."""
    return _slot(request, lab).machine


@pytest.fixture(autouse=True)
def _gpuhil_requires(request: pytest.FixtureRequest) -> None:
    """Tests with ``requires`` markers are gated even when they use no guest fixture directly."""
    if request.node.stash.get(REQUIRES_KEY, None) and "guest" not in request.fixturenames:
        request.getfixturevalue("guest")


@pytest.fixture(autouse=True)
def _gpuhil_expectations(request: pytest.FixtureRequest) -> None:
    """A test with an entry in the expectation file governing this platform becomes an xfail."""
    if request.node.stash.get(EXPECTATIONS_KEY, []):
        session = request.config.stash[SESSION_KEY]
        apply_expectations(request.node, session.platform(), session.settings.expectations)


@pytest.fixture
def capabilities(request: pytest.FixtureRequest, lab: Lab) -> Capabilities:
    """The capability snapshot of the test's guest configuration."""
    return _existing(request, lab)[1].capabilities


@pytest.fixture
def virtgpu(request: pytest.FixtureRequest, lab: Lab) -> VirtGpu:
    """The render node of the test's guest (virtio_gpu loaded); skips when the device could not
    initialize or the configuration has none."""
    label, slot = _existing(request, lab)
    assert slot.capabilities is not None
    if slot.capabilities.device_error:
        pytest.skip(f"virtio-gpu unavailable [{label}]: {slot.capabilities.device_error}")
    if slot.render_node is None:
        pytest.skip(f"the {label} configuration has no virtio-gpu render node")
    return VirtGpu(slot.machine, slot.render_node, slot.capabilities)


@pytest.fixture
def udmabuf(guest: Machine, capabilities: Capabilities) -> UdmabufDevice:
    """/dev/udmabuf in the test's guest (skips with the reason when it is missing)."""
    if not capabilities.probe.udmabuf:
        pytest.skip(f"/dev/udmabuf is missing [{capabilities.configuration}]")
    return UdmabufDevice(guest, "/dev/udmabuf", capabilities.probe.udmabuf_size_limit_mb,
                         capabilities.probe.udmabuf_list_limit)


@pytest.fixture
def vfio_device(request: pytest.FixtureRequest, guest: Machine,
                capabilities: Capabilities) -> Iterator[VfioDevice]:
    """The vIOMMU guest's ivshmem-plain device bound to vfio-pci (ids overridable with
    ``@pytest.mark.vfio_ids(vendor, device)``); its original driver is restored afterwards."""
    if isinstance(guest, LocalMachine):
        pytest.skip("vfio_device needs a lab guest with a vIOMMU (the local target has none)")
    label, spec = spec_for(request, "vfio")
    if spec.iommu is None:
        pytest.skip(f"vfio_device needs a guest with a vIOMMU; [{label}] has none "
                    f"(use @pytest.mark.guest('vfio'))")
    marker = request.node.get_closest_marker("vfio_ids")
    vendor, device = marker.args if marker is not None else IVSHMEM
    with bound_to_vfio(guest, vendor, device) as (address, group, original):
        yield VfioDevice(guest, address, vendor, device, group, original, spec.iommu)


@pytest.fixture
def raw_gpu(request: pytest.FixtureRequest, guest: Machine) -> Iterator[RawGpuDevice]:
    """The virtio-gpu (1af4:1050) for gpuhil.raw.rawgpu: on a qtest configuration the device
    of that QEMU (no guest), on the "raw" guest its virtio-gpu bound to vfio-pci (its original
    driver, virtio-pci, restored afterwards)."""
    if isinstance(guest, LocalMachine):
        pytest.skip("raw_gpu needs a lab guest whose virtio-gpu sits behind a vIOMMU, or a "
                    "qtest configuration")
    label, spec = spec_for(request, "raw")
    if not is_raw_spec(spec):
        pytest.skip(f"raw_gpu needs a virtio-gpu with iommu_platform=on behind a vIOMMU, or a "
                    f"qtest configuration; [{label}] is "
                    f"{spec.gpu.device_arg() if spec.gpu else 'without a GPU'}")
    if isinstance(spec, QtestSpec):
        yield qtest_raw_gpu(guest)
        return
    with raw_gpu_bound(guest) as device:
        yield device


@pytest.fixture
def host_gpu(pytestconfig: pytest.Config) -> Iterator[HostGpu]:
    """A host GPU (pyudev) matching --gpuhil-gpu, leased for the test; skips when there is none,
    and when all are leased by others follows --gpuhil-lease-busy (skip, wait or fail)."""
    settings = pytestconfig.stash[SESSION_KEY].settings
    found = host_gpus()
    selectors = list(settings.gpu_selectors) + [
        g.pci or g.render_node for g in settings.target.gpus if g.pci or g.render_node]
    chosen = select(found, selectors)
    if not chosen:
        seen = ", ".join(str(g) for g in found) or "none"
        pytest.skip(f"no host GPU matches {selectors or 'any'} (pyudev found display-class PCI "
                    f"devices: {seen})")
    with lease_for_test([g.pci_slot for g in chosen], settings) as lease:
        yield next(g for g in chosen if g.pci_slot == lease.resource)
