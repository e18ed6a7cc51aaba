"""Fixtures of the blob suite."""
from __future__ import annotations

import pytest


@pytest.fixture
def hostmem_window(capabilities) -> int:
    """The hostmem window in bytes, from QEMU's ``hostmem`` property in the capability
    snapshot (skips with the probed value when the device has none)."""
    window = capabilities.as_dict().get("qemu.hostmem")
    if not window:
        pytest.skip(f"no hostmem window: probed qemu.hostmem={window!r} "
                    f"[{capabilities.configuration}]")
    return int(window)
