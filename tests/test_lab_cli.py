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


def _gpuhil(*argv: str, env: dict[str, str] | None = None,
            wrap: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*wrap, sys.executable, "-m", "gpuhil.cli", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("target, message", [
    ("tests.no_such_module:f", "lab run 'tests.no_such_module:f': module 'tests.no_such_module' "
                               "cannot be imported (ModuleNotFoundError: No module named "
                               "'tests.no_such_module')"),
    ("tests.lab_payloads:no_such_function", "lab run 'tests.lab_payloads:no_such_function': "
                                            "module 'tests.lab_payloads' has no 'no_such_function'"),
    ("os.getpid", "lab run 'os.getpid': expected MODULE:FUNC (e.g. os:getpid)"),
])
def test_lab_run_checks_its_target_before_booting(target, message, tmp_path):
    """A target that cannot be called is a one-line error before any guest is booted."""
    proc = _gpuhil("lab", "run", "--gpu", "none", target, env={"GPUHIL_CACHE": str(tmp_path)})
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"gpuhil: {message}"
    assert not (tmp_path / "run").exists() and not (tmp_path / "lab").exists()  # nothing booted


def test_a_cache_path_that_is_a_file_is_named(tmp_path):
    (tmp_path / "cache").write_text("")
    proc = _gpuhil("lab", "info", env={"GPUHIL_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"gpuhil: the gpuhil cache {tmp_path / 'cache'} ($GPUHIL_CACHE) "
                                   f"is not a directory: remove it or set GPUHIL_CACHE to a "
                                   f"writable directory")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root")
@pytest.mark.parametrize("existing", [False, True], ids=["to-create", "existing"])
def test_a_read_only_cache_is_named(tmp_path, existing):
    """A cache on a read-only file system (mounted in a private mount namespace, so nothing is
    left mounted) is a one-line error naming it, whether it exists or must be made."""
    cache = tmp_path / "ro" / "cache"
    cache.parent.mkdir()
    setup = f"mount -t tmpfs tmpfs {cache.parent} && " + (f"mkdir {cache} && " if existing else "") \
        + f"mount -o remount,ro {cache.parent} && exec \"$@\""
    proc = _gpuhil("lab", "info", env={"GPUHIL_CACHE": str(cache)},
                   wrap=("unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh"))
    assert proc.returncode == 1, proc.stderr
    problem = ("is not writable (read-only file system)" if existing
               else "cannot be created: Read-only file system")
    assert proc.stderr.strip() == (f"gpuhil: the gpuhil cache {cache} ($GPUHIL_CACHE) {problem}; "
                                   f"set GPUHIL_CACHE to a writable directory")
    assert not any(cache.parent.iterdir())  # the tmpfs is gone with the namespace


def test_a_suite_the_mirror_does_not_have_is_refused_before_any_build(tmp_path):
    """``gpuhil lab build --suite`` asks the real Debian mirror for the suite's Release file
    first: a typo is a one-line error naming the suite and URL, and no cache entry is made."""
    proc = _gpuhil("lab", "build", "--suite", "stabel", env={"GPUHIL_CACHE": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("gpuhil: --suite='stabel': the mirror has no "
                                   "http://deb.debian.org/debian/dists/stabel/Release (HTTP 404)")
    assert list(tmp_path.iterdir()) == []
