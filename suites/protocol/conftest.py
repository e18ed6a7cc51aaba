"""Fixtures of the protocol suite: the transport parameter, the device's own facts (probed once
per machine) and the QEMU stderr slice of each test.

Every test runs on both transports of the raw driver, the transport being the last test
parameter: ``qtest`` (QEMU under ``-accel qtest``, the "qtest-venus" configuration: the same
device, no guest) and ``vfio`` (the "raw" guest: the device behind a vIOMMU, driven through
vfio-pci).  A test that needs the vIOMMU says ``@pytest.mark.guest("raw")`` and runs on VFIO
only.

Which tests run is decided by ``@pytest.mark.requires`` on the raw device's capability names
(``raw.feature.edid``, ``raw.hostmem``, see ``gpuhil capabilities``), probed at start-up."""
from __future__ import annotations

import pytest

from gpuhil.machine import StderrSlice
from gpuhil.raw.qemu_log import parse
from suites.protocol import payloads

_FACTS: dict[int, dict] = {}

#: the transports, as (test id, configuration)
TRANSPORTS = (("qtest", "qtest-venus"), ("vfio", "raw"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A raw_gpu test without a ``guest`` marker runs on each transport."""
    if "raw_gpu" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("guest"):
        return
    metafunc.parametrize("guest", [label for _, label in TRANSPORTS], indirect=True,
                         ids=[name for name, _ in TRANSPORTS])


@pytest.fixture
def facts(raw_gpu) -> dict:
    """device_queries() of this guest's device (config, features, display, EDID, capsets),
    asked once per guest boot."""
    key = raw_gpu.machine.pid
    if key not in _FACTS:
        _FACTS[key] = raw_gpu.call(payloads.device_queries)
    return _FACTS[key]


@pytest.fixture
def qemu_log(raw_gpu, record_property):
    """QEMU's stderr from the test's start (``.text()``; ``parse(qemu_log.text())`` reads its
    vtd_ faults and virgl command errors, which go into the test's properties, and so the
    report, at the end)."""
    stderr = StderrSlice(raw_gpu.machine)
    yield stderr
    found = parse(stderr.text())
    if found.vtd_faults or found.cmd_errors:
        record_property("qemu_raw_path", found.summary())
