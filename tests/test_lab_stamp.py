"""A damaged lab stamp (``assets.json`` empty, garbled, or missing a key) is named and repaired
from the real lab tree, or, when it cannot be, the error says exactly what to delete."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from gpuhil.lab import assets as assets_mod
from gpuhil.lab import bootfiles, rootfs
from gpuhil.lab.assets import ASSETS_FILE, StampError, ensure_assets
from gpuhil.lab.cache import KeyedEntry, input_key

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
                                reason="the lab tree needs root and mmdebstrap (make setup)")


@pytest.fixture(scope="module")
def real():
    """The built lab (as every lab test uses it)."""
    if os.environ.get("GPUHIL_LAB") == "0":
        pytest.skip("GPUHIL_LAB=0: the virtual lab is disabled")
    return ensure_assets()


@pytest.fixture
def cache(tmp_path, real):
    """A cache whose entry points at the real tree (symlinks) with its own stamp files."""
    entry = KeyedEntry(tmp_path / "lab", input_key(rootfs.build_inputs()))
    entry.dir.mkdir(parents=True)
    (entry.dir / "rootfs").symlink_to(real.root)
    (entry.dir / assets_mod.VMLINUX_FILE).symlink_to(real.kernel)
    (entry.dir / real.initramfs.name).symlink_to(real.initramfs)
    shutil.copy(real.root.parent / ASSETS_FILE, entry.dir / ASSETS_FILE)
    entry.mark_complete("test\n")
    return tmp_path, entry


@pytest.mark.parametrize("damage, said", [
    ("", "empty"),
    ("{not json", "not JSON"),
    (json.dumps({"manifest": {}}), "no 'kernel_release' key"),
    (json.dumps({"kernel_release": "7.2"}), "no 'manifest' key"),
    (None, "missing"),
])
def test_a_damaged_stamp_is_named_and_rewritten_from_the_tree(cache, real, damage, said):
    """ensure_assets says which file was damaged and how, rewrites it from the tree, and gives
    the same assets as the intact cache."""
    base, entry = cache
    stamp = entry.dir / ASSETS_FILE
    if damage is None:
        stamp.unlink()
    else:
        stamp.write_text(damage)
    lines: list[str] = []
    repaired = ensure_assets(cache_dir=base, progress=lines.append)
    assert repaired.kernel_release == real.kernel_release
    assert repaired.manifest == real.manifest
    assert any(str(stamp) in line and said in line for line in lines), lines
    assert json.loads(stamp.read_text())["kernel_release"] == real.kernel_release


def test_an_unrepairable_stamp_says_what_to_delete(cache, monkeypatch):
    """When the tree cannot be read either, the error names the damaged file and the directory
    to delete, and no traceback-only JSONDecodeError escapes."""
    base, entry = cache
    (entry.dir / ASSETS_FILE).write_text("{garbled")

    def broken(_root: Path) -> dict[str, str]:
        raise RuntimeError("dpkg database unreadable")

    monkeypatch.setattr(rootfs, "installed_packages", broken)
    with pytest.raises(StampError) as info:
        ensure_assets(cache_dir=base)
    message = str(info.value)
    assert str(entry.dir / ASSETS_FILE) in message and "not JSON" in message
    assert f"delete {entry.dir}" in message and "\n" not in message
