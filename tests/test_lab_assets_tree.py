"""The lab assets for real: the built sid tree, the chroot into it, the boot files, the guest's
extension build, and the initramfs booting under QEMU.  The session fixture builds the tree on
a fresh machine (about two minutes), as CI does."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gpuhil.lab import bootfiles, rootfs
from gpuhil.lab.assets import LabAssets, ensure_assets
from gpuhil.lab.chroot import chroot_argv
from gpuhil.lab.guest_build import ensure_guest_extensions, stamp_path

PROJECT = Path(__file__).resolve().parent.parent
NEEDS = [tool for tool in ("mmdebstrap", "unshare", "zstd") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or bool(NEEDS),
    reason=f"the lab tree needs root and {', '.join(NEEDS) or 'mmdebstrap'} (make setup installs them)")

PRINT_ARGV = "import json, os, sys; print(json.dumps([os.getpid(), sys.argv[1:]]))"


@pytest.fixture(scope="session")
def assets() -> LabAssets:
    return ensure_assets(progress=lambda line: print(line, file=sys.stderr))


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split()[4] for line in f)


def run_in_tree(assets: LabAssets, argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(chroot_argv(assets.root, argv, **kw), capture_output=True, text=True,
                          timeout=60)


# --- the tree and its manifest --------------------------------------------------------------

def test_tree_has_the_expected_stack(assets):
    """QEMU 11, virglrenderer 1.3+, a 7.x kernel and Python 3.14 are in the tree and the manifest."""
    m = assets.manifest
    assert m.qemu.split(":")[-1].startswith("11.")
    assert m.packages["qemu-system-modules-opengl"] == m.packages["qemu-system-x86"]
    assert m.virglrenderer.startswith("1.") and int(m.virglrenderer.split(".")[1]) >= 3
    assert assets.kernel_release.startswith("7.")
    assert m.python.startswith("3.14")
    for package in ("python3-dev", "cython3", "gcc", "python3-pytest", "python3-filelock",
                    "busybox-static", "linux-libc-dev"):
        assert package in m.packages
    assert "qemu-system-gui" not in m.packages
    assert (assets.root / "usr/include/linux/virtio_gpu.h").is_file()
    assert assets.manifest == ensure_assets().manifest


def test_guest_python_has_what_gpuhil_needs(assets):
    """The tree's Python 3.14 imports pytest, filelock, pyudev and Cython, and has its headers."""
    code = ("import json, sys, sysconfig, pytest, filelock, pyudev, Cython; "
            "print(json.dumps([sys.version_info[:2], sysconfig.get_config_var('EXT_SUFFIX'), "
            "sysconfig.get_path('include')]))")
    result = run_in_tree(assets, ["python3", "-c", code], export_root_at=None)
    assert result.returncode == 0, result.stderr
    version, suffix, include = json.loads(result.stdout)
    assert version == [3, 14] and suffix == ".cpython-314-x86_64-linux-gnu.so"
    assert (assets.root / include.lstrip("/") / "Python.h").is_file()


def test_manifest_matches_dpkg_in_the_tree(assets):
    """The recorded versions are what dpkg reports inside the tree."""
    assert rootfs.installed_packages(assets.root) == assets.manifest.packages


def test_tree_is_slim_and_has_its_mount_points(assets):
    """Only lavapipe and virtio Vulkan ICDs; no wifi/amd/i915/sound modules; virtio_gpu kept."""
    icds = sorted(p.name for p in (assets.root / "usr/share/vulkan/icd.d").glob("*.json"))
    assert icds and all(n.startswith(("lvp_", "virtio_")) for n in icds)
    kernel = assets.root / "usr/lib/modules" / assets.kernel_release / "kernel"
    for trimmed in ("drivers/net/wireless", "drivers/gpu/drm/amd", "drivers/gpu/drm/i915", "sound"):
        assert not (kernel / trimmed).exists()
    dep = (kernel.parent / "modules.dep").read_text()
    for kept in ("virtio-gpu.ko", "vfio-pci.ko", "9pnet_virtio.ko", "overlay.ko", "virtio-iommu.ko"):
        assert f"/{kept}" in dep
    assert "amdgpu.ko" not in dep
    assert not list((assets.root / "usr/share/man").glob("man1/*"))
    for point in ("srv/guestroot", "gpuhil/src", "gpuhil/run"):
        assert (assets.root / point).is_dir() and not any((assets.root / point).iterdir())


def test_warm_ensure_rebuilds_nothing(assets):
    """A warm ensure_assets returns the same assets without touching any of them."""
    files = [assets.kernel, assets.initramfs, assets.root.parent / ".complete"]
    before = [f.stat().st_mtime_ns for f in files]
    lines: list[str] = []
    again = ensure_assets(progress=lines.append)
    assert again == assets and lines == []
    assert [f.stat().st_mtime_ns for f in files] == before


