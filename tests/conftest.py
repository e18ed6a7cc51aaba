"""Fixtures that give tests booted lab guests (real QEMU, real Linux 7.2 guest).

``gl_guest``: ``virtio-gpu-gl-pci,blob=on,hostmem=256M,venus=on``, with ``virtio_gpu`` loaded and
``/dev/dri/renderD128`` present.  ``vfio_guest``: VT-d (intel-iommu) + ivshmem-plain (16 MiB memfd)
+ edu.  Both are booted once per session.  When the lab cannot be built or booted the fixtures
FAIL with the reason; only ``GPUHIL_LAB=0`` turns them into skips.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

from gpuhil.bringup import prepare_gpu
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup
from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.lab.spec import GuestSpec
from gpuhil.lab.cache import cache_dir

# pytester gives every inner session its own HOME; they must find this session's lab cache
# rather than build a lab of their own under it.
os.environ.setdefault("GPUHIL_CACHE", str(cache_dir()))

GL_SPEC = CONFIGURATIONS["venus"]
VFIO_SPEC = CONFIGURATIONS["vfio"]


def _lab_disabled() -> None:
    if os.environ.get("GPUHIL_LAB") == "0":
        pytest.skip("GPUHIL_LAB=0: the virtual lab is disabled")


def _progress(line: str) -> None:
    print(f"[gpuhil lab] {line}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def lab_setup() -> LabSetup:
    """The lab's QEMU, kernel and guest root (built into the cache on first use)."""
    _lab_disabled()
    try:
        return LabSetup.default(progress=_progress)
    except Exception as exc:
        pytest.fail(f"the virtual lab could not be built: {type(exc).__name__}: {exc}", pytrace=False)


def boot_guest(spec: GuestSpec, setup: LabSetup, log_dir: Path, name: str,
               boot_timeout: float = 180.0) -> Guest:
    """Boot a guest or FAIL the requesting test with the reason (console tail included)."""
    guest = Guest(spec, setup=setup, boot_timeout=boot_timeout, log_dir=log_dir, name=name)
    try:
        guest.start()
    except Exception as exc:
        pytest.fail(f"the lab guest {name!r} did not boot: {type(exc).__name__}: {exc}",
                    pytrace=False)
    return guest


@pytest.fixture(scope="session")
def gl_guest(lab_setup: LabSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """A guest with a 3-D virtio-gpu (blob, hostmem 256M, venus) and its render node ready."""
    guest = boot_guest(GL_SPEC, lab_setup, tmp_path_factory.mktemp("gl_guest"), "gl")
    try:
        try:
            prepare_gpu(guest, 30.0)
        except Exception as exc:
            pytest.fail(f"gl_guest: {type(exc).__name__}: {exc}", pytrace=False)
        yield guest
    finally:
        guest.close()


@pytest.fixture(scope="session")
def vfio_guest(lab_setup: LabSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """A guest behind an emulated VT-d with an ivshmem-plain (16 MiB memfd) and an edu device."""
    guest = boot_guest(VFIO_SPEC, lab_setup, tmp_path_factory.mktemp("vfio_guest"), "vfio")
    try:
        yield guest
    finally:
        guest.close()


@pytest.fixture(scope="session")
def plain_guest(lab_setup: LabSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """A guest without GPU, shared by the lab's own tests that do not hurt it."""
    guest = boot_guest(GuestSpec(), lab_setup, tmp_path_factory.mktemp("plain_guest"), "plain")
    try:
        yield guest
    finally:
        guest.close()
