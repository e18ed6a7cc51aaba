"""The versions of the stack a lab setup boots, probed from the target itself.

QEMU says its own version (``qemu --version``, run the way guests run it: in its chroot, with its
module directory); virglrenderer and Mesa are read from the dpkg database of the tree QEMU runs
in (the host's for a lab machine without a chroot); the guest kernel's release is read from the
kernel image (the x86 boot header of a bzImage, or the ``Linux version`` banner of a vmlinux).
What a lab config states in its ``[platform]`` table wins (a QEMU built with its own
virglrenderer is not what dpkg knows); what neither says stays unknown ("").
"""
from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path
from typing import Any

from gpuhil.gating.expectations import Platform

__all__ = ["kernel_release_of", "platform_of", "qemu_version", "tree_versions"]

#: Platform field -> the Debian package whose version it is.
_PACKAGES = {"virglrenderer": "libvirglrenderer1", "mesa": "libgl1-mesa-dri"}
_BANNER = re.compile(rb"Linux version (\d+\.\d+[^\s\x00]*) \(")
_QEMU_VERSION = re.compile(r"QEMU emulator version (\d+\.\d+[^\s]*)(?: \(([^)]*)\))?")
_CACHE: dict[tuple, Platform] = {}


def kernel_release_of(path: Path) -> str:
    """``7.2.13+deb14-amd64`` from a bzImage's header or a vmlinux's banner ("" if neither)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    if len(data) > 0x210 and data[0x202:0x206] == b"HdrS":
        offset = struct.unpack_from("<H", data, 0x20E)[0] + 0x200
        release = data[offset:offset + 256].split(b" ", 1)[0].split(b"\x00", 1)[0]
        if re.fullmatch(rb"\d+\.\d+\S*", release):
            return release.decode(errors="replace")
    match = _BANNER.search(data)
    return match.group(1).decode(errors="replace") if match else ""


def qemu_version(setup: Any) -> str:
    """``11.1.3 (Debian 1:11.1.3+ds-1)``: what the setup's QEMU prints ("" if it cannot say)."""
    match = _QEMU_VERSION.search(setup.qemu_output("--version"))
    if not match:
        return ""
    return f"{match.group(1)} ({match.group(2)})" if match.group(2) else match.group(1)


def tree_versions(root: Path) -> dict[str, str]:
    """virglrenderer and Mesa versions from the dpkg database of ``root`` (missing ones left out)."""
    from gpuhil.lab.rootfs import installed_packages

    try:
        packages = installed_packages(Path(root))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {field: packages[pkg] for field, pkg in _PACKAGES.items() if pkg in packages}


def platform_of(setup: Any) -> Platform:
    """The stack ``setup`` boots; ``None`` (the local target) is this machine's kernel.  Probed
    once per setup and process; the one place the stack's versions are read."""
    if setup is None:
        import os

        return Platform(kernel=os.uname().release)
    assets = getattr(setup, "assets", None)
    stated = dict(getattr(setup, "stated_versions", ()) or ())
    key = (setup.qemu, str(setup.chroot), str(setup.kernel), setup.qemu_module_dir,
           tuple(sorted(stated.items())), assets is not None)
    if key not in _CACHE:
        if assets is not None:  # the lab gpuhil built: its stamp records what it installed
            m = assets.manifest
            found = {"qemu": m.qemu, "virglrenderer": m.virglrenderer, "mesa": m.mesa,
                     "kernel": assets.kernel_release}
        else:
            found = {"qemu": qemu_version(setup), "kernel": kernel_release_of(setup.kernel),
                     **tree_versions(setup.chroot if setup.chroot is not None else Path("/"))}
        found.update(stated)
        _CACHE[key] = Platform(**{k: found.get(k, "") for k in ("qemu", "virglrenderer",
                                                                  "kernel", "mesa")})
    return _CACHE[key]
