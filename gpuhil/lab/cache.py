"""Where the lab's built assets live and how they are keyed, locked and completed.

Layout under ``<cache>/lab``::

    <key>.lock          filelock serialising builders of one key
    <key>/rootfs/       the Debian sid tree
    <key>/manifest.json installed versions (written before the stamp)
    <key>/.complete     stamp, written last: its presence means everything above is whole
    <key>/vmlinux-*, <key>/initramfs-*.cpio   boot files, each replaced atomically
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from gpuhil.errors import GpuhilError

STAMP_NAME = ".complete"


class AssetError(GpuhilError, RuntimeError):
    """The lab's assets could not be built, or do not match what gpuhil expects."""


def _chosen_cache_dir() -> tuple[Path, str]:
    """The cache directory and where its path came from."""
    explicit = os.environ.get("GPUHIL_CACHE")
    if explicit:
        return Path(explicit), "$GPUHIL_CACHE"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "gpuhil", "$XDG_CACHE_HOME/gpuhil"
    return Path.home() / ".cache" / "gpuhil", "the default, ~/.cache/gpuhil"


def cache_dir() -> Path:
    """The user cache directory: $GPUHIL_CACHE, else $XDG_CACHE_HOME/gpuhil, else ~/.cache/gpuhil;
    made if missing.  AssetError naming the path, where it came from and what is wrong when it
    is not a writable directory (a file in its place, a read-only file system, no permission)."""
    path, source = _chosen_cache_dir()
    fix = "set GPUHIL_CACHE to a writable directory"
    if path.exists() and not path.is_dir():
        raise AssetError(f"the gpuhil cache {path} ({source}) is not a directory: remove it or {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AssetError(f"the gpuhil cache {path} ({source}) cannot be created: {exc.strerror}; "
                         f"{fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        why = "read-only file system" if _read_only(path) else "no write permission"
        raise AssetError(f"the gpuhil cache {path} ({source}) is not writable ({why}); {fix}")
    return path


def _read_only(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def input_key(inputs: Any, length: int = 16) -> str:
    """A short stable hash of JSON-serialisable build inputs (key order does not matter)."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


@dataclass(frozen=True)
class KeyedEntry:
    """One keyed cache entry: its directory, its lock and its completion stamp."""

    base: Path
    key: str

    @property
    def dir(self) -> Path:
        return self.base / self.key

    @property
    def lock_path(self) -> Path:
        return self.base / f"{self.key}.lock"

    @property
    def stamp(self) -> Path:
        return self.dir / STAMP_NAME

    def is_complete(self) -> bool:
        return self.stamp.is_file()

    def lock(self, timeout: float = -1) -> FileLock:
        """The inter-process lock of this entry (a context manager; waits by default)."""
        self.base.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path), timeout=timeout)

    def mark_complete(self, text: str = "") -> None:
        write_atomic(self.stamp, text.encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_tree(path: Path) -> None:
    """Remove a (possibly root-owned, partially built) tree without crossing into other mounts."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)
    else:
        path.unlink()
    if path.exists():
        raise AssetError(f"could not remove {path}")


__all__ = ["AssetError", "KeyedEntry", "cache_dir", "input_key", "remove_tree", "write_atomic",
           "STAMP_NAME"]