def test_racing_builders_build_once(assets, tmp_path):
    """Two processes ensuring the same fresh entry: one makes the boot files, the other waits."""
    entry_dir = tmp_path / "lab" / assets.key
    entry_dir.mkdir(parents=True)
    (entry_dir / "rootfs").symlink_to(assets.root)  # a finished tree, as a build's rename leaves
    code = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from gpuhil.lab.assets import ensure_assets
        lines = []
        a = ensure_assets(Path({str(tmp_path)!r}), progress=lines.append)
        print(json.dumps([str(a.kernel), str(a.initramfs), lines]))
        """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert results[0][:2] == results[1][:2]
    builders = [r[2] for r in results if any("vmlinux" in line for line in r[2])]
    others = [r[2] for r in results if not any("vmlinux" in line for line in r[2])]
    assert len(builders) == 1 and len(others) == 1
    assert all(line.startswith("waiting for another process") for line in others[0])
    assert Path(results[0][0]).read_bytes()[:4] == b"\x7fELF"


# --- boot files -----------------------------------------------------------------------------

def test_vmlinux_is_the_kernel_elf(assets):
    """The extracted kernel is an x86-64 ELF executable that carries the kernel's release."""
    with open(assets.kernel, "rb") as f:
        head = f.read(64)
    assert head[:4] == b"\x7fELF" and head[4] == 2            # ELFCLASS64
    assert int.from_bytes(head[16:18], "little") == 2           # ET_EXEC
    assert int.from_bytes(head[18:20], "little") == 62          # EM_X86_64
    assert assets.kernel_release.split("+")[0].encode() in assets.kernel.read_bytes()


def test_initramfs_holds_busybox_modules_in_order_and_init(assets, tmp_path):
    """The cpio unpacks to busybox, the modules (dependencies first) and gpuhil's /init."""
    subprocess.run(["cpio", "-id", "--quiet"], stdin=open(assets.initramfs, "rb"), cwd=tmp_path,
                   check=True)
    order = (tmp_path / "modules/order").read_text().split()
    assert order[-4:] == ["9pnet", "9pnet_virtio", "9p", "overlay"] and "netfs" in order
    assert order.index("netfs") < order.index("9p")
    for name in order:
        assert (tmp_path / "modules" / f"{name}.ko").read_bytes()[:4] == b"\x7fELF"
    assert (tmp_path / "init").read_bytes() == bootfiles.INIT_SCRIPT.read_bytes()
    assert os.access(tmp_path / "init", os.X_OK)
    busybox = subprocess.run([str(tmp_path / "bin/busybox"), "echo", "static ok"],
                             capture_output=True, text=True)
    assert busybox.stdout.strip() == "static ok"


def test_initramfs_follows_the_init_script(assets, tmp_path, monkeypatch):
    """A changed /init gives another initramfs file next to the tree; day-old ones go."""
    init = tmp_path / "init"
    init.write_bytes(bootfiles.INIT_SCRIPT.read_bytes() + b"# changed\n")
    cache = tmp_path / "cache"
    entry_dir = cache / "lab" / assets.key
    entry_dir.mkdir(parents=True)
    (entry_dir / "rootfs").symlink_to(assets.root)
    first = ensure_assets(cache)
    stale = entry_dir / "initramfs-000000000000.cpio"
    stale.write_bytes(b"old")
    os.utime(stale, (time.time() - 3 * 86400,) * 2)
    monkeypatch.setattr(bootfiles, "INIT_SCRIPT", init)
    second = ensure_assets(cache)
    # the previous one may still be booted by another worktree; only day-old ones are pruned
    assert second.initramfs != first.initramfs and first.initramfs.exists()
    assert not stale.exists()
    assert b"# changed" in second.initramfs.read_bytes()


# --- the chroot -----------------------------------------------------------------------------

def test_chroot_passes_hostile_argv_unchanged_and_is_the_popen_pid(assets):
    """Quotes, $(), newlines, globs, '--' and empty strings reach the program intact, and the
    Popen's pid is the program itself; the host mount table is unchanged afterwards."""
    before = mount_points()
    hostile = ["$(touch /tmp/pwned)", "'; echo x; '", '"\\"', "a\nb", "*", "--", "", " sp ace ",
               "`id`", "$HOME", "ü"]
    proc = subprocess.Popen(chroot_argv(assets.root, ["/usr/bin/python3", "-c", PRINT_ARGV, *hostile]),
                            stdout=subprocess.PIPE, text=True)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0
    pid, argv = json.loads(out)
    assert argv == hostile
    assert pid == proc.pid
    assert not Path("/tmp/pwned").exists() and not (assets.root / "tmp/pwned").exists()
    assert mount_points() == before


