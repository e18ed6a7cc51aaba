"""Builds a Debian tree (sid by default) with mmdebstrap and reads what got installed in it."""
from __future__ import annotations

import collections
import subprocess
from pathlib import Path
from typing import Callable

from gpuhil.lab import packages
from gpuhil.lab.cache import AssetError, remove_tree

#: Bump when the way the tree is built changes in a way the package list does not show.
BUILDER_VERSION = 2


class RootfsBuildError(AssetError):
    """mmdebstrap failed; the message carries its exit status and the tail of its output."""


def build_inputs(suite: str = packages.SUITE) -> dict[str, object]:
    """Everything the tree of ``suite`` depends on, for the cache key."""
    return {
        "builder": BUILDER_VERSION,
        "suite": suite,
        "mirror": packages.mirror(),
        "argv": packages.mmdebstrap_argv("TARGET", suite=suite),
    }


#: mmdebstrap --verbose lines worth showing as progress (the rest only go to the log).
PROGRESS_PREFIXES = ("I: ", "W: ", "E: ", "Setting up ", "Fetched ", "Need to get ")


def build_rootfs(dest: Path, progress: Callable[[str], None] | None = None,
                 suite: str = packages.SUITE) -> None:
    """Build the tree into ``dest`` (which must not exist) via ``dest.partial`` + rename.

    mmdebstrap runs in a private mount namespace so no mount it makes can outlive it.  Its
    whole output goes to ``dest.log`` (``<dest>.log`` beside the tree) and the milestone lines
    to ``progress``.  On failure the partial tree is removed and :class:`RootfsBuildError`
    is raised with the tail of the output.
    """
    if dest.exists():
        raise FileExistsError(dest)
    partial = dest.with_name(dest.name + ".partial")
    remove_tree(partial)
    argv = ["unshare", "--mount", "--propagation", "private", "--",
            *packages.mmdebstrap_argv(str(partial), "--verbose", suite=suite)]
    log_path = dest.with_name(dest.name + ".log")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    try:
        with open(log_path, "w") as log, subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, errors="replace") as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                line = line.rstrip("\n")
                tail.append(line)
                if progress is not None and line.startswith(PROGRESS_PREFIXES):
                    progress(line)
            rc = proc.wait()
        if rc != 0:
            raise RootfsBuildError(
                f"mmdebstrap exited with status {rc} building {dest} (full log: {log_path}):\n"
                + "\n".join(tail))
        partial.rename(dest)
    except BaseException:
        remove_tree(partial)
        raise


def installed_packages(root: Path) -> dict[str, str]:
    """Package name -> version of every package installed in the tree (dpkg-query -W)."""
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W",
         "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
        check=True, capture_output=True, text=True).stdout
    return parse_dpkg_query(out)


def parse_dpkg_query(text: str) -> dict[str, str]:
    """Parse ``status<TAB>package<TAB>version`` lines, keeping installed packages only."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        status, name, version = parts
        if status.startswith("ii") and version:
            result[name] = version
    return result


def kernel_release(root: Path) -> str:
    """The release of the tree's kernel (the one that has both /boot/vmlinuz-* and modules)."""
    releases = sorted(p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*")
                      if (root / "usr/lib/modules" / p.name[len("vmlinuz-"):]).is_dir())
    if len(releases) != 1:
        raise RuntimeError(f"expected one kernel in {root}/boot with modules, found {releases}")
    return releases[0]
