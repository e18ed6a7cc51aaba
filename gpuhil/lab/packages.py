"""The lab tree's inputs as data: Debian suite and mirror, the pinned package list, the
mmdebstrap options and the customize hook that slims the tree (LAB.md §1, ``SLIM=1``)."""
from __future__ import annotations

import os

#: The default lab's suite; ``gpuhil lab build --suite`` builds host-side trees from others.
SUITE = "sid"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: Suites that are an overlay on a base suite (apt prefers the overlay's versions).
OVERLAYS = {"experimental": "unstable"}


def suite_sources(suite: str) -> tuple[str, list[str], list[str]]:
    """(the base suite mmdebstrap starts from, extra apt source lines, extra apt options) for
    ``suite``: a plain suite or codename (sid, testing, stable, trixie, ...), ``<codename>-
    backports`` or ``experimental`` (both on top of their base, with apt preferring them)."""
    if not suite or not all(c.isalnum() or c in "-." for c in suite):
        raise ValueError(f"--suite={suite!r}: not a Debian suite or codename")
    base = OVERLAYS.get(suite)
    if base is None and suite.endswith("-backports"):
        base = suite.removesuffix("-backports")
    if base is None:
        return suite, [], []
    return base, [f"deb {mirror()} {base} main", f"deb {mirror()} {suite} main"], [
        f'APT::Default-Release "{suite}"']

#: The host-side QEMU stack and the guest userland (LAB.md's slim list).
LAB_PACKAGES: tuple[str, ...] = (
    "qemu-system-x86", "qemu-system-modules-opengl", "libvirglrenderer1", "virgl-server",
    "libgl1-mesa-dri", "libegl1", "libegl-mesa0", "libgbm1", "mesa-vulkan-drivers",
    "mesa-utils", "vulkan-tools", "linux-image-amd64", "linux-libc-dev", "python3",
    "python3-pyudev", "kmod", "udev", "busybox-static", "pciutils", "strace",
)

#: What gpuhil needs in the guest and to build the guest's Cython extensions in the chroot.
GPUHIL_PACKAGES: tuple[str, ...] = (
    "python3-dev", "cython3", "python3-setuptools", "gcc", "libc6-dev", "python3-pytest",
    "python3-filelock",
)

PACKAGES: tuple[str, ...] = LAB_PACKAGES + GPUHIL_PACKAGES

#: Empty directories used as mount points by the chroot and the guest.
MOUNT_POINTS: tuple[str, ...] = ("/srv/guestroot", "/gpuhil/src", "/gpuhil/run")

#: Kernel module subtrees (under /usr/lib/modules/<release>/kernel) the lab never loads.
TRIMMED_MODULE_TREES: tuple[str, ...] = (
    "drivers/net/wireless", "net/wireless", "net/mac80211", "net/bluetooth",
    "drivers/bluetooth", "drivers/media", "drivers/infiniband", "drivers/gpu/drm/amd",
    "drivers/gpu/drm/radeon", "drivers/gpu/drm/i915", "drivers/gpu/drm/nouveau",
    "drivers/gpu/drm/xe", "drivers/usb", "sound", "drivers/staging", "drivers/net/ethernet",
    "drivers/isdn", "drivers/net/can",
)

#: Vulkan ICDs kept (by prefix of the icd.d json and of libvulkan_<name>.so).
KEPT_VULKAN_ICDS: tuple[str, ...] = ("lvp", "virtio")

DPKG_OPTIONS: tuple[str, ...] = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)

APT_OPTIONS: tuple[str, ...] = ('Acquire::Check-Valid-Until "false"',)


def check_suite_exists(suite: str) -> None:
    """ValueError naming the suite and the mirror when the mirror has no Release file for it
    (checked before a tree is built for it, so a typo leaves no cache entry behind)."""
    import urllib.error
    import urllib.request

    suite_sources(suite)
    url = f"{mirror().rstrip('/')}/dists/{suite}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=60):
            return
    except urllib.error.HTTPError as exc:
        raise ValueError(f"--suite={suite!r}: the mirror has no {url} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ValueError(f"--suite={suite!r}: cannot reach {url} ({exc})") from None


def mirror() -> str:
    """The Debian mirror ($GPUHIL_DEBIAN_MIRROR overrides deb.debian.org)."""
    return os.environ.get("GPUHIL_DEBIAN_MIRROR", DEFAULT_MIRROR)


#: The initramfs generator the kernel's postinst runs twice (for nothing: the lab makes its own
#: initramfs); it is diverted to a no-op while packages install, which saves ~40 s.
SILENCED_TOOLS: tuple[str, ...] = ("/usr/bin/dracut",)


def essential_hook() -> str:
    """The mmdebstrap essential hook (sh, target in $1): divert the initramfs generators."""
    lines = ["set -e"]
    for tool in SILENCED_TOOLS:
        lines += [
            f'chroot "$1" dpkg-divert --quiet --local --rename --divert {tool}.gpuhil-real --add {tool}',
            f'mkdir -p "$1{tool.rsplit("/", 1)[0]}"',
            f'printf \'#!/bin/sh\\nexit 0\\n\' > "$1{tool}"',
            f'chmod 755 "$1{tool}"',
        ]
    return "\n".join(lines) + "\n"


def customize_hook() -> str:
    """The mmdebstrap customize hook (sh, target in $1): undo the diversions, slim the tree,
    then make the mount points."""
    undivert = "".join(
        f'rm -f "$1{tool}"\nchroot "$1" dpkg-divert --quiet --local --rename --remove {tool}\n'
        for tool in SILENCED_TOOLS)
    trees = " ".join(TRIMMED_MODULE_TREES)
    keep = "|".join(f"{name}_*" for name in KEPT_VULKAN_ICDS)
    keep_libs = "|".join(f"libvulkan_{name}.so*" for name in KEPT_VULKAN_ICDS)
    points = " ".join(f'"$1{p}"' for p in MOUNT_POINTS)
    return f"""set -e
{undivert}for moddir in "$1"/usr/lib/modules/*; do
  rel=${{moddir##*/}}
  for t in {trees}; do rm -rf "$moddir/kernel/$t"; done
  chroot "$1" depmod -a "$rel"
done
rm -f "$1"/boot/initrd.img-*
for f in "$1"/usr/share/vulkan/icd.d/*.json; do
  [ -e "$f" ] || continue
  case ${{f##*/}} in {keep}) ;; *) rm -f "$f" ;; esac
done
for f in "$1"/usr/lib/*-linux-gnu/libvulkan_*.so*; do
  [ -e "$f" ] || continue
  case ${{f##*/}} in {keep_libs}) ;; *) rm -f "$f" ;; esac
done
mkdir -p {points}
"""


def mmdebstrap_argv(target: str, *extra: str, suite: str = SUITE) -> list[str]:
    """The mmdebstrap command that builds the tree of ``suite`` into ``target`` (root mode).

    ``extra`` options (e.g. ``--verbose``) must not change the tree: they are not in the key.
    """
    base, sources, options = suite_sources(suite)
    return [
        "mmdebstrap", *extra, "--variant=apt", "--mode=root",
        *(f"--aptopt={o}" for o in (*APT_OPTIONS, *options)),
        *(f"--dpkgopt={o}" for o in DPKG_OPTIONS),
        "--include=" + ",".join(PACKAGES),
        "--essential-hook=" + essential_hook(),
        "--customize-hook=" + customize_hook(),
        base, target, *(sources or [mirror()]),
    ]
