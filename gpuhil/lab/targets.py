"""Where the suites run: the built-in virtual lab, the local machine, or a lab machine described
by a TOML file (its own QEMU, kernel, initramfs, guest root and GPUs).

A lab config file::

    qemu = "/opt/qemu/bin/qemu-system-x86_64"
    kernel = "/srv/lab/vmlinuz"
    initramfs = "/srv/lab/initramfs.cpio"
    guest_root = "/srv/lab/root"        # exported to the guest read-only over 9p
    chroot = "/srv/lab/root"            # optional: run QEMU inside this tree

    qemu_module_dir = "/opt/qemu/lib/qemu"   # optional: a QEMU installed outside /usr
    qemu_data_dir = "/opt/qemu/share/qemu"   # (paths as QEMU sees them)
    host_suite = "stable"                # instead of qemu/chroot: QEMU from a tree of this
                                         # Debian suite (`gpuhil lab build --suite stable`);
                                         # kernel, initramfs and guest_root default to the lab's

    [platform]                           # optional: versions the probe cannot read (a QEMU
    virglrenderer = "1.2.0"              # built with its own virglrenderer); keys qemu,
                                         # virglrenderer, mesa, kernel; they win over the probe

    [[gpu]]                              # optional, repeatable: the GPUs tests may lease
    pci = "0000:03:00.0"
    render_node = "/dev/dri/renderD128"
"""
from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["GpuEntry", "Target", "TargetError", "TargetKind", "parse_target"]

_KEYS = {"qemu", "kernel", "initramfs", "guest_root", "chroot", "gpu", "host_suite",
         "qemu_module_dir", "qemu_data_dir", "platform"}
_PLATFORM_KEYS = ("qemu", "virglrenderer", "mesa", "kernel")
#: QEMU's path inside a Debian tree.
TREE_QEMU = "/usr/bin/qemu-system-x86_64"
_GPU_KEYS = {"pci", "render_node", "vendor", "device"}


class TargetError(ValueError):
    """A target that cannot be used: names the option and the bad value."""


class TargetKind(str, enum.Enum):
    """The virtual lab, the local machine, or a lab described by a config file."""

    LAB = "lab"
    LOCAL = "local"
    CONFIG = "config"


@dataclass(frozen=True)
class GpuEntry:
    """A GPU a lab config file offers (selected with ``--gpuhil-gpu``, leased by tests)."""

    pci: str | None = None
    render_node: str | None = None


@dataclass(frozen=True)
class Target:
    """A parsed ``--gpuhil-target``; :meth:`lab_setup` makes the lab's :class:`LabSetup`."""

    kind: TargetKind
    config_path: Path | None = None
    qemu: str | None = None
    kernel: Path | None = None
    initramfs: Path | None = None
    guest_root: Path | None = None
    chroot: Path | None = None
    gpus: tuple[GpuEntry, ...] = ()
    host_suite: str | None = None  # QEMU from the lab tree of this Debian suite
    qemu_module_dir: str | None = None
    qemu_data_dir: str | None = None
    stated_versions: tuple[tuple[str, str], ...] = ()  # the config's [platform] table

    @property
    def boots_guests(self) -> bool:
        return self.kind is not TargetKind.LOCAL

    def describe(self) -> str:
        return str(self.config_path) if self.kind is TargetKind.CONFIG else self.kind.value

    def lab_setup(self, progress: Callable[[str], None] | None = None, build: bool = True):
        """The LabSetup to boot guests with (built on first use for the virtual lab; for a lab
        config, gpuhil's extensions are built for its guest root's Python unless ``build`` is
        False)."""
        from gpuhil.lab.setup import LabSetup

        if self.kind is TargetKind.LAB:
            return LabSetup.default(progress=progress)
        if self.kind is TargetKind.CONFIG:
            qemu, kernel, initramfs = self.qemu, self.kernel, self.initramfs
            guest_root, chroot = self.guest_root, self.chroot
            if self.host_suite is not None:  # QEMU from that suite's tree, the rest the lab's
                from gpuhil.lab.assets import ensure_assets

                lab = LabSetup.default(progress=progress)
                chroot = ensure_assets(progress=progress, suite=self.host_suite).root
                qemu, kernel = qemu or TREE_QEMU, kernel or lab.kernel
                initramfs, guest_root = initramfs or lab.initramfs, guest_root or lab.guest_root
            assert qemu and kernel and initramfs and guest_root
            setup = LabSetup(qemu=qemu, kernel=kernel, initramfs=initramfs, guest_root=guest_root,
                             chroot=chroot, qemu_module_dir=self.qemu_module_dir,
                             qemu_data_dir=self.qemu_data_dir,
                             stated_versions=self.stated_versions)
            setup.check()
            lab_tree = self.host_suite is not None and guest_root == lab.guest_root
            if build and not lab_tree:  # the lab's own tree has them already
                from gpuhil.lab.guest_build import ensure_guest_extensions, guest_tree
                from gpuhil.lab.setup import PROJECT_ROOT

                tree = guest_tree(guest_root)
                if tree is not None:
                    ensure_guest_extensions(tree, PROJECT_ROOT, progress)
                elif progress is not None:
                    progress(f"guest_root = {str(guest_root)!r} has no python3 package in its "
                             f"dpkg database: gpuhil's extensions are not built for it (payloads "
                             f"that need them fail there)")
            return setup
        raise TargetError("the local target boots no guests")


