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
