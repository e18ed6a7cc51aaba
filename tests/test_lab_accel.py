"""Accelerator probing: KVM only when it really works."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpuhil.lab import accel
from gpuhil.lab.spec import Accel


@pytest.mark.skipif(not os.path.exists("/sys/module/kvm_pvm"), reason="this host's KVM is not PVM")
def test_pvm_host_gets_tcg_with_the_reason():
    choice = accel.check_kvm()
    assert choice.accel is Accel.TCG
    assert "PVM" in choice.reason and "kvm_pvm" in choice.reason


def test_missing_dev_kvm_means_tcg(tmp_path: Path):
    choice = accel.check_kvm(dev=tmp_path / "kvm")
    assert choice.accel is Accel.TCG and "does not exist" in choice.reason


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="no usable /dev/kvm")
def test_failing_smoke_boot_means_tcg(tmp_path: Path):
    """Even a KVM that answers its API must boot a kernel to be chosen."""
    choice = accel.check_kvm(sysfs_module=tmp_path, smoke=lambda: "emulation failure")
    assert choice.accel is Accel.TCG and "emulation failure" in choice.reason
    assert accel.check_kvm(sysfs_module=tmp_path, smoke=lambda: None).accel is Accel.KVM


def test_probe_result_is_cached_per_host_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(accel, "_memo", {})
    cache = tmp_path / "accel.json"
    first = accel.probe(cache)
    data = json.loads(cache.read_text())
    assert data["accel"] == first.accel.value and data["boot_id"]
    data["reason"] = "from the cache file"
    cache.write_text(json.dumps(data))
    monkeypatch.setattr(accel, "_memo", {})
    assert accel.probe(cache).reason == "from the cache file"
    data["boot_id"] = "another boot"
    cache.write_text(json.dumps(data))
    monkeypatch.setattr(accel, "_memo", {})
    assert accel.probe(cache).reason == first.reason


def test_explicit_choice_is_not_probed():
    assert accel.resolve(Accel.TCG).accel is Accel.TCG
    assert accel.resolve(Accel.KVM).reason == "requested explicitly"


@pytest.mark.lab
@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="no usable /dev/kvm")
def test_kvm_smoke_boot_runs_a_real_kernel(lab_setup):
    """The smoke boot behind the probe: on a PVM host the stock kernel does not get through."""
    from gpuhil.lab.setup import kvm_smoke_test

    problem = kvm_smoke_test(lab_setup, timeout=8)
    if os.path.exists("/sys/module/kvm_pvm"):
        assert problem is not None and ("panic" in problem or "QEMU" in problem)
    else:
        assert problem is None
