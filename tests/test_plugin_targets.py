"""--gpuhil-target values: lab, local, and lab config files (valid, and each kind of mistake)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gpuhil.lab.targets import GpuEntry, TargetError, TargetKind, parse_target


def _files(tmp_path: Path) -> None:
    (tmp_path / "vmlinuz").write_bytes(b"k")
    (tmp_path / "initramfs.cpio").write_bytes(b"i")
    (tmp_path / "root").mkdir()
    qemu = tmp_path / "opt/qemu/bin/qemu-system-x86_64"
    qemu.parent.mkdir(parents=True)
    qemu.write_text("#!/bin/sh\n")
    qemu.chmod(0o755)


def test_builtin_targets():
    assert parse_target("lab").kind is TargetKind.LAB and parse_target("lab").boots_guests
    assert parse_target(" local ").kind is TargetKind.LOCAL and not parse_target("local").boots_guests


def test_config_file_relative_paths_and_gpus(tmp_path):
    _files(tmp_path)
    config = tmp_path / "lab.toml"
    qemu = tmp_path / "opt/qemu/bin/qemu-system-x86_64"
    config.write_text(f'qemu = "{qemu}"\nkernel = "vmlinuz"\n'
                      'initramfs = "initramfs.cpio"\nguest_root = "root"\n'
                      '[[gpu]]\npci = "0000:03:00.0"\nrender_node = "/dev/dri/renderD129"\n')
    target = parse_target(str(config))
    assert target.kind is TargetKind.CONFIG and target.describe() == str(config)
    assert target.kernel == tmp_path / "vmlinuz" and target.guest_root == tmp_path / "root"
    assert target.gpus == (GpuEntry("0000:03:00.0", "/dev/dri/renderD129"),)
    setup = target.lab_setup()
    assert setup.qemu == str(qemu) and setup.chroot is None
    assert setup.initramfs == tmp_path / "initramfs.cpio"


@pytest.mark.parametrize("text, problem", [
    ('qemu = "q"\nkernel = "vmlinuz"\ninitramfs = "initramfs.cpio"\nguest_root = "root"\nkvm = 1\n',
     "unknown keys ['kvm']"),
    ('qemu = "q"\nkernel = "missing"\ninitramfs = "initramfs.cpio"\nguest_root = "root"\n',
     "kernel = 'missing': no such file or directory"),
    ('qemu = "q"\nkernel = "vmlinuz"\n', "missing initramfs, guest_root"),
    ('qemu = \n', "cannot read it as TOML"),
    ('qemu = "q"\nkernel = "vmlinuz"\ninitramfs = "initramfs.cpio"\nguest_root = "root"\n'
     '[platform]\nqemu = "git"\n', "[platform] must map some of ['qemu', 'virglrenderer'"),
    ('qemu = "q"\nkernel = "vmlinuz"\ninitramfs = "initramfs.cpio"\nguest_root = "root"\n'
     '[[gpu]]\nslot = "03:00.0"\n', "gpu[0] must be a table with keys from"),
    ('qemu = "/no/such/qemu"\nkernel = "vmlinuz"\ninitramfs = "initramfs.cpio"\n'
     'guest_root = "root"\n', "qemu = '/no/such/qemu': no such executable"),
    ('qemu = "/usr/bin/qemu-system-x86_64"\nkernel = "vmlinuz"\ninitramfs = "initramfs.cpio"\n'
     'guest_root = "root"\nchroot = "root"\n',
     "qemu = '/usr/bin/qemu-system-x86_64': not an executable in the chroot tree"),
])
def test_config_mistakes_name_option_file_and_problem(tmp_path, text, problem):
    _files(tmp_path)
    config = tmp_path / "lab.toml"
    config.write_text(text)
    with pytest.raises(TargetError) as info:
        parse_target(str(config))
    assert str(info.value).startswith(f"--gpuhil-target={config}: ")
    assert problem in str(info.value)


def test_empty_target_is_an_error():
    with pytest.raises(TargetError, match="--gpuhil-target is empty"):
        parse_target("")


def test_host_suite_needs_no_other_key_and_is_validated(tmp_path):
    """``host_suite = "stable"`` alone is a whole config (QEMU from that suite's tree, the guest
    from the lab); a bad suite name or a chroot beside it is refused naming the key."""
    config = tmp_path / "stable.toml"
    config.write_text('host_suite = "stable"\n')
    target = parse_target(str(config))
    assert target.host_suite == "stable" and target.qemu is None and target.boots_guests
    for text, problem in (('host_suite = "sta ble"\n', "host_suite = 'sta ble': not a Debian suite"),
                          ('host_suite = "stable"\nchroot = "."\n', "host_suite and chroot both")):
        config.write_text(text)
        with pytest.raises(TargetError, match=problem):
            parse_target(str(config))
