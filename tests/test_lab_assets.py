"""The lab assets' pure logic: cache keys, manifest and version expectations, modules.dep
resolution, vmlinux extraction, the newc writer, chroot argv validation, the cache lock."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap

import pytest

from gpuhil.lab import bootfiles, packages, rootfs
from gpuhil.lab.assets import AssetError, Manifest, check_versions, upstream_version
from gpuhil.lab.bootfiles import BootFilesError, NewcWriter, extract_vmlinux, resolve_load_order
from gpuhil.lab.cache import KeyedEntry, cache_dir, input_key
from gpuhil.lab.chroot import chroot_argv

RELEASE = "7.2.13+deb14-amd64"
GOOD = {
    "qemu-system-x86": "1:11.1.3+ds-1",
    "libvirglrenderer1": "1.3.0-1",
    "libgl1-mesa-dri": "26.2.6-1",
    f"linux-image-{RELEASE}": "7.2.13-1",
    "python3": "3.14.8-1",
    "linux-libc-dev": "7.2.13-1",
    "kmod": "34.2-2",
}


# --- cache directory and keys ---------------------------------------------------------------

def test_cache_dir_precedence(monkeypatch, tmp_path):
    """$GPUHIL_CACHE wins over $XDG_CACHE_HOME/gpuhil, which wins over ~/.cache/gpuhil."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GPUHIL_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "gpuhil"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gpuhil"
    monkeypatch.setenv("GPUHIL_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


def test_input_key_is_stable_and_order_independent():
    """The same inputs give the same key whatever the dict order; any change gives another."""
    a = input_key({"x": 1, "y": ["a", "b"]})
    assert a == input_key({"y": ["a", "b"], "x": 1})
    assert a != input_key({"x": 1, "y": ["b", "a"]})
    assert a != input_key({"x": 2, "y": ["a", "b"]})


def test_tree_key_follows_packages_mirror_and_builder(monkeypatch):
    """The tree's key changes with the package list, the mirror and the builder version."""
    base = input_key(rootfs.build_inputs())
    assert base == input_key(rootfs.build_inputs())
    monkeypatch.setattr(packages, "PACKAGES", packages.PACKAGES + ("gdb",))
    with_gdb = input_key(rootfs.build_inputs())
    monkeypatch.setattr(packages, "PACKAGES", packages.PACKAGES[:-1])
    assert input_key(rootfs.build_inputs()) == base
    monkeypatch.setenv("GPUHIL_DEBIAN_MIRROR", "http://mirror.example/debian")
    other_mirror = input_key(rootfs.build_inputs())
    monkeypatch.delenv("GPUHIL_DEBIAN_MIRROR")
    monkeypatch.setattr(rootfs, "BUILDER_VERSION", rootfs.BUILDER_VERSION + 1)
    other_builder = input_key(rootfs.build_inputs())
    assert len({base, with_gdb, other_mirror, other_builder}) == 4


def test_mmdebstrap_argv_has_the_lab_options():
    """Root mode, apt variant, Check-Valid-Until off, docs excluded, every package included."""
    argv = packages.mmdebstrap_argv("/target")
    assert argv[0] == "mmdebstrap" and argv[-3:] == ["sid", "/target", packages.mirror()]
    assert "--variant=apt" in argv and "--mode=root" in argv
    assert '--aptopt=Acquire::Check-Valid-Until "false"' in argv
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    include = next(a for a in argv if a.startswith("--include="))
    assert include[len("--include="):].split(",") == list(packages.PACKAGES)
    assert "qemu-system-gui" not in packages.PACKAGES


# --- manifest and expectations --------------------------------------------------------------

def test_parse_dpkg_query_keeps_installed_packages_only():
    """Only 'ii' packages with a version make it into the package table."""
    text = "ii \tqemu-system-x86\t1:11.1.3+ds-1\nrc \told-pkg\t1.0\nii \tbroken\n\nii \tpython3\t3.14.8-1\n"
    assert rootfs.parse_dpkg_query(text) == {"qemu-system-x86": "1:11.1.3+ds-1",
                                             "python3": "3.14.8-1"}


def test_manifest_picks_the_stack_out():
    """The manifest names QEMU, virglrenderer, Mesa, the kernel, Python and linux-libc-dev."""
    m = Manifest.from_packages(GOOD, RELEASE)
    assert (m.qemu, m.virglrenderer, m.mesa, m.kernel, m.python, m.linux_libc_dev) == (
        "1:11.1.3+ds-1", "1.3.0-1", "26.2.6-1", "7.2.13-1", "3.14.8-1", "7.2.13-1")
    assert m.packages["kmod"] == "34.2-2"
    assert "QEMU 1:11.1.3+ds-1" in m.summary()
    check_versions(m, RELEASE)


def test_manifest_names_missing_packages():
    """A tree without virglrenderer is rejected with the package's name."""
    pkgs = {k: v for k, v in GOOD.items() if k != "libvirglrenderer1"}
    with pytest.raises(AssetError, match="libvirglrenderer1"):
        Manifest.from_packages(pkgs, RELEASE)


def test_upstream_version():
    """Epochs and Debian suffixes are dropped: '1:11.1.3+ds-1' is (11, 1, 3)."""
    assert upstream_version("1:11.1.3+ds-1") == (11, 1, 3)
    assert upstream_version("7.2.13+deb14-amd64") == (7, 2, 13)
    with pytest.raises(AssetError):
        upstream_version("~rc1")


@pytest.mark.parametrize("package, version", [
    ("qemu-system-x86", "1:12.0.0+ds-1"),
    ("libvirglrenderer1", "2.0.0-1"),
    (f"linux-image-{RELEASE}", "8.0.1-1"),
])
def test_a_newer_stack_is_accepted(package, version):
    """The lab follows sid: QEMU 12, virglrenderer 2 or Linux 8 is a stack to test (its
    expectations apply untriaged), not an error that turns every run red."""
    check_versions(Manifest.from_packages({**GOOD, package: version}, RELEASE), "8.1.0-1-amd64")


def test_an_unreadable_version_names_the_component():
    """A version with no number in it cannot be matched by expectation files: the error says
    which component."""
    m = Manifest.from_packages({**GOOD, "libvirglrenderer1": "~git"}, RELEASE)
    with pytest.raises(AssetError, match="virglrenderer version '~git'"):
        check_versions(m, RELEASE)


# --- modules.dep ----------------------------------------------------------------------------

MODULES_DEP = textwrap.dedent("""\
    kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/fs/netfs/netfs.ko.xz
    kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz kernel/drivers/virtio/virtio_ring.ko.xz
    kernel/net/9p/9pnet.ko.xz:
    kernel/fs/netfs/netfs.ko.xz:
    kernel/fs/overlayfs/overlay.ko.xz:
    kernel/drivers/virtio/virtio_ring.ko.xz:
    kernel/drivers/iommu/virtio-iommu.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz
    """)


def test_load_order_puts_dependencies_first_once():
    """Each module comes after its dependencies and appears once; dashes match underscores."""
    deps = bootfiles.parse_modules_dep(MODULES_DEP)
    order = resolve_load_order(deps, ["virtio_iommu", "9p", "9pnet_virtio", "overlay"])
    names = [bootfiles.module_name(p) for p in order]
    assert names == ["virtio_ring", "virtio_iommu", "9pnet", "netfs", "9p", "9pnet_virtio",
                     "overlay"]
    for path in order:
        for dep in deps[path]:
            assert order.index(dep) < order.index(path)


def test_load_order_skips_builtin_and_optional_modules():
    """Built-in modules are not loaded; a missing optional module is fine, a required one is not."""
    deps = bootfiles.parse_modules_dep(MODULES_DEP.replace(
        "kernel/drivers/iommu/virtio-iommu.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz\n", "")
        .replace("kernel/drivers/virtio/virtio_ring.ko.xz:\n", ""))
    order = resolve_load_order(deps, ["virtio-iommu", "9pnet_virtio"], optional={"virtio-iommu"},
                               builtin=["kernel/drivers/virtio/virtio_ring.ko"])
    assert [bootfiles.module_name(p) for p in order] == ["9pnet", "9pnet_virtio"]
    with pytest.raises(BootFilesError, match="virtio-iommu"):
        resolve_load_order(deps, ["virtio-iommu"])
    with pytest.raises(BootFilesError, match="virtio_ring"):
        resolve_load_order(deps, ["9pnet_virtio"])


def test_read_module_decompresses(tmp_path):
    """.ko.xz, .ko.gz and .ko.zst modules are decompressed to the same bytes."""
    import gzip
    import lzma
    payload = b"\x7fELF" + os.urandom(3000) + b"\0" * 5000
    (tmp_path / "a.ko.xz").write_bytes(lzma.compress(payload))
    (tmp_path / "b.ko.gz").write_bytes(gzip.compress(payload))
    (tmp_path / "c.ko").write_bytes(payload)
    subprocess.run(["zstd", "-q", "-o", str(tmp_path / "d.ko.zst"), str(tmp_path / "c.ko")],
                   check=True)
    for name in ("a.ko.xz", "b.ko.gz", "c.ko", "d.ko.zst"):
        assert bootfiles.read_module(tmp_path / name) == payload


# --- vmlinux extraction ---------------------------------------------------------------------

def _fake_elf(size: int) -> bytes:
    rng = random.Random(7)
    body = bytes(rng.choice(b"abcdefgh\0\0\0\0") for _ in range(size))
    return b"\x7fELF\x02\x01\x01" + body


@pytest.mark.parametrize("zstd_args", [[], ["--no-check"], ["-19", "--no-content-size"]])
def test_extract_vmlinux_from_a_zstd_blob(tmp_path, zstd_args):
    """The ELF inside a zstd frame surrounded by junk (and a false magic) is recovered exactly."""
    elf = _fake_elf(600_000)  # several zstd blocks
    (tmp_path / "vmlinux").write_bytes(elf)
    subprocess.run(["zstd", "-q", *zstd_args, "-o", str(tmp_path / "v.zst"),
                    str(tmp_path / "vmlinux")], check=True)
    frame = (tmp_path / "v.zst").read_bytes()
    blob = os.urandom(1000) + bootfiles.ZSTD_MAGIC + b"\x00" * 64 + frame + (len(elf)).to_bytes(4, "little") + os.urandom(3000)
    assert bootfiles.zstd_frame_length(blob, blob.index(frame)) == len(frame)
    assert extract_vmlinux(blob) == elf


def test_extract_vmlinux_rejects_non_elf_payloads(tmp_path):
    """A zstd payload that is not an ELF kernel is an error, as is an image without zstd data."""
    (tmp_path / "data").write_bytes(b"not a kernel" * 1000)
    subprocess.run(["zstd", "-q", "-o", str(tmp_path / "d.zst"), str(tmp_path / "data")], check=True)
    with pytest.raises(BootFilesError, match="ELF"):
        extract_vmlinux(b"junk" + (tmp_path / "d.zst").read_bytes())
    with pytest.raises(BootFilesError, match="no zstd"):
        extract_vmlinux(os.urandom(256).replace(bootfiles.ZSTD_MAGIC, b"xxxx"))


# --- newc cpio ------------------------------------------------------------------------------

def test_newc_writer_output_is_read_by_cpio(tmp_path):
    """GNU cpio extracts the archive: files with their modes, directories, symlinks."""
    w = NewcWriter()
    w.directory("bin")
    w.file("bin/tool", b"#!/bin/sh\necho hi\n", 0o755)
    w.symlink("bin/sh", "tool")
    w.file("odd size", b"x" * 5)
    w.file("empty", b"")
    data = w.finish()
    assert len(data) % 512 == 0
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=data, cwd=out, check=True)
    assert (out / "bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert os.stat(out / "bin/tool").st_mode & 0o777 == 0o755
    assert os.readlink(out / "bin/sh") == "tool"
    assert (out / "odd size").read_bytes() == b"xxxxx"
    assert (out / "empty").read_bytes() == b""
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True,
                             check=True).stdout.decode().split()
    assert listing == ["bin", "bin/tool", "bin/sh", "odd", "size", "empty"]