def test_chroot_binds_and_the_exported_root(assets, tmp_path):
    """rw binds write through to the host, ro binds refuse writes, the exported root is the tree
    without the chroot's submounts, read-only; odd host path names are fine."""
    before = mount_points()
    rw = tmp_path / "it's a \"dir\" $(x)"
    ro = tmp_path / "ro dir"
    rw.mkdir()
    ro.mkdir()
    (ro / "f").write_text("ro data\n")
    script = textwrap.dedent("""
        set -u
        echo written > /gpuhil/run/out
        cat /tmp/a\\ b/f
        echo nope > "/tmp/a b/g" 2>/dev/null && echo ro-writable
        test -f /srv/guestroot/etc/debian_version && echo export-has-tree
        test -z "$(ls /srv/guestroot/proc)" && echo export-proc-empty
        touch /srv/guestroot/x 2>/dev/null && echo export-writable
        test -e /proc/self/status && echo proc-ok
        test -c /dev/null && echo dev-ok
        """)
    result = run_in_tree(assets, ["/bin/sh", "-c", script], binds={"/gpuhil/run": rw},
                         readonly_binds={"/tmp/a b": ro})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n") == ["ro data", "export-has-tree", "export-proc-empty",
                                         "proc-ok", "dev-ok", ""]
    assert (rw / "out").read_text() == "written\n"
    assert not (ro / "g").exists() and not (assets.root / "x").exists()
    assert mount_points() == before


def test_qemu_runs_from_the_tree(assets):
    """The tree's QEMU runs through the chroot and has the GL virtio-gpu device."""
    result = run_in_tree(assets, ["qemu-system-x86_64", "-device", "help"], export_root_at=None)
    assert result.returncode == 0, result.stderr
    assert '"virtio-gpu-gl-pci"' in result.stdout


# --- the guest's extensions -----------------------------------------------------------------

def _project(tmp_path: Path, body: str) -> Path:
    project = tmp_path / "proj"
    (project / "_ext").mkdir(parents=True)
    (project / "gpuhil").mkdir()
    (project / "gpuhil/__init__.py").write_text("")
    for name in ("setup.py", "pyproject.toml"):
        shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "_ext/include", project / "_ext/include")
    (project / "_ext/probe.pyx").write_text(body)
    return project


def _call_in_guest_python(assets: LabAssets, project: Path, expr: str) -> str:
    result = run_in_tree(assets, ["/usr/bin/env", "-C", "/gpuhil/src", "python3", "-c",
                                  f"import gpuhil._probe as p; print({expr})"],
                         binds={"/gpuhil/src": project}, export_root_at=None)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_guest_extensions_build_for_the_trees_python(assets, tmp_path):
    """The .pyx becomes a cpython-314 module the tree's Python imports; a second call does
    nothing, nor does the host's generated C changing; editing _ext/ or losing the .so rebuilds."""
    project = _project(tmp_path, "def answer(int x):\n    return x * 2\n")
    try:
        messages: list[str] = []
        ensure_guest_extensions(assets, project, messages.append)
        built = project / "gpuhil" / "_probe.cpython-314-x86_64-linux-gnu.so"
        assert built.is_file() and messages
        assert not (project / "build").exists() and not list((project / "_ext").glob("*.c"))
        assert _call_in_guest_python(assets, project, "p.answer(21)") == "42"
        mtime = built.stat().st_mtime_ns
        messages.clear()
        ensure_guest_extensions(assets, project, messages.append)
        assert messages == []
        assert built.stat().st_mtime_ns == mtime
        (project / "_ext/probe.c").write_text("/* the host build's generated C */\n")
        ensure_guest_extensions(assets, project, messages.append)
        assert messages == []
        (project / "_ext/probe.pyx").write_text("def answer(int x):\n    return x * 3\n")
        ensure_guest_extensions(assets, project, messages.append)
        assert messages and _call_in_guest_python(assets, project, "p.answer(21)") == "63"
        built.unlink()
        ensure_guest_extensions(assets, project)
        assert built.is_file()
    finally:
        stamp_path(assets, project).unlink(missing_ok=True)
        stamp_path(assets, project).with_suffix(".lock").unlink(missing_ok=True)


def test_guest_extensions_without_pyx_do_nothing(assets, tmp_path):
    """A project without _ext/*.pyx needs no guest build and records nothing."""
    project = _project(tmp_path, "")
    (project / "_ext/probe.pyx").unlink()
    ensure_guest_extensions(assets, project)
    assert not stamp_path(assets, project).exists()
    assert not list((project / "gpuhil").glob("*.so"))


