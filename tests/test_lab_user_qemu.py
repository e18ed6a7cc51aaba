"""A user-built QEMU, installed outside /usr with its own module and data directories, runs the
lab's guests the same way: proven with the lab's QEMU relocated out of /usr in a copy of the lab
tree (building QEMU from source does not fit CI's time)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.lab.errors import QemuLaunchError
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup
from gpuhil.bringup import prepare_gpu

pytestmark = pytest.mark.lab

PREFIX = "/opt/qemu"
MOVES = {  # where Debian installs QEMU -> where the "user build" has it
    "usr/bin/qemu-system-x86_64": "opt/qemu/bin/qemu-system-x86_64",
    "usr/lib/x86_64-linux-gnu/qemu": "opt/qemu/lib/qemu",
    "usr/share/qemu": "opt/qemu/share/qemu",
}


@pytest.fixture(scope="module")
def relocated(lab_setup: LabSetup, tmp_path_factory):
    """A hard-linked copy of the lab tree whose QEMU lives under /opt/qemu, not /usr."""
    assert lab_setup.chroot is not None
    tree = tmp_path_factory.mktemp("user-qemu") / "tree"
    subprocess.run(["cp", "-al", str(lab_setup.chroot), str(tree)], check=True)
    for source, dest in MOVES.items():
        (tree / dest).parent.mkdir(parents=True, exist_ok=True)
        (tree / source).rename(tree / dest)
    yield tree
    shutil.rmtree(tree, ignore_errors=True)


def _setup(lab_setup: LabSetup, tree: Path, **dirs: str) -> LabSetup:
    return LabSetup(qemu=f"{PREFIX}/bin/qemu-system-x86_64", kernel=lab_setup.kernel,
                    initramfs=lab_setup.initramfs, guest_root=lab_setup.guest_root,
                    chroot=tree, **dirs)


def test_a_qemu_outside_usr_renders_with_its_own_modules(lab_setup, relocated, tmp_path):
    """With qemu_module_dir and qemu_data_dir set, the relocated QEMU loads its GL display
    module from there: the venus guest's render node comes up and its capsets are probed."""
    setup = _setup(lab_setup, relocated, qemu_module_dir=f"{PREFIX}/lib/qemu",
                   qemu_data_dir=f"{PREFIX}/share/qemu")
    setup.check()
    assert not (relocated / "usr/bin/qemu-system-x86_64").exists()
    with Guest(CONFIGURATIONS["venus"], setup=setup, log_dir=tmp_path, name="userqemu") as guest:
        assert guest.qemu_argv[0] == f"{PREFIX}/bin/qemu-system-x86_64"
        assert prepare_gpu(guest, 60) == "/dev/dri/renderD128"
        assert guest.qmp("query-version")["qemu"]["major"] >= 1


def test_without_its_module_directory_the_user_qemu_lacks_the_gl_device(lab_setup, relocated,
                                                                       tmp_path):
    """The same QEMU without qemu_module_dir cannot find its virtio-gpu-gl module, so the module
    directory is what made the test above work."""
    setup = _setup(lab_setup, relocated, qemu_data_dir=f"{PREFIX}/share/qemu")
    guest = Guest(CONFIGURATIONS["venus"], setup=setup, log_dir=tmp_path, name="nomodules")
    with pytest.raises(QemuLaunchError) as info:
        guest.start()
    assert "egl-headless" in info.value.stderr or "virtio-gpu-gl-pci" in info.value.stderr
