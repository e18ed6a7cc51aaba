"""The lab's assets (the sid tree, the guest kernel and initramfs, the version manifest), built
once into the cache and found again in well under a second.

``ensure_assets()`` is the entry point: it returns :class:`LabAssets`, building what is missing
under an inter-process lock and checking the installed versions against what gpuhil expects.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from filelock import Timeout

from gpuhil.lab import bootfiles, packages, rootfs
from gpuhil.lab.cache import AssetError, KeyedEntry, input_key, remove_tree, write_atomic
from gpuhil.lab.cache import cache_dir as default_cache_dir

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Manifest:
    """Versions installed in the tree: the stack under test picked out, and every package."""

    qemu: str
    virglrenderer: str
    mesa: str
    kernel: str
    python: str
    linux_libc_dev: str
    packages: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_packages(cls, packages: dict[str, str], kernel_release: str) -> "Manifest":
        """Pick the stack's versions out of ``dpkg-query -W`` (raises AssetError if one is missing)."""
        wanted = {
            "qemu": "qemu-system-x86",
            "virglrenderer": "libvirglrenderer1",
            "mesa": "libgl1-mesa-dri",
            "kernel": f"linux-image-{kernel_release}",
            "python": "python3",
            "linux_libc_dev": "linux-libc-dev",
        }
        missing = sorted(pkg for pkg in wanted.values() if pkg not in packages)
        if missing:
            raise AssetError(f"the lab tree lacks {', '.join(missing)}")
        return cls(**{k: packages[pkg] for k, pkg in wanted.items()}, packages=dict(packages))

    def summary(self) -> str:
        """One line for reports: the stack under test."""
        return (f"QEMU {self.qemu}, virglrenderer {self.virglrenderer}, Mesa {self.mesa}, "
                f"kernel {self.kernel}, Python {self.python}, linux-libc-dev {self.linux_libc_dev}")


def upstream_version(debian_version: str) -> tuple[int, ...]:
    """The leading numeric components of a Debian version: '1:11.1.3+ds-1' -> (11, 1, 3)."""
    version = debian_version.split(":", 1)[-1]
    match = re.match(r"\d+(?:\.\d+)*", version)
    if not match:
        raise AssetError(f"cannot read a version number from {debian_version!r}")
    return tuple(int(x) for x in match.group().split("."))


def check_versions(manifest: Manifest, kernel_release: str) -> None:
    """Every version of the stack is readable (expectation files match on them); any version
    is accepted: the lab follows its suite, and a newer stack than the expectations were
    triaged on is reported as such, not refused (:mod:`gpuhil.gating.expectations`)."""
    for what, version in (("QEMU", manifest.qemu), ("virglrenderer", manifest.virglrenderer),
                          ("kernel package", manifest.kernel), ("kernel release", kernel_release)):
        try:
            upstream_version(version)
        except AssetError:
            raise AssetError(f"the lab tree's {what} version {version!r} has no version number "
                             f"expectation files could match on") from None


@dataclass(frozen=True)
class LabAssets:
    """Everything a lab guest boots from; paths are inside the cache entry ``key``."""

    root: Path            # the Debian sid tree: host-side QEMU stack (via chroot) and guest root
    kernel: Path          # uncompressed vmlinux (QEMU boots it through the PVH entry)
    initramfs: Path       # newc cpio: static busybox + modules + /init
    kernel_release: str
    manifest: Manifest
    key: str              # hash of the tree's inputs


ASSETS_FILE = "assets.json"
STALE_INITRAMFS_SECONDS = 24 * 3600
VMLINUX_FILE = "vmlinux"
#: A file every finished tree has; its absence means the tree was deleted under the stamp.
TREE_SENTINEL = "usr/bin/qemu-system-x86_64"


def _initramfs_file(entry: KeyedEntry, init_script: bytes) -> Path:
    key = input_key({"init": bootfiles_inputs(init_script)}, 12)
    return entry.dir / f"initramfs-{key}.cpio"


def bootfiles_inputs(init_script: bytes) -> dict[str, object]:
    """What the initramfs depends on besides the tree (the tree is covered by the entry key)."""
    return {"init": hashlib.sha256(init_script).hexdigest(),
            "modules": list(bootfiles.INITRAMFS_MODULES), "version": bootfiles.VERSION}


class StampError(AssetError):
    """The entry's ``assets.json`` is missing, empty, garbled or lacks a key; names the file."""


def _read_stamp(entry: KeyedEntry) -> tuple[str, Manifest]:
    """The kernel release and manifest recorded in ``assets.json`` (StampError naming the file
    and what is wrong with it)."""
    path = entry.dir / ASSETS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StampError(f"{path}: missing") from None
    except OSError as exc:
        raise StampError(f"{path}: unreadable ({exc.strerror})") from None
    if not text.strip():
        raise StampError(f"{path}: empty")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StampError(f"{path}: not JSON ({exc})") from None
    try:
        return str(data["kernel_release"]), Manifest(**data["manifest"])
    except KeyError as exc:
        raise StampError(f"{path}: no {exc.args[0]!r} key") from None
    except TypeError as exc:
        raise StampError(f"{path}: a malformed manifest ({exc})") from None