def test_guest_build_failure_is_reported(assets, tmp_path):
    """A .pyx that does not compile raises GuestBuildError carrying Cython's complaint."""
    from gpuhil.lab.guest_build import GuestBuildError
    project = _project(tmp_path, "def broken(:\n")
    try:
        with pytest.raises(GuestBuildError, match="probe.pyx"):
            ensure_guest_extensions(assets, project)
        assert not stamp_path(assets, project).exists()
    finally:
        stamp_path(assets, project).with_suffix(".lock").unlink(missing_ok=True)


# --- the initramfs boots --------------------------------------------------------------------

STAGE2 = """\
echo "STAGE2-REACHED root=$(stat -f -c %T /) src=$(cat /gpuhil/src/marker)"
echo from-guest > /gpuhil/run/result
echo o > /proc/sysrq-trigger
sleep 30
"""


def _boot(assets: LabAssets, src: Path, run: Path, shares=("root", "src", "run")) -> str:
    qemu = ["qemu-system-x86_64", "-nodefaults", "-no-user-config", "-no-reboot",
            "-machine", "q35,accel=tcg", "-cpu", "max", "-m", "1G",
            "-kernel", f"/tmp/boot/{assets.kernel.name}", "-initrd", f"/tmp/boot/{assets.initramfs.name}",
            "-append", "console=ttyS0 panic=-1 quiet",
            "-serial", "stdio", "-monitor", "none", "-display", "none"]
    paths = {"root": "/srv/guestroot,readonly=on", "src": "/gpuhil/src", "run": "/gpuhil/run"}
    for share in shares:
        qemu += ["-fsdev", f"local,id={share},path={paths[share]},security_model=passthrough,multidevs=remap",
                 "-device", f"virtio-9p-pci,fsdev={share},mount_tag=gpuhil.{share}"]
    result = subprocess.run(
        chroot_argv(assets.root, qemu, {"/gpuhil/src": src, "/gpuhil/run": run},
                    readonly_binds={"/tmp/boot": assets.kernel.parent}),
        capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


@pytest.mark.lab
def test_initramfs_boots_into_stage2(assets, tmp_path):
    """Under QEMU the initramfs mounts the overlay root and both shares, then runs stage 2."""
    src, run = tmp_path / "src", tmp_path / "run"
    (src / "gpuhil/lab/guest").mkdir(parents=True)
    run.mkdir()
    (src / "gpuhil/lab/guest/stage2.sh").write_text(STAGE2)
    (src / "marker").write_text("host-edit")
    console = _boot(assets, src, run)
    assert "STAGE2-REACHED root=overlayfs src=host-edit" in console, console[-3000:]
    assert (run / "result").read_text() == "from-guest\n"


@pytest.mark.lab
def test_initramfs_reports_a_missing_share(assets, tmp_path):
    """Without the gpuhil.run share /init prints GPUHIL-INIT-FAIL naming it and powers off."""
    src, run = tmp_path / "src", tmp_path / "run"
    (src / "gpuhil/lab/guest").mkdir(parents=True)
    run.mkdir()
    (src / "gpuhil/lab/guest/stage2.sh").write_text(STAGE2)
    console = _boot(assets, src, run, shares=("root", "src"))
    assert "GPUHIL-INIT-FAIL: mount 9p gpuhil.run" in console, console[-3000:]
    assert "STAGE2-REACHED" not in console


def test_a_tree_deleted_under_its_stamp_is_rebuilt(assets, tmp_path, monkeypatch):
    """If the tree vanished but its stamp stayed, ensure_assets rebuilds instead of returning it."""
    cache = tmp_path / "cache"
    entry_dir = cache / "lab" / assets.key
    entry_dir.mkdir(parents=True)
    (entry_dir / "rootfs").symlink_to(assets.root)
    ensure_assets(cache)
    (entry_dir / "rootfs").unlink()
    (entry_dir / "rootfs").symlink_to(tmp_path / "gone")
    builds: list[Path] = []

    def no_network_build(dest: Path, progress=None, suite=None) -> None:
        builds.append(dest)
        raise rootfs.RootfsBuildError("offline in this test")

    monkeypatch.setattr(rootfs, "build_rootfs", no_network_build)
    lines: list[str] = []
    with pytest.raises(rootfs.RootfsBuildError):
        ensure_assets(cache, progress=lines.append)
    assert builds == [entry_dir / "rootfs"]
    assert any("rebuilding" in line for line in lines)
    assert not (entry_dir / ".complete").exists() and not (entry_dir / "vmlinux").exists()
