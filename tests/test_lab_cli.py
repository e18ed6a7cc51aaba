"""The gpuhil command line: argument handling, and `gpuhil lab run` end to end."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpuhil import cli
from gpuhil.lab.spec import VENUS_GPU, Iommu, Ivshmem

ROOT = Path(__file__).resolve().parent.parent


def test_guest_options_become_a_spec():
    args = cli.parser().parse_args(["lab", "run", "--vfio", "vtd", "m:f", "1", "x"])
    spec = cli._spec(args)
    assert spec.gpu == VENUS_GPU and spec.iommu is Iommu.INTEL
    assert any(isinstance(d, Ivshmem) for d in spec.devices)
    assert args.target == "m:f" and args.args == ["1", "x"]
    assert cli._spec(cli.parser().parse_args(["lab", "boot", "--gpu", "none"])).gpu is None


def test_arguments_are_python_literals_or_strings():
    assert cli._parse_value("12") == 12 and cli._parse_value("[1, 'a']") == [1, "a"]
    assert cli._parse_value("/dev/dri/renderD128") == "/dev/dri/renderD128"


def test_unknown_gpu_is_refused():
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["lab", "boot", "--gpu", "nvidia"])


@pytest.mark.lab
def test_lab_run_prints_the_guest_result(lab_setup):
    proc = subprocess.run([sys.executable, "-m", "gpuhil.cli", "lab", "run", "--gpu", "none",
                           "tests.lab_payloads:sleep", "0.25"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0.25"
    assert "agent ready after" in proc.stderr


@pytest.mark.lab
def test_lab_run_shows_the_guest_traceback_on_failure(lab_setup):
    proc = subprocess.run([sys.executable, "-m", "gpuhil.cli", "lab", "run", "--gpu", "none",
                           "tests.lab_payloads:failing_ioctl"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "RESOURCE_CREATE_BLOB(blob_mem=HOST3D, size=0): EINVAL" in proc.stderr
    assert "/gpuhil/src/tests/lab_payloads.py" in proc.stderr