def _config(path: Path, option: str) -> Target:
    def bad(problem: str) -> TargetError:
        return TargetError(f"{option}={path}: {problem}")

    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise bad("no such file (expected 'lab', 'local' or a lab config TOML file)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise bad(f"cannot read it as TOML: {exc}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise bad(f"unknown keys {unknown} (known: {sorted(_KEYS)})")
    host_suite = data.get("host_suite")
    if host_suite is not None:
        from gpuhil.lab.packages import suite_sources

        if "chroot" in data:
            raise bad("host_suite and chroot both name the tree QEMU runs in: keep one")
        try:
            suite_sources(str(host_suite))
        except ValueError as exc:
            raise bad(f"host_suite = {host_suite!r}: {str(exc).split(': ', 1)[1]}") from None
    missing = [k for k in ("qemu", "kernel", "initramfs", "guest_root") if not data.get(k)]
    if missing and host_suite is None:
        raise bad(f"missing {', '.join(missing)}")
    paths: dict[str, Path] = {}
    for key in ("kernel", "initramfs", "guest_root", "chroot"):
        if key in data:
            value = data[key]
            if not isinstance(value, str):
                raise bad(f"{key} must be a path string, not {value!r}")
            resolved = (path.parent / value).resolve()
            if not resolved.exists():
                raise bad(f"{key} = {value!r}: no such file or directory")
            paths[key] = resolved
    gpus = []
    for i, entry in enumerate(data.get("gpu", [])):
        if not isinstance(entry, dict) or set(entry) - _GPU_KEYS:
            raise bad(f"gpu[{i}] must be a table with keys from {sorted(_GPU_KEYS)}: {entry!r}")
        gpus.append(GpuEntry(entry.get("pci"), entry.get("render_node")))
    qemu_dirs = {}
    for key in ("qemu_module_dir", "qemu_data_dir"):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith("/")):
            raise bad(f"{key} must be an absolute path (as QEMU sees it), not {value!r}")
        qemu_dirs[key] = value
    stated = data.get("platform", {})
    if not isinstance(stated, dict) or set(stated) - set(_PLATFORM_KEYS) or not all(
            isinstance(v, str) and v[:1].isdigit() for v in stated.values()):
        raise bad(f"[platform] must map some of {list(_PLATFORM_KEYS)} to version strings "
                  f"starting with a digit, not {stated!r}")
    target = Target(TargetKind.CONFIG, path, data.get("qemu"), paths.get("kernel"),
                    paths.get("initramfs"), paths.get("guest_root"), paths.get("chroot"),
                    tuple(gpus), host_suite, **qemu_dirs,
                    stated_versions=tuple(sorted(stated.items())))
    if host_suite is not None:
        return target  # its tree may still have to be built: checked once it is there
    from gpuhil.lab.errors import LabError

    try:
        target.lab_setup(build=False)  # checks every path now, not at the first boot
    except LabError as exc:
        raise bad(str(exc)) from None
    return target


def parse_target(value: str, option: str = "--gpuhil-target") -> Target:
    """``lab``, ``local``, or the path of a lab config file (TargetError naming ``option``)."""
    value = value.strip()
    if value == TargetKind.LAB.value:
        return Target(TargetKind.LAB)
    if value == TargetKind.LOCAL.value:
        return Target(TargetKind.LOCAL)
    if not value:
        raise TargetError(f"{option} is empty (expected 'lab', 'local' or a lab config TOML file)")
    return _config(Path(value).expanduser(), option)