# --- chroot argv ----------------------------------------------------------------------------

def test_chroot_argv_passes_values_as_separate_arguments(tmp_path):
    """Hostile strings are positional parameters of a fixed script, never part of it."""
    (tmp_path / "srv/guestroot").mkdir(parents=True)
    hostile = ["$(touch /tmp/pwned)", "'; rm -rf / #", "a\nb"]
    argv = chroot_argv(tmp_path, ["prog", *hostile], {"/tmp/$(x)": tmp_path})
    script = argv[argv.index("-c") + 1]
    for value in hostile + [str(tmp_path)]:
        assert value not in script
        assert value in argv
    assert argv[:5] == ["unshare", "--mount", "--propagation", "private", "--"]
    assert argv[-4:] == ["--", "prog", *hostile][-4:]


def test_chroot_argv_validates_mount_points(tmp_path):
    """Relative or '..' inside paths and missing mount points outside /tmp and /run are refused."""
    (tmp_path / "srv/guestroot").mkdir(parents=True)
    with pytest.raises(ValueError):
        chroot_argv(tmp_path, ["x"], {"relative": tmp_path})
    with pytest.raises(ValueError):
        chroot_argv(tmp_path, ["x"], {"/tmp/../etc": tmp_path})
    with pytest.raises(ValueError, match="does not exist"):
        chroot_argv(tmp_path, ["x"], {"/opt/nowhere": tmp_path})
    with pytest.raises(ValueError, match="does not exist"):
        chroot_argv(tmp_path, ["x"], export_root_at="/missing")
    with pytest.raises(ValueError):
        chroot_argv(tmp_path, [])
    assert chroot_argv(tmp_path, ["x"], {"/run/sock": tmp_path}, export_root_at=None)


