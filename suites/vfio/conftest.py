"""The vfio suite's ``vfio`` fixture: the plugin's ``vfio_device`` handle
(:class:`gpuhil.handles.VfioDevice`), or a skip saying why not."""
from __future__ import annotations

import re
from typing import Any

import pytest

from gpuhil.handles import VfioDevice

PCI_ADDRESS = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")


@pytest.fixture
def vfio(request: pytest.FixtureRequest, guest: Any, capabilities: Any) -> VfioDevice:
    """The test's ``vfio_device`` (ivshmem unless ``vfio_ids`` says otherwise), skipped with the
    probed reason when binding, the group or SET_IOMMU already failed at the capability probe
    (the probe then reports ``<address>: <error>`` instead of the bare address)."""
    probe = capabilities.probe
    if probe.vfio_dma_buf is None or not PCI_ADDRESS.fullmatch(probe.vfio_detail):
        pytest.skip(f"VFIO is unusable in [{capabilities.configuration}], probed: "
                    f"{probe.vfio_detail or 'nothing probed'}")
    return request.getfixturevalue("vfio_device")
