"""Per-platform expectation files: parsing and validation alone, then through the plugin, where a
matching entry makes a test a strict xfail on its platform only (local target, then the lab's
real version manifest)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gpuhil.gating.expectations import (ExpectationError, Platform, governing_files, load_directory,
                                        load_file, version_at_least, version_matches)
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


@pytest.mark.parametrize("wanted, actual, expected", [
    ("11.1", "1:11.1.3+ds-1", True),
    ("11.1", "1:11.10.0+ds-1", True),
    ("11.1", "12.0.0", True),
    ("11.1", "1:11.0.9+ds-1", False),
    ("7.2", "8.0", True),
    ("1.3", "", False),
])
def test_newer_is_by_component(wanted, actual, expected):
    """A stack is newer by component (11.10 after 11.1, 12.0 after 11.1); unknown is not newer."""
    assert version_at_least(wanted, actual) is expected


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


def test_a_file_applies_to_its_stack_and_newer_ones_triaged_only_on_its_own(tmp_path):
    """Entries load with their source; the file applies to its stack (triaged: strict) and to
    newer ones (untriaged), never to an older or unknown one, so a bug known on one QEMU does
    not hide a failure on an older one and a newer lab does not turn the run red."""
    (loaded,) = load_directory(write(tmp_path, GOOD).parent)
    (entry,) = loaded.entries
    assert entry.covers("suites/x/test_a.py::test_b[HOST3D-4096]")
    assert not entry.covers("suites/x/test_a.py::test_c")
    assert entry.source == "platform.toml: xfail[0]"
    own, newer = (Platform(q, "1.3.0-1", "7.2.13+deb14-amd64") for q in ("1:11.1.3+ds-1", "1:11.2.0"))
    assert loaded.applies_to(own) and loaded.triaged_on(own)
    assert loaded.applies_to(newer) and not loaded.triaged_on(newer)
    assert not loaded.applies_to(Platform("1:11.0.5+ds-1", "1.3.0-1", "7.2.13"))
    assert not loaded.applies_to(Platform("", "", "7.2.13"))


def test_the_newest_file_not_newer_than_the_stack_governs(tmp_path):
    """With files for QEMU 10.0 and 11.1, 11.1.3 and 12.0 take 11.1's, 10.2 takes 10.0's and 9.2
    none, while a kernel-only file applies beside them; an entry whose ``since`` is newer than
    the stack does not hold there."""
    write(tmp_path, '[platform]\nqemu = "10.0"\n[[xfail]]\ntest = "t"\nreason = "r"\n'
                    'seen = "QEMU 10.0.13"\nsince = { qemu = "10.0.7" }\n', "old.toml")
    write(tmp_path, GOOD.replace('kernel = "7.2"\n', ""), "new.toml")
    write(tmp_path, '[platform]\nkernel = "7.2"\n', "kernel.toml")
    files = load_directory(tmp_path)
    by_name = {f.path.name: f for f in files}
    for qemu, name in (("11.1.3", "new.toml"), ("12.0.0", "new.toml"), ("10.2.1", "old.toml"),
                       ("9.2.0", None)):
        chosen = sorted(f.path.name for f in governing_files(files, Platform(qemu, kernel="7.2.1")))
        assert chosen == sorted(["kernel.toml"] + ([name] if name else [])), qemu
    (entry,) = by_name["old.toml"].entries
    assert entry.since == (("qemu", "10.0.7"),)
    assert entry.holds_on(Platform("10.0.13")) and not entry.holds_on(Platform("10.0.2"))


@pytest.mark.parametrize("text, message", [
    ("[[xfail]]\ntest='a'\nreason='b'\nseen='c'\n", "a [platform] table"),
    ("[platform]\nqemu='eleven'\n", "[platform] qemu = 'eleven' is not a version"),
    ("[platform]\nmesa='26'\n", "[platform] 'mesa' is not one of"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nseen='c'\n", "xfail[0]: 'reason' must be"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nreason='b'\nseen='c'\nbug=1\n",
     "xfail[0]: unknown keys ['bug']"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nreason='b'\nseen='c'\nstrict='no'\n",
     "xfail[0]: 'strict' must be true or false, got 'no'"),
    ("[platform]\nqemu='11'\n[[xfail]]\ntest='a'\nreason='b'\nseen='c'\nsince='10'\n",
     "xfail[0]: 'since' must map some of"),
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


def test_entry_for_a_newer_platform_leaves_the_test_failing(pytester):
    """An entry for a kernel newer than this one does not apply, so the failure shows."""
    _project(pytester, '[platform]\nkernel = "99.0"\n', "def test_known_bug(): assert 1 == 2\n")
    pytester.runpytest_inprocess(*LOCAL).assert_outcomes(failed=1)


def test_entry_for_an_older_platform_is_untriaged_and_a_pass_is_not_reproduced(pytester):
    """On a newer stack than its file's a known bug is an xfail that is not strict: a failure
    is xfailed as "not yet triaged", and a pass does not fail the run but is named in the
    summary as "not reproduced on <stack>" (the sign an entry may go)."""
    _project(pytester, '[platform]\nkernel = "2.4"\n', """
def test_known_bug(): assert 1 == 2
def test_known_fixed(): pass
""")
    result = pytester.runpytest_subprocess(*LOCAL, "-p", "gpuhil.pytestplugin.results",
                                           "--alluredir", "allure", timeout=120)
    result.assert_outcomes(xfailed=1, xpassed=1)
    assert result.ret == pytest.ExitCode.OK
    note = f"not reproduced on Linux {os.uname().release}"
    allure = {r["name"]: r for r in map(json.loads, map(Path.read_text,
                                                         (pytester.path / "allure").glob("*-result.json")))}
    assert allure["test_known_fixed"]["status"] == "passed"
    assert {"name": "tag", "value": note} in allure["test_known_fixed"]["labels"]
    assert allure["test_known_fixed"]["statusDetails"]["message"].startswith(note)
    result.stdout.fnmatch_lines([
        f"gpuhil: known bug not reproduced on Linux {os.uname().release}: "
        "test_it.py::test_known_fixed",
        "XFAIL test_it.py::test_known_bug - known bug on Linux *; not yet triaged on this stack)*"])


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
    entry for its QEMU applies there (strict) and one for a newer QEMU does not."""
    manifest = lab_setup.assets.manifest
    qemu = ".".join(str(c) for c in upstream_version(manifest.qemu)[:2])
    _project(pytester, f'[platform]\nqemu = "{qemu}"\n', "def test_known_bug(): assert 0\n")
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider", "-rx")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines([f"*known bug on QEMU {manifest.qemu}, virglrenderer "
                                 f"{manifest.virglrenderer}, Linux {lab_setup.assets.kernel_release}*"])
    _project(pytester, '[platform]\nqemu = "99.0"\n', "def test_known_bug(): assert 0\n")
    pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider").assert_outcomes(failed=1)
