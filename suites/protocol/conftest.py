"""Fixtures of the protocol suite: the device's own facts (probed once per guest) and the QEMU
stderr slice of each test.

Which tests run is decided by ``@pytest.mark.requires`` on the raw device's capability names
(``raw.feature.edid``, ``raw.hostmem``, see ``gpuhil capabilities``), probed at boot."""
from __future__ import annotations

import pytest

from gpuhil.machine import StderrSlice
from gpuhil.raw.qemu_log import parse
from suites.protocol import payloads

_FACTS: dict[int, dict] = {}


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
