"""The platform (QEMU, virglrenderer, Mesa, guest kernel versions) is probed from the target
itself, for the built lab and for any lab config: the kernel image's release alone, then the
lab tree's real QEMU and dpkg database run as a config target, and a config's stated versions."""
from __future__ import annotations

import struct
import textwrap

import pytest

from gpuhil.lab.assets import upstream_version
from gpuhil.lab.platform import kernel_release_of, platform_of
from gpuhil.lab.targets import parse_target

pytest_plugins = ["pytester"]


def _bzimage(release: bytes) -> bytes:
    image = bytearray(0x1000)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x20E, 0x600)  # version string at 0x600 + 0x200
    image[0x800:0x800 + len(release)] = release
    return bytes(image)


@pytest.mark.parametrize("image, release", [
    (_bzimage(b"7.2.13+deb14-amd64 (debian-kernel@lists.debian.org) #1 SMP\x00"),
     "7.2.13+deb14-amd64"),
    (b"\x7fELF" + b"\x00" * 64 + b"Linux version 6.12.9-user (me@host) (gcc 14) #2\x00",
     "6.12.9-user"),
    (b"\x7fELF" + b"\x00" * 64, ""),
])
def test_kernel_release_is_read_from_the_image(tmp_path, image, release):
    """A bzImage's boot header or a vmlinux's banner names the guest kernel's release, so the
    kernel a lab config boots has a version expectation files can match."""
    path = tmp_path / "kernel"
    path.write_bytes(image)
    assert kernel_release_of(path) == release
    assert kernel_release_of(tmp_path / "missing") == ""


@pytest.mark.lab
def test_a_config_target_s_platform_is_probed_from_its_qemu_and_tree(lab_setup, tmp_path):
    """The lab's tree described as a lab config (no built assets) probes the same versions the
    lab's stamp records: QEMU from ``qemu --version`` in its chroot, virglrenderer and Mesa from
    the tree's dpkg database, the kernel release from the kernel image; versions the config
    states in ``[platform]`` win."""
    m = lab_setup.assets.manifest
    config = tmp_path / "lab.toml"
    config.write_text(textwrap.dedent(f"""\
        qemu = "/usr/bin/qemu-system-x86_64"
        chroot = "{lab_setup.chroot}"
        kernel = "{lab_setup.kernel}"
        initramfs = "{lab_setup.initramfs}"
        guest_root = "{lab_setup.guest_root}"
        """))
    setup = parse_target(str(config)).lab_setup()
    assert setup.assets is None
    probed = platform_of(setup)
    assert upstream_version(probed.qemu) == upstream_version(m.qemu)
    assert m.qemu.split(":", 1)[-1] in probed.qemu  # Debian's build says its package version
    assert (probed.virglrenderer, probed.mesa) == (m.virglrenderer, m.mesa)
    assert probed.kernel == lab_setup.assets.kernel_release
    assert platform_of(lab_setup).qemu == m.qemu
    config.write_text(config.read_text() + '[platform]\nvirglrenderer = "1.2.0"\n')
    stated = platform_of(parse_target(str(config)).lab_setup())
    assert (stated.virglrenderer, stated.qemu) == ("1.2.0", probed.qemu)


@pytest.mark.lab
def test_expectations_apply_to_a_config_target(pytester, lab_setup):
    """A known bug of the lab's QEMU stays a strict xfail when the same stack runs as a lab
    config (the platform of a config target used to be empty, so no expectation applied)."""
    qemu = ".".join(str(c) for c in upstream_version(lab_setup.assets.manifest.qemu)[:2])
    (pytester.path / "lab.toml").write_text(
        f'qemu = "/usr/bin/qemu-system-x86_64"\nchroot = "{lab_setup.chroot}"\n'
        f'kernel = "{lab_setup.kernel}"\ninitramfs = "{lab_setup.initramfs}"\n'
        f'guest_root = "{lab_setup.guest_root}"\n')
    (pytester.path / "suites" / "expectations").mkdir(parents=True)
    (pytester.path / "suites" / "expectations" / "lab.toml").write_text(
        f'[platform]\nqemu = "{qemu}"\nkernel = "{lab_setup.assets.kernel_release}"\n'
        '[[xfail]]\ntest = "test_it.py::test_known*"\nreason = "the device answers OK"\n'
        'seen = "here"\n')
    pytester.makepyfile(test_it="def test_known_bug(): assert 0\ndef test_known_fixed(): pass\n")
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider",
                                          "--gpuhil-target=lab.toml", "-rxXf")
    result.assert_outcomes(xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_known_fixed*XPASS(strict)*"])


@pytest.mark.lab
def test_a_config_guest_root_gets_the_guest_extensions(lab_setup, tmp_path):
    """A lab config's guest root is a build tree for gpuhil's extensions when it has a Debian
    python3 (its version read from its dpkg database); modules already built for that Python
    are not rebuilt in place under running guests; a tree without python3 is no build tree."""
    from gpuhil.lab.guest_build import ensure_guest_extensions, expected_modules, guest_tree
    from gpuhil.lab.setup import PROJECT_ROOT

    tree = guest_tree(lab_setup.guest_root)
    assert tree is not None and tree.python == lab_setup.assets.manifest.python
    assert expected_modules(PROJECT_ROOT, tree) == expected_modules(PROJECT_ROOT, lab_setup.assets)
    said: list[str] = []
    ensure_guest_extensions(tree, PROJECT_ROOT, said.append)
    assert said == [] and all(p.is_file() for p in expected_modules(PROJECT_ROOT, tree))
    assert guest_tree(tmp_path) is None
