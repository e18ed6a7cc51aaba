"""Run a program inside the lab tree without touching the host.

The command is ``unshare --mount`` (a private mount namespace) running a fixed /bin/sh script
that mounts what the program needs into the tree and then ``exec chroot``s it, so the PID of
the Popen is the program itself and every mount disappears with it.  All values (tree path,
bind paths, the program's argv) travel as positional parameters of that script, never inside
a shell string, so any byte sequence is passed through unchanged.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

DEFAULT_EXPORT = "/srv/guestroot"

# Positional parameters: root, export_at ('' for none), then (mode, inside, host) triples
# terminated by '--', then the program's argv.
_SCRIPT = r"""
set -e
root=$1 export_at=$2
shift 2
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
if [ -n "$export_at" ]; then
  mount --bind "$root" "$root$export_at"
  mount -o remount,bind,ro "$root$export_at"
fi
while [ "$1" != -- ]; do
  mode=$1 dst=$root$2 src=$3
  shift 3
  if [ ! -e "$dst" ]; then
    if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "${dst%/*}"; : > "$dst"; fi
  fi
  mount --bind "$src" "$dst"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst"; fi
done
shift
exec chroot "$root" "$@"
"""

# Inside-paths under these are tmpfs in the namespace, so missing mount points may be created.
_SCRATCH = (PurePosixPath("/tmp"), PurePosixPath("/run"))


def _inside(path: str) -> str:
    p = PurePosixPath(path)
    if not p.is_absolute() or ".." in p.parts or str(p) == "/":
        raise ValueError(f"bind target must be an absolute path below / without '..': {path!r}")
    return str(p)


def _check_mount_point(root: Path, inside: str) -> None:
    p = PurePosixPath(inside)
    if any(p.is_relative_to(s) and p != s for s in _SCRATCH):
        return
    if not (root / inside.lstrip("/")).exists():
        raise ValueError(f"mount point {inside} does not exist in {root} "
                         f"(only paths under /tmp and /run are created on demand)")


def chroot_argv(root: Path, argv: Sequence[str], binds: Mapping[str, Path] = {}, *,
                readonly_binds: Mapping[str, Path] = {},
                export_root_at: str | None = DEFAULT_EXPORT) -> list[str]:
    """The argv that runs ``argv`` chrooted into ``root`` in a private mount namespace.

    Inside it: /dev and /sys (recursive binds), a fresh /proc, tmpfs /tmp and /run, each of
    ``binds`` (inside path -> host path) read-write and ``readonly_binds`` read-only, and at
    ``export_root_at`` a non-recursive read-only bind of the tree itself (what QEMU exports to
    the guest as its root, free of the chroot's own submounts).  Run as root.
    """
    if not argv:
        raise ValueError("argv is empty")
    root = Path(root).resolve()
    params: list[str] = [str(root)]
    if export_root_at is not None:
        export = _inside(export_root_at)
        _check_mount_point(root, export)
        params.append(export)
    else:
        params.append("")
    for mode, table in (("rw", binds), ("ro", readonly_binds)):
        for inside, host in table.items():
            inside = _inside(inside)
            _check_mount_point(root, inside)
            params += [mode, inside, str(Path(host).resolve())]
    params.append("--")
    params += [str(a) for a in argv]
    return ["unshare", "--mount", "--propagation", "private", "--",
            "/bin/sh", "-c", _SCRIPT, "gpuhil-chroot", *params]
