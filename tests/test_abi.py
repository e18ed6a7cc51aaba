"""Every kernel size, offset and constant gpuhil was compiled with equals Linux 7.2's uapi.

Each extension exposes ``ABI``: canonical uapi C expressions mapped to the values it was built
with (from the build machine's headers plus _ext/include's supplements).  This test compiles
the same expressions against linux-libc-dev 7.2 and compares them one by one.
"""
from __future__ import annotations

import importlib
import pkgutil
import shutil
import subprocess
from pathlib import Path

import pytest

import gpuhil
from tests.uapi_headers import header_version, newest_uapi_include

HEADERS = [
    "stddef.h", "stdio.h", "fcntl.h", "sys/mman.h", "linux/types.h", "linux/memfd.h",
    "linux/virtio_gpu.h", "linux/virtio_config.h", "linux/virtio_ring.h", "linux/virtio_pci.h", "linux/pci_regs.h",
    "linux/dma-buf.h", "linux/udmabuf.h", "linux/vfio.h", "linux/iommufd.h", "drm/drm.h",
    "drm/virtgpu_drm.h",
]


def extension_abis() -> dict[str, dict[str, int]]:
    """ABI tables of every built gpuhil extension module."""
    tables = {}
    for info in pkgutil.iter_modules(gpuhil.__path__):
        if info.name.startswith("_") and not info.ispkg:
            module = importlib.import_module(f"gpuhil.{info.name}")
            if isinstance(getattr(module, "ABI", None), dict):
                tables[info.name] = module.ABI
    return tables


def compile_values(include: Path, exprs: list[str], workdir: Path) -> dict[str, int]:
    """Evaluates C expressions against the headers under ``include``; returns expr -> value."""
    lines = ["#define _GNU_SOURCE"] + [f"#include <{h}>" for h in HEADERS]
    lines.append("int main(void) {")
    for expr in exprs:
        literal = expr.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'  printf("%s\\t%llu\\n", "{literal}", (unsigned long long)({expr}));')
    lines.append("  return 0;\n}")
    src = workdir / "abi.c"
    src.write_text("\n".join(lines))
    exe = workdir / "abi"
    arch = include / "x86_64-linux-gnu"
    build = subprocess.run(
        ["gcc", "-std=gnu11", "-I", str(include), "-I", str(arch), "-o", str(exe), str(src)],
        capture_output=True, text=True,
    )
    assert build.returncode == 0, f"compiling the ABI probe against {include} failed:\n{build.stderr[-4000:]}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split("\t") for line in out.splitlines())}


@pytest.fixture(scope="module")
def uapi72() -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to compile the ABI probe")
    include = newest_uapi_include()
    assert header_version(include)[:2] >= (7, 2), f"{include} is not linux-libc-dev 7.2"
    return include


def test_extensions_export_abi_tables():
    """The built extensions publish the tables this comparison depends on."""
    tables = extension_abis()
    assert tables, "no gpuhil extension exposes ABI; was _ext/ built?"
    assert all(tables.values()), [name for name, table in tables.items() if not table]


def test_abi_matches_linux_7_2(uapi72: Path, tmp_path: Path):
    """Each size, offset and constant used by the native layer equals its Linux 7.2 value."""
    tables = extension_abis()
    exprs = sorted({expr for table in tables.values() for expr in table})
    truth = compile_values(uapi72, exprs, tmp_path)
    mismatches = [
        f"gpuhil.{name}: {expr} = {value:#x}, Linux 7.2 says {truth[expr]:#x}"
        for name, table in tables.items()
        for expr, value in table.items()
        if value & 0xFFFFFFFFFFFFFFFF != truth[expr]
    ]
    assert not mismatches, "\n".join(mismatches)


def test_probe_sees_the_7_2_additions(uapi72: Path, tmp_path: Path):
    """The reference headers really are the new ones: blob_hints, blob_alignment, DMA_BUF export."""
    values = compile_values(uapi72, [
        "sizeof(struct drm_virtgpu_resource_create_blob)",
        "DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB",
        "sizeof(struct virtio_gpu_config)",
        "VFIO_DEVICE_FEATURE_DMA_BUF",
        "VIRTGPU_PARAM_BLOB_ALIGNMENT",
    ], tmp_path)
    assert values["sizeof(struct drm_virtgpu_resource_create_blob)"] == 56
    assert values["DRM_IOCTL_VIRTGPU_RESOURCE_CREATE_BLOB"] == 0xC038644A
    assert values["sizeof(struct virtio_gpu_config)"] == 20
    assert values["VFIO_DEVICE_FEATURE_DMA_BUF"] == 11
    assert values["VIRTGPU_PARAM_BLOB_ALIGNMENT"] == 9
