"""A user-built QEMU, installed outside /usr with its own module and data directories, runs the
lab's guests the same way: proven with the lab's QEMU relocated out of /usr in a copy of the lab
tree (building QEMU from source does not fit CI's time); what it lacks is named from its own
``-device help``."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.lab.errors import MissingQemuFeature, QemuLaunchError
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup
from gpuhil.bringup import prepare_gpu

pytestmark = pytest.mark.lab
pytest_plugins = ["pytester"]

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


def test_a_missing_device_or_property_is_named_from_device_help(lab_setup, relocated):
    """``-device TYPE,help`` of the real QEMU decides: the lab's QEMU has the properties the
    drm configuration sets, a property it lacks is named with the capability it stands for,
    and the relocated QEMU without its module directory has no GL device at all."""
    gpu = CONFIGURATIONS["drm"].gpu
    lab_setup.check_device(gpu.model.value, gpu.properties())
    assert "drm_native_context" in gpu.properties()
    with pytest.raises(MissingQemuFeature) as info:
        lab_setup.check_device(gpu.model.value, ("blob", "no_such_property"))
    assert info.value.names == ("qemu.no_such_property",)
    assert "lacks no_such_property of virtio-gpu-gl-pci" in str(info.value)
    bare = _setup(lab_setup, relocated, qemu_data_dir=f"{PREFIX}/share/qemu")
    with pytest.raises(MissingQemuFeature, match="has no device virtio-gpu-gl-pci .not in -device help"):
        bare.check_device(gpu.model.value, gpu.properties())


def test_suites_skip_a_configuration_the_qemu_cannot_build(pytester, lab_setup, relocated):
    """Run as a lab config, the QEMU without its GL module makes a venus test a skip naming the
    missing device (a capability), not an infrastructure error; under --must-have it is an error
    naming the capability."""
    (pytester.path / "lab.toml").write_text(
        f'qemu = "{PREFIX}/bin/qemu-system-x86_64"\nchroot = "{relocated}"\n'
        f'qemu_data_dir = "{PREFIX}/share/qemu"\nkernel = "{lab_setup.kernel}"\n'
        f'initramfs = "{lab_setup.initramfs}"\nguest_root = "{lab_setup.guest_root}"\n')
    pytester.makepyfile(test_it="""
        import pytest

        @pytest.mark.guest("venus")
        def test_venus(guest):
            pass
    """)
    args = ("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider", "--gpuhil-target=lab.toml",
            "-rsf")
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED*configuration venus: QEMU *has no device virtio-gpu-gl-pci*"])
    result = pytester.runpytest_inprocess(*args, "--must-have=qemu.device")
    result.assert_outcomes(errors=1)
    assert "INFRASTRUCTURE" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*--must-have qemu.device does not hold: configuration venus*"])
