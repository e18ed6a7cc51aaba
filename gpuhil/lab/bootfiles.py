"""The guest's boot files, made from the lab tree: an uncompressed vmlinux (QEMU boots it through
its PVH entry, skipping the decompressor) and a small virtme-ng style initramfs (static busybox,
the 9p/overlay modules in load order, and gpuhil's /init)."""
from __future__ import annotations

import gzip
import lzma
import struct
import subprocess
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from gpuhil.lab.cache import AssetError

#: Bump when the initramfs layout changes.
VERSION = 1

INIT_SCRIPT = Path(__file__).parent / "initramfs" / "init"

#: Modules the initramfs loads, before resolving dependencies (names as modprobe spells them).
INITRAMFS_MODULES: tuple[str, ...] = ("virtio-iommu", "netfs", "9pnet", "9pnet_virtio", "9p",
                                      "overlay")
#: Modules whose absence is fine (virtio-iommu is only needed by the virtio-iommu variant).
OPTIONAL_MODULES: frozenset[str] = frozenset({"virtio_iommu"})

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ELF_MAGIC = b"\x7fELF"
_MODULE_SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")


class BootFilesError(AssetError):
    """The kernel or the initramfs could not be made from the tree."""


# ---------------------------------------------------------------------------------------------
# Modules