def _write_stamp(entry: KeyedEntry, tree: Path) -> tuple[str, Manifest]:
    """Record the tree's kernel release and installed versions in ``assets.json``; both."""
    release = rootfs.kernel_release(tree)
    manifest = Manifest.from_packages(rootfs.installed_packages(tree), release)
    write_atomic(entry.dir / ASSETS_FILE, json.dumps(
        {"kernel_release": release, "manifest": asdict(manifest)}, indent=1).encode())
    return release, manifest


def _stamped_release(entry: KeyedEntry, tree: Path, say: Progress) -> str:
    """The kernel release ``assets.json`` records, the stamp rewritten from the tree first when
    it is damaged (StampError saying what to delete when even that fails)."""
    try:
        return _read_stamp(entry)[0]
    except StampError as exc:
        say(f"{exc}: rewriting it from the tree")
        try:
            return _write_stamp(entry, tree)[0]
        except Exception as again:  # noqa: BLE001 - the message says what to delete
            raise StampError(f"{exc}, and it could not be rewritten from the tree "
                             f"({type(again).__name__}: {again}); delete {entry.dir} to rebuild "
                             f"the lab") from again


def _load(entry: KeyedEntry, init_script: bytes) -> LabAssets | None:
    """The finished assets of ``entry`` if they are all there (no tree walk: this is the warm path)."""
    if not entry.is_complete() or not (entry.dir / "rootfs" / TREE_SENTINEL).is_file():
        return None
    initramfs = _initramfs_file(entry, init_script)
    if not initramfs.is_file():
        return None
    if time.time() - initramfs.stat().st_mtime > STALE_INITRAMFS_SECONDS / 2:
        os.utime(initramfs)  # in use: keep it clear of the pruning of stale initramfs files
    try:
        release, manifest = _read_stamp(entry)
    except StampError:
        return None  # repaired under the lock by _build
    return LabAssets(root=entry.dir / "rootfs", kernel=entry.dir / VMLINUX_FILE,
                     initramfs=initramfs, kernel_release=release, manifest=manifest, key=entry.key)


def _build(entry: KeyedEntry, init_script: bytes, say: Progress,
           suite: str = packages.SUITE) -> LabAssets:
    """Build whatever ``entry`` lacks; called with the entry's lock held."""
    tree = entry.dir / "rootfs"
    if entry.is_complete() and not (tree / TREE_SENTINEL).is_file():
        say(f"the lab tree in {entry.dir} is incomplete (deleted?): rebuilding it")
        entry.stamp.unlink()
        if tree.is_symlink() or tree.is_dir():
            remove_tree(tree)
    if not entry.is_complete():
        # rootfs/ only ever appears by renaming a finished mmdebstrap tree, so it is whole;
        # everything else in an unstamped entry is redone.
        entry.dir.mkdir(parents=True, exist_ok=True)
        for stale in entry.dir.iterdir():
            if stale.name not in ("rootfs", "rootfs.log"):
                remove_tree(stale)
        if not tree.is_dir():
            say(f"building the lab tree (Debian {suite}, ~1-2 min) in {tree}")
            start = time.monotonic()
            rootfs.build_rootfs(tree, say, suite)
            say(f"lab tree built in {time.monotonic() - start:.0f} s")
        release, manifest = _write_stamp(entry, tree)
        say("extracting the uncompressed kernel (vmlinux)")
        image = (tree / "boot" / f"vmlinuz-{release}").read_bytes()
        write_atomic(entry.dir / VMLINUX_FILE, bootfiles.extract_vmlinux(image))
        entry.mark_complete(manifest.summary() + "\n")
    else:
        release = _stamped_release(entry, tree, say)
    initramfs = _initramfs_file(entry, init_script)
    if not initramfs.is_file():
        say("building the initramfs")
        write_atomic(initramfs, bootfiles.build_initramfs(tree, release, init_script))
        # Other worktrees sharing the cache may boot other /init versions right now: only
        # initramfs files nobody refreshed for a day are pruned.
        for old in entry.dir.glob("initramfs-*.cpio"):
            if old != initramfs and time.time() - old.stat().st_mtime > STALE_INITRAMFS_SECONDS:
                old.unlink(missing_ok=True)
    loaded = _load(entry, init_script)
    assert loaded is not None
    return loaded


def ensure_assets(cache_dir: Path | None = None, progress: Progress | None = None,
                  suite: str = packages.SUITE) -> LabAssets:
    """The lab's assets (of the tree of ``suite``: the default lab's, or a host-side tree of
    another Debian suite), built into the cache first if needed (safe against concurrent
    builders).

    A warm call reads two small files and costs milliseconds.  Raises :class:`AssetError` when
    the default tree's QEMU, virglrenderer or kernel are not the versions gpuhil expects.
    """
    base = (cache_dir if cache_dir is not None else default_cache_dir()) / "lab"
    entry = KeyedEntry(base, input_key(rootfs.build_inputs(suite)))
    init_script = bootfiles.INIT_SCRIPT.read_bytes()
    assets = _load(entry, init_script)
    if assets is None:
        say = progress if progress is not None else (lambda _line: None)
        lock = entry.lock()
        try:
            lock.acquire(timeout=0)
        except Timeout:
            say(f"waiting for another process building the lab assets ({entry.lock_path})")
            lock.acquire()
        try:
            assets = _load(entry, init_script) or _build(entry, init_script, say, suite)
        finally:
            lock.release()
    check_versions(assets.manifest, assets.kernel_release)
    return assets