# --- the cache lock -------------------------------------------------------------------------

def test_entry_lock_excludes_a_second_process(tmp_path):
    """While one process holds an entry's lock another one cannot take it, and can after."""
    entry = KeyedEntry(tmp_path, "k")
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from pathlib import Path
            from gpuhil.lab.cache import KeyedEntry
            with KeyedEntry(Path({str(tmp_path)!r}), "k").lock():
                print("held", flush=True)
                sys.stdin.readline()
            """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        from filelock import Timeout
        with pytest.raises(Timeout):
            with entry.lock(timeout=0.3):
                pass
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(10) == 0
        with entry.lock(timeout=5):
            assert not entry.is_complete()
            entry.mark_complete("done")
        assert entry.stamp.read_text() == "done"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
                    reason="mmdebstrap --mode=root needs root and mmdebstrap")
def test_failed_build_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    """A build that fails (unreachable mirror) raises with mmdebstrap's output and leaves no tree."""
    from gpuhil.lab.assets import ensure_assets
    from gpuhil.lab.rootfs import RootfsBuildError
    monkeypatch.setenv("GPUHIL_DEBIAN_MIRROR", "http://127.0.0.1:9/debian")
    lines: list[str] = []
    with pytest.raises(RootfsBuildError, match="mmdebstrap exited with status"):
        ensure_assets(tmp_path, progress=lines.append)
    assert any("mmdebstrap" in line or line.startswith(("I:", "E:")) for line in lines)
    entry = KeyedEntry(tmp_path / "lab", input_key(rootfs.build_inputs()))
    assert not entry.is_complete()
    assert not (entry.dir / "rootfs").exists() and not (entry.dir / "rootfs.partial").exists()
    with entry.lock(timeout=1):  # released
        pass