def module_name(path: str) -> str:
    """'kernel/net/9p/9pnet_virtio.ko.xz' -> '9pnet_virtio' (dashes folded to underscores)."""
    base = path.rsplit("/", 1)[-1]
    for suffix in _MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep -> {module path: [dependency paths, as listed]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, _, rest = line.partition(":")
        deps[path.strip()] = rest.split()
    return deps


def resolve_load_order(deps: Mapping[str, Sequence[str]], wanted: Iterable[str], *,
                       builtin: Iterable[str] = (),
                       optional: Iterable[str] = frozenset()) -> list[str]:
    """Module paths to insmod, dependencies first, each once, for the ``wanted`` names.

    Built-in modules are skipped; a wanted module that is neither present nor built in is an
    error unless it is ``optional``.
    """
    by_name = {module_name(p): p for p in deps}
    builtin_names = {module_name(p) for p in builtin}
    optional_names = {n.replace("-", "_") for n in optional}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(path: str) -> None:
        if path in order:
            return
        if path in visiting:
            raise BootFilesError(f"dependency cycle through {path}")
        visiting.add(path)
        for dep in deps.get(path, ()):
            if dep not in deps and module_name(dep) not in builtin_names:
                raise BootFilesError(f"{path} depends on {dep}, which modules.dep does not list")
            if dep in deps:
                visit(dep)
        visiting.discard(path)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key in by_name:
            visit(by_name[key])
        elif key in builtin_names or key in optional_names:
            continue
        else:
            raise BootFilesError(f"kernel module {name} is neither in modules.dep nor built in")
    return order


def read_module(path: Path) -> bytes:
    """A module file's ELF bytes, decompressed if it is .ko.xz, .ko.zst or .ko.gz."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return _zstd_decompress(data)
    return data


# ---------------------------------------------------------------------------------------------
# vmlinux


def _zstd_decompress(frame: bytes) -> bytes:
    proc = subprocess.run(["zstd", "-d", "-c", "-q", "--memory=2048MB"], input=frame,
                          capture_output=True)
    if proc.returncode != 0:
        raise BootFilesError(f"zstd -d failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def zstd_frame_length(data: bytes, start: int) -> int:
    """Length of the zstd frame at ``data[start:]`` (header, blocks, checksum), from its headers."""
    def need(end: int) -> None:
        if end > len(data):
            raise BootFilesError(f"zstd frame at {start:#x} runs past the end of the data")

    if data[start:start + 4] != ZSTD_MAGIC:
        raise BootFilesError(f"no zstd magic at {start:#x}")
    pos = start + 4
    need(pos + 1)
    fhd = data[pos]
    pos += 1
    if fhd & 0x08:
        raise BootFilesError(f"zstd frame at {start:#x} has the reserved header bit set")
    single_segment = (fhd >> 5) & 1
    pos += 0 if single_segment else 1                       # window descriptor
    pos += (0, 1, 2, 4)[fhd & 3]                            # dictionary id
    pos += ((1 if single_segment else 0), 2, 4, 8)[fhd >> 6]  # frame content size
    while True:
        need(pos + 3)
        header = int.from_bytes(data[pos:pos + 3], "little")
        pos += 3
        block_type = (header >> 1) & 3
        if block_type == 3:
            raise BootFilesError(f"zstd frame at {start:#x} has a reserved block type")
        pos += 1 if block_type == 1 else header >> 3       # RLE blocks hold one byte
        if header & 1:
            break
    pos += 4 if fhd & 0x04 else 0                           # content checksum
    need(pos)
    return pos - start


def _bzimage_payload_offset(image: bytes) -> int | None:
    """Offset of the compressed payload per the x86 boot protocol header, if this is a bzImage."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    setup_sects = image[0x1F1] or 4
    payload_offset = struct.unpack_from("<I", image, 0x248)[0]
    return (setup_sects + 1) * 512 + payload_offset


def extract_vmlinux(image: bytes) -> bytes:
    """The uncompressed ELF kernel inside a zstd-compressed bzImage (or any blob holding one)."""
    candidates: list[int] = []
    hinted = _bzimage_payload_offset(image)
    if hinted is not None and image[hinted:hinted + 4] == ZSTD_MAGIC:
        candidates.append(hinted)
    pos = image.find(ZSTD_MAGIC)
    while pos != -1:
        if pos not in candidates:
            candidates.append(pos)
        pos = image.find(ZSTD_MAGIC, pos + 1)
    if not candidates:
        raise BootFilesError("no zstd-compressed payload found in the kernel image")
    errors = []
    for start in candidates:
        try:
            out = _zstd_decompress(image[start:start + zstd_frame_length(image, start)])
        except BootFilesError as e:
            errors.append(f"{start:#x}: {e}")
            continue
        if out[:4] == ELF_MAGIC:
            return out
        errors.append(f"{start:#x}: decompressed data is not an ELF file")
    raise BootFilesError("no zstd frame in the kernel image decompresses to an ELF kernel: "
                         + "; ".join(errors))


# ---------------------------------------------------------------------------------------------
# initramfs (newc cpio)


class NewcWriter:
    """Accumulates an uncompressed newc cpio archive (what the kernel unpacks as initramfs)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
               nlink: int = 1) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._ino += 1
        self._chunks += [header, encoded, b"\0" * (-(len(header) + len(encoded)) % 4),
                         data, b"\0" * (-len(data) % 4)]

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._entry(name, 0o040000 | perm, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, 0o020000 | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0, nlink=1)
        data = b"".join(self._chunks)
        return data + b"\0" * (-len(data) % 512)


def busybox_path(root: Path) -> Path:
    for candidate in ("usr/bin/busybox", "bin/busybox"):
        path = root / candidate
        if path.is_file() and not path.is_symlink():
            return path
    raise BootFilesError(f"no static busybox in {root} (is busybox-static installed?)")


def initramfs_modules(root: Path, release: str) -> list[str]:
    """The module paths (relative to /usr/lib/modules/<release>) the initramfs loads, in order."""
    moddir = root / "usr/lib/modules" / release
    try:
        deps = parse_modules_dep((moddir / "modules.dep").read_text())
    except FileNotFoundError:
        raise BootFilesError(f"{moddir}/modules.dep is missing (depmod not run?)") from None
    builtin_file = moddir / "modules.builtin"
    builtin = builtin_file.read_text().split() if builtin_file.exists() else []
    return resolve_load_order(deps, INITRAMFS_MODULES, builtin=builtin, optional=OPTIONAL_MODULES)


def build_initramfs(root: Path, release: str, init_script: bytes) -> bytes:
    """The initramfs as newc cpio bytes (busybox, /modules/<name>.ko + /modules/order, /init)."""
    archive = NewcWriter()
    for d in ("bin", "dev", "proc", "sys", "modules"):
        archive.directory(d)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox_path(root).read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    names = []
    for rel in initramfs_modules(root, release):
        name = module_name(rel)
        archive.file(f"modules/{name}.ko", read_module(root / "usr/lib/modules" / release / rel))
        names.append(name)
    archive.file("modules/order", "".join(f"{n}\n" for n in names).encode())
    archive.file("init", init_script, 0o755)
    return archive.finish()
