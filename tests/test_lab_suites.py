"""A host-side lab tree from another Debian suite (stable) runs QEMU for the lab's own guest:
built and cached like the default tree, selected by a lab config's ``host_suite``."""
from __future__ import annotations

import os
import shutil

import pytest

from gpuhil.lab.assets import ensure_assets, upstream_version
from gpuhil.lab.guest import Guest
from gpuhil.lab.spec import GuestSpec
from gpuhil.lab.targets import parse_target

pytestmark = [pytest.mark.lab, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
    reason="building a lab tree needs root and mmdebstrap (make setup installs it)")]


@pytest.fixture(scope="module")
def stable():
    """The stable tree's assets (built on first use, about a minute and a half)."""
    if os.environ.get("GPUHIL_LAB") == "0":
        pytest.skip("GPUHIL_LAB=0: the virtual lab is disabled")
    return ensure_assets(suite="stable")


def test_the_stable_tree_is_keyed_apart_from_the_default(stable):
    """The stable tree is its own cache entry, with its own recorded versions."""
    default = ensure_assets()
    assert stable.key != default.key and stable.root != default.root
    assert stable.manifest.qemu and stable.manifest.virglrenderer


def test_a_guest_of_the_lab_boots_under_the_stable_trees_qemu(stable, tmp_path):
    """With ``host_suite = "stable"``, QEMU's own QMP version is the stable tree's package
    version (not the default lab's), and the guest runs the lab's kernel."""
    config = tmp_path / "stable.toml"
    config.write_text('host_suite = "stable"\n')
    setup = parse_target(str(config)).lab_setup()
    assert setup.chroot == stable.root
    with Guest(GuestSpec(), setup=setup, log_dir=tmp_path / "log", name="stable") as guest:
        reported = guest.qmp("query-version")["qemu"]
        release = guest.call(os.uname).release
    version = (reported["major"], reported["minor"], reported["micro"])
    assert version == upstream_version(stable.manifest.qemu)[:3]
    if stable.manifest.qemu != ensure_assets().manifest.qemu:  # the two suites differ (usual)
        assert version != upstream_version(ensure_assets().manifest.qemu)[:3]
    assert release == ensure_assets().kernel_release


def test_a_qemu_without_the_qtest_accelerator_is_a_missing_capability(stable, tmp_path):
    """The lab's QEMU has the qtest accelerator and starts a device-tier machine; where the
    stable tree's QEMU lacks it (Debian 13 builds 10.0 without), starting one is a
    MissingQemuFeature naming ``qemu.qtest`` that leaves no QEMU and no run directory, not a
    launch failure."""
    from gpuhil.lab.errors import MissingQemuFeature
    from gpuhil.lab.qtest_machine import QtestMachine
    from gpuhil.lab.setup import LabSetup

    LabSetup.default().check_qtest()  # the lab's QEMU 11.1 has it: no exception
    config = tmp_path / "stable.toml"
    config.write_text('host_suite = "stable"\n')
    setup = parse_target(str(config)).lab_setup()
    try:
        setup.check_qtest()
    except MissingQemuFeature:
        pass
    else:
        pytest.skip(f"the stable tree's QEMU ({stable.manifest.qemu}) has qtest: nothing to refuse")
    before = set(setup.runs().iterdir()) if setup.runs().exists() else set()
    machine = QtestMachine(setup=setup, name="noqt", log_dir=tmp_path)
    with pytest.raises(MissingQemuFeature, match="no qtest accelerator") as raised:
        machine.start()
    assert raised.value.names == ("qemu.qtest",)
    assert machine.pid is None and not machine.alive
    after = set(setup.runs().iterdir()) if setup.runs().exists() else set()
    assert after <= before, f"left behind: {sorted(map(str, after - before))}"
