"""Per-platform expectation files: parsing and validation alone, then through the plugin, where a
matching entry makes a test a strict xfail on its platform only (local target, then the lab's
real version manifest)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuhil.gating.expectations import ExpectationError, Platform, load_directory, load_file, version_matches
from gpuhil.lab.assets import upstream_version

pytest_plugins = ["pytester"]

LOCAL = ("-p", "gpuhil.pytestplugin.lab", "--gpuhil-target=local", "-p", "no:cacheprovider", "-rxXf")
HOST_KERNEL = ".".join(os.uname().release.split(".")[:2])


@pytest.mark.parametrize("wanted, actual, expected", [
    ("11.1", "1:11.1.3+ds-1", True),
    ("11.1", "1:11.10.0+ds-1", False),
    ("11", "1:11.1.3+ds-1", True),
    ("7.2", "7.2.13+deb14-amd64", True),
    ("7.2.13", "7.2.1", False),
    ("1.3", "", False),
])
def test_version_prefix_matching_is_by_component(wanted, actual, expected):
    """Versions match component by component, so 11.1 covers 11.1.3 but not 11.10."""
    assert version_matches(wanted, actual) is expected


def write(directory: Path, text: str, name: str = "platform.toml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


GOOD = """
[platform]
qemu = "11.1"
kernel = "7.2"

[[xfail]]
test = "suites/x/test_a.py::test_b[*]"
reason = "the device answers OK"
seen = "QEMU 11.1.3"
"""


def test_a_file_loads_and_applies_to_its_platform_only(tmp_path):
    """Entries load with their source, and the file applies only when every platform key
    matches, so a bug known on one QEMU does not hide a failure on another."""
    (loaded,) = load_directory(write(tmp_path, GOOD).parent)
    (entry,) = loaded.entries
    assert entry.covers("suites/x/test_a.py::test_b[HOST3D-4096]")
    assert not entry.covers("suites/x/test_a.py::test_c")
    assert entry.source == "platform.toml: xfail[0]"
    assert loaded.applies_to(Platform("1:11.1.3+ds-1", "1.3.0-1", "7.2.13+deb14-amd64"))
    assert not loaded.applies_to(Platform("1:11.2.0+ds-1", "1.3.0-1", "7.2.13+deb14-amd64"))
    assert not loaded.applies_to(Platform("", "", "7.2.13"))


@pytest.mark.parametrize("text, message", [
    ("[[xfail]]\ntest='a'\nreason='b'\nseen='c'\n", "a [platform] table"),
    ("[platform]\nqemu='eleven'\n", "[platform] qemu = 'eleven' is not a version"),
    ("[platform]\nmesa='26'\n", "[platform] 'mesa' is not one of"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nseen='c'\n", "xfail[0]: 'reason' must be"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nreason='b'\nseen='c'\nbug=1\n",
     "xfail[0]: unknown keys ['bug']"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nreason='b'\nseen='c'\nstrict='no'\n",
     "xfail[0]: 'strict' must be true or false, got 'no'"),
    ("[platform\n", "platform.toml"),
])
def test_bad_files_name_the_file_and_entry(tmp_path, text, message):
    """A broken expectations file is refused with the file and the entry named."""
    with pytest.raises(ExpectationError) as info:
        load_file(write(tmp_path, text))
    assert message in str(info.value)
    assert "platform.toml" in str(info.value)


def _project(pytester: pytest.Pytester, platform: str, body: str) -> None:
    pytester.makepyfile(test_it=body)
    write(pytester.path / "suites" / "expectations", platform + """
[[xfail]]
test = "test_it.py::test_known*"
reason = "answers ERR_UNSPEC instead of OK"
seen = "here"
""")


def test_matching_entry_turns_a_failure_into_xfail_and_a_pass_into_strict_xpass(pytester):
    """On its platform a known bug is an xfail with the file's reason, and a fixed bug fails the
    run (strict XPASS) so the stale entry is noticed; unlisted tests are untouched."""
    _project(pytester, f'[platform]\nkernel = "{HOST_KERNEL}"\n', """
def test_known_bug(): assert 1 == 2
def test_known_fixed(): pass
def test_other(): pass
""")
    result = pytester.runpytest_inprocess(*LOCAL)
    result.assert_outcomes(xfailed=1, failed=1, passed=1)
    result.stdout.fnmatch_lines([
        "XFAIL test_it.py::test_known_bug - known bug on Linux *platform.toml: xfail?0?*"
        "answers ERR_UNSPEC instead of OK",
        "*test_known_fixed*XPASS(strict)*"])


def test_intermittent_entry_lets_the_test_pass(pytester):
    """An entry with ``strict = false`` (a race that does not show every run) makes a failure an
    xfail and lets a pass through as XPASS without failing the run."""
    pytester.makepyfile(test_it="def test_known_race(): pass\ndef test_known_hang(): assert 0\n")
    write(pytester.path / "suites" / "expectations", f"""[platform]
kernel = "{HOST_KERNEL}"
[[xfail]]
test = "test_it.py::test_known_*"
reason = "the reset sometimes hangs"
seen = "here"
strict = false
""")
    result = pytester.runpytest_inprocess(*LOCAL)
    result.assert_outcomes(xpassed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["XFAIL test_it.py::test_known_hang - known intermittent bug on *"])


def test_entry_for_another_platform_leaves_the_test_failing(pytester):
    """An entry for another kernel does not apply, so the failure shows as a failure."""
    _project(pytester, '[platform]\nkernel = "2.4"\n', "def test_known_bug(): assert 1 == 2\n")
    pytester.runpytest_inprocess(*LOCAL).assert_outcomes(failed=1)


def test_stale_entry_warns_and_bad_file_is_a_usage_error(pytester):
    """An entry that matches no test of its collected module warns, and an unreadable file
    stops the run before any test with the file named."""
    _project(pytester, f'[platform]\nkernel = "{HOST_KERNEL}"\n', "def test_renamed(): pass\n")
    result = pytester.runpytest_inprocess(*LOCAL)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*platform.toml: xfail?0?: 'test_it.py::test_known*' matches no "
                                 "collected test*"])
    write(pytester.path / "suites" / "expectations", "[platform]\nqemu = 'x'\n")
    result = pytester.runpytest_inprocess(*LOCAL)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "platform.toml: [platform] qemu = 'x' is not a version" in result.stderr.str()


@pytest.mark.lab
def test_lab_platform_comes_from_the_built_stack(pytester, lab_setup):
    """On the virtual lab the platform is the tree's QEMU, virglrenderer and guest kernel, so an
    entry for QEMU 11.1 applies there and one for QEMU 10.0 does not."""
    manifest = lab_setup.assets.manifest
    qemu = ".".join(str(c) for c in upstream_version(manifest.qemu)[:2])
    _project(pytester, f'[platform]\nqemu = "{qemu}"\n', "def test_known_bug(): assert 0\n")
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider", "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines([f"*known bug on QEMU {manifest.qemu}, virglrenderer "
                                 f"{manifest.virglrenderer}, Linux {lab_setup.assets.kernel_release}*"])
    _project(pytester, '[platform]\nqemu = "10.0"\n', "def test_known_bug(): assert 0\n")
    pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider").assert_outcomes(failed=1)
