"""Builds gpuhil's Cython extensions for the guest's Python (the tree's python3) in the chroot:
the lab's built tree, or the ``guest_root`` of a lab config (:func:`guest_tree`).

The live project tree is bound at /gpuhil/src and ``setup.py build_ext --inplace`` puts the
``.cpython-3XY-*.so`` files next to the host's in ``gpuhil/``; the guest imports them from the
same tree over 9p.  A stamp (hash of ``_ext/**`` and ``setup.py``) in the cache, keyed by the
project path, makes the call free when nothing changed.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from filelock import FileLock

from gpuhil.lab.assets import LabAssets, upstream_version
from gpuhil.lab.cache import AssetError, cache_dir, write_atomic
from gpuhil.lab.chroot import chroot_argv

GUEST_SRC = "/gpuhil/src"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class GuestBuildError(AssetError):
    """Building the guest's extensions failed; the message carries the build's output."""


@dataclass(frozen=True)
class GuestTree:
    """A guest root that is not the lab's built tree: where it is, a key, its Python version."""

    root: Path
    key: str
    python: str


Tree = Union[LabAssets, GuestTree]


def guest_tree(root: Path) -> GuestTree | None:
    """A lab config's guest root as a build tree; None when its dpkg database has no python3
    (not a Debian-like tree: nothing to build with)."""
    from gpuhil.lab.rootfs import installed_packages

    root = Path(root).resolve()
    try:
        python = installed_packages(root).get("python3")
    except (OSError, subprocess.SubprocessError):
        python = None
    if not python:
        return None
    return GuestTree(root, hashlib.sha256(f"{root}\0{python}".encode()).hexdigest()[:16], python)


def _python(tree: Tree) -> str:
    return tree.python if isinstance(tree, GuestTree) else tree.manifest.python


def extension_sources(project_root: Path) -> list[Path]:
    """The .pyx files that become extensions (``_ext/<name>.pyx`` -> ``gpuhil._<name>``)."""
    return sorted((project_root / "_ext").glob("*.pyx"))


def _source_files(project_root: Path) -> list[Path]:
    """_ext/** and setup.py, without the host build's Cython output."""
    ext = project_root / "_ext"
    generated = {ext / f"{pyx.stem}{suffix}" for pyx in extension_sources(project_root)
                 for suffix in (".c", ".cpp", ".html")}
    files = [p for p in ext.rglob("*") if p.is_file() and p not in generated]
    return sorted([*files, project_root / "setup.py"])


def inputs_digest(project_root: Path, assets_key: str) -> str:
    """Hash of everything the guest extensions are built from: _ext/**, setup.py, the tree."""
    h = hashlib.sha256(assets_key.encode())
    for path in _source_files(project_root):
        rel = path.relative_to(project_root).as_posix()
        h.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def guest_ext_suffix(assets: Tree) -> str:
    """The extension filename suffix of the tree's Python, e.g. '.cpython-314-x86_64-linux-gnu.so'."""
    major, minor = upstream_version(_python(assets))[:2]
    return f".cpython-{major}{minor}-x86_64-linux-gnu.so"


def expected_modules(project_root: Path, assets: Tree) -> list[Path]:
    suffix = guest_ext_suffix(assets)
    return [project_root / "gpuhil" / f"_{pyx.stem}{suffix}" for pyx in extension_sources(project_root)]


def stamp_path(assets: Tree, project_root: Path) -> Path:
    """Where the digest of the last guest build of ``project_root`` for this tree is recorded
    (a .lock beside)."""
    name = hashlib.sha256(str(Path(project_root).resolve()).encode()).hexdigest()[:16]
    if isinstance(assets, GuestTree):
        return cache_dir() / "lab" / "guest-ext" / f"{name}-{assets.key}.json"
    return assets.root.parent.parent / "guest-ext" / f"{name}.json"


def build_argv(assets: Tree, project_root: Path) -> list[str]:
    """The chrooted command that builds the extensions in place for the tree's Python."""
    return chroot_argv(
        assets.root,
        ["/usr/bin/env", "-i", "-C", GUEST_SRC, f"PATH={GUEST_PATH}", "HOME=/tmp",
         "GPUHIL_CYTHON_BUILD_DIR=/tmp/gpuhil-cython", "PYTHONDONTWRITEBYTECODE=1",
         "python3", "setup.py", "-q", "build_ext", "--inplace", "--build-temp", "/tmp/gpuhil-build",
         "--build-lib", "/tmp/gpuhil-build/lib"],
        binds={GUEST_SRC: project_root}, export_root_at=None)


def _built_after_sources(project_root: Path, tree: Tree) -> bool:
    """The modules for this Python exist and are newer than every source (built for another tree
    of the same Python, e.g. the lab's): nothing to rebuild in place under running guests."""
    modules = expected_modules(project_root, tree)
    newest = max(p.stat().st_mtime for p in _source_files(project_root))
    return all(m.is_file() and m.stat().st_mtime >= newest for m in modules)


def ensure_guest_extensions(assets: Tree, project_root: Path,
                            progress: Callable[[str], None] | None = None) -> None:
    """Build the guest's extensions unless they are up to date with _ext/ and setup.py."""
    project_root = Path(project_root).resolve()
    if not extension_sources(project_root):
        return
    stamp = stamp_path(assets, project_root)
    stamp.parent.mkdir(parents=True, exist_ok=True)

    def up_to_date() -> bool:
        try:
            recorded = json.loads(stamp.read_text())
        except (FileNotFoundError, ValueError):
            return False
        return (recorded.get("digest") == inputs_digest(project_root, assets.key)
                and all(p.is_file() for p in expected_modules(project_root, assets)))

    if up_to_date() or (isinstance(assets, GuestTree) and _built_after_sources(project_root, assets)):
        return
    with FileLock(str(stamp.with_suffix(".lock"))):
        if up_to_date():
            return
        digest = inputs_digest(project_root, assets.key)
        if progress is not None:
            progress(f"building gpuhil's extensions for the guest's Python {_python(assets)} "
                     f"in {assets.root}")
        proc = subprocess.run(build_argv(assets, project_root), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace")
        if proc.returncode != 0:
            raise GuestBuildError(f"guest extension build failed (status {proc.returncode}):\n"
                                  + (proc.stdout + proc.stderr)[-4000:])
        missing = [str(p) for p in expected_modules(project_root, assets) if not p.is_file()]
        if missing:
            raise GuestBuildError(f"guest extension build did not produce {', '.join(missing)}")
        write_atomic(stamp, json.dumps({"project": str(project_root), "digest": digest}).encode())
