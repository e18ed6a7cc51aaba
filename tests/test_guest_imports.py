"""The guest side imports without pytest, filelock or any other host-only package: payloads run
in a guest that need not have them (and on a lab machine whose Python lacks them)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests import guest_side

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = set({blocked!r})
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is host-only: the guest side must not import it")
            return None
    sys.meta_path.insert(0, Blocker())
    sys.path.insert(0, {root!r})
    from tests import guest_side
    print("\\n".join(guest_side.import_all()))
""")


def test_the_guest_side_list_covers_the_payloads():
    """The guest-side list names the agent, the device layer and every suite's payloads, so the
    import test below cannot pass by looking at nothing."""
    names = guest_side.guest_modules()
    assert "gpuhil.agent" in names and "gpuhil.devices.virtgpu" in names
    assert {"suites.blob.payloads", "suites.vfio.payloads", "suites.protocol.payloads"} <= set(names)


def test_every_guest_module_imports_with_host_only_packages_blocked():
    """Every guest-side module imports in a Python where pytest, filelock, allure and qemu.qmp
    raise ImportError (what a lab guest without them would see)."""
    script = BLOCKER.format(blocked=guest_side.HOST_ONLY, root=str(guest_side.ROOT))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = set(proc.stdout.split())
    assert "gpuhil" in imported
    assert not imported & set(guest_side.HOST_ONLY)


def test_the_blocker_does_block():
    """The blocker really refuses a host-only package (so the test above can fail)."""
    script = BLOCKER.format(blocked=guest_side.HOST_ONLY, root=str(guest_side.ROOT))
    script = script.replace("print(", "import gpuhil.pytestplugin.lab\nprint(")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "host-only" in proc.stderr


@pytest.mark.lab
def test_a_guest_imports_the_guest_side_without_host_only_packages(plain_guest):
    """In a real lab guest, after every guest-side module is imported, none of the host-only
    packages is loaded."""
    imported = set(plain_guest.call(guest_side.import_all))
    assert "gpuhil" in imported and "suites" in imported
    assert not imported & set(guest_side.HOST_ONLY)
