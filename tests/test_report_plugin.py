"""gpuhil.pytestplugin.results under pytester without a guest: how pass, fail, a skip with its probed reason, a
host-side timeout, a test-code error and an infrastructure error (QEMU that cannot be executed)
appear in allure-pytest's results."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpuhil.pytestplugin.watchdog import DEFAULT_TIMEOUT

pytest_plugins = ["pytester"]

INNER = '''
import time
import pytest
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup
from gpuhil.lab.spec import Accel, GuestSpec


@pytest.fixture
def broken_lab(tmp_path):
    """A lab whose QEMU binary does not exist: Guest.start() raises QemuLaunchError."""
    setup = LabSetup(qemu=str(tmp_path / "no-such-qemu"), kernel=tmp_path / "vmlinux",
                     initramfs=tmp_path / "initramfs.cpio", guest_root=tmp_path, chroot=None,
                     runs_dir=tmp_path / "runs")
    guest = Guest(GuestSpec(accel=Accel.TCG), setup=setup, log_dir=tmp_path / "log")
    guest.start()
    yield guest
    guest.close()


@pytest.mark.severity("critical")
def test_pass():
    assert sum([1, 2]) == 3


def test_fail():
    assert "virtio" == "virgl"


def test_skip_probed():
    present = {"capset.venus": False}
    if not present["capset.venus"]:
        pytest.skip("requires capset.venus (probed: capset.venus=False)")


@pytest.mark.gpuhil_timeout(1)
def test_timeout():
    time.sleep(60)


@pytest.mark.gpuhil_timeout(0, inactivity=1)
def test_inactive():
    time.sleep(60)


def test_error():
    {}["missing"]


def test_infra(broken_lab):
    broken_lab.run(["true"])
'''


@pytest.fixture
def results(pytester: pytest.Pytester) -> dict[str, dict[str, Any]]:
    """Run the inner tests with gpuhil.pytestplugin.results and allure-pytest; the results by test name."""
    pytester.makepyfile(test_inner=INNER)
    run = pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.results", "--alluredir", "allure",
                                        "-p", "no:cacheprovider", "-rA", timeout=120)
    run.assert_outcomes(passed=1, failed=4, skipped=1, errors=1)
    out = pytester.path / "allure"
    by_name = {}
    for path in out.glob("*-result.json"):
        data = json.loads(path.read_text())
        data["labels_by_name"] = {}
        for label in data["labels"]:
            data["labels_by_name"].setdefault(label["name"], []).append(label["value"])
        by_name[data["name"]] = data
    assert len(by_name) == 7, sorted(by_name)
    by_name["__dir__"] = {"path": out, "stdout": run.stdout.str()}
    return by_name


def label(result: dict[str, Any], name: str) -> list[str]:
    return result["labels_by_name"].get(name, [])


def test_each_status_in_allure(results: dict[str, dict[str, Any]]) -> None:
    expected = {  # test: (allure status, gpuhil outcome, category, message start)
        "test_pass": ("passed", "pass", "none", None),
        "test_fail": ("failed", "fail", "product defect", "[fail] AssertionError: assert 'virtio'"),
        "test_skip_probed": ("skipped", "skip", "none",
                             "Skipped: requires capset.venus (probed: capset.venus=False)"),
        "test_timeout": ("broken", "timeout", "product defect",
                         "[timeout] gpuhil.outcomes.TestTimeout: per-test timeout: the test ran "
                         "longer than 1 s"),
        "test_inactive": ("broken", "timeout", "product defect",
                          "[timeout] gpuhil.outcomes.TestTimeout: inactivity timeout: the test "
                          "showed no activity for 1 s"),
        "test_error": ("broken", "error", "test defect", "[error] KeyError: 'missing'"),
        "test_infra": ("broken", "infrastructure", "infrastructure",
                       "[infrastructure] gpuhil.lab.errors.QemuLaunchError: QEMU failed to start: "
                       "cannot execute"),
    }
    for name, (status, outcome, category, message) in expected.items():
        result = results[name]
        assert result["status"] == status, name
        assert label(result, "gpuhil.outcome") == [outcome], name
        assert label(result, "gpuhil.category") == [category], name
        assert outcome in label(result, "tag"), name
        if message is not None:
            assert result["statusDetails"]["message"].startswith(message), (name, result["statusDetails"])
    # the timeout's trace starts with the state dump, then where the test was stopped
    trace = results["test_timeout"]["statusDetails"]["trace"]
    assert trace.startswith("per-test timeout after 1 s")
    assert "no running guest" in trace  # a host-only test has no guest state to dump
    assert "time.sleep(60)" in trace
    # the infrastructure error says which QEMU command could not start
    details = results["test_infra"]["statusDetails"]
    assert "no-such-qemu" in details["message"] and "-kernel" in details["message"]


def test_labels_terminal_environment_and_categories(results: dict[str, dict[str, Any]]) -> None:
    result = results["test_pass"]
    assert label(result, "epic") == ["inner"]
    assert label(result, "feature") == ["inner"]
    assert label(result, "story") == ["test_pass"]
    assert label(result, "severity") == ["critical"]
    assert label(result, "guest_config") == ["no guest"]
    assert len(label(result, "host_gpu")) == 1
    assert label(results["test_infra"], "guest_config") == ["no guest"]  # it never booted
    stdout = results["__dir__"]["stdout"]
    assert "TIMEOUT test_inner.py::test_timeout" in stdout
    assert "INFRASTRUCTURE test_inner.py::test_infra" in stdout
    out: Path = results["__dir__"]["path"]
    props = dict(line.split("=", 1) for line in (out / "environment.properties").read_text().splitlines())
    assert props["gpuhil.version"]
    assert len(props["gpuhil.git"].split("-")[0]) == 40
    assert props["host.kernel"]
    names = [c["name"] for c in json.loads((out / "categories.json").read_text())]
    assert "Infrastructure: the lab could not start" in names
    assert "Test defect: the test code broke" in names


def test_suite_layout_labels(pytester: pytest.Pytester) -> None:
    """Under suites/<area>/<sub>/test_x.py: epic = area, feature = sub, story = the test."""
    pytester.mkdir("suites")
    (pytester.path / "suites" / "blob" / "hostmem").mkdir(parents=True)
    (pytester.path / "suites" / "blob" / "hostmem" / "test_map.py").write_text(
        "def test_map_hostmem():\n    assert True\n")
    (pytester.path / "suites" / "capsets").mkdir()
    (pytester.path / "suites" / "capsets" / "test_venus.py").write_text(
        "def test_venus_version():\n    assert True\n")
    run = pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.results", "--alluredir", "allure",
                                        "-p", "no:cacheprovider", "suites", timeout=60)
    run.assert_outcomes(passed=2)
    found = {}
    for path in (pytester.path / "allure").glob("*-result.json"):
        data = json.loads(path.read_text())
        labels = {l["name"]: l["value"] for l in data["labels"]
                  if l["name"] in ("epic", "feature", "story")}
        found[data["name"]] = labels
    assert found == {
        "test_map_hostmem": {"epic": "blob", "feature": "hostmem", "story": "test_map_hostmem"},
        "test_venus_version": {"epic": "capsets", "feature": "venus", "story": "test_venus_version"},
    }


def test_a_module_that_fails_to_collect_is_an_error_not_a_crash(pytester):
    """A collection error is reported as such (its CollectReport has no user properties); the
    results plugin does not crash on it."""
    pytester.makepyfile(test_broken="def test_x(:\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.results", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    assert "AttributeError" not in result.stdout.str()


PYTEST_TIMEOUT_INNER = '''
import time
import pytest


@pytest.mark.timeout(1)
def test_marked():
    time.sleep(60)


@pytest.fixture
def slow_setup():
    time.sleep(60)


def test_hangs_in_setup(slow_setup):
    pass


def test_quick():
    assert True
'''


def test_pytest_timeout_runs_gpuhil_watchdog(pytester: pytest.Pytester) -> None:
    """``@pytest.mark.timeout`` and ``--timeout`` go through pytest-timeout's timer hooks to
    gpuhil's watchdog: the test ends as a gpuhil timeout with the state dump (host thread stacks
    included), in the call and in setup, and pytest-timeout's own dumpless timer never fires."""
    pytester.makepyfile(test_inner=PYTEST_TIMEOUT_INNER)
    run = pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.results", "-p", "timeout",
                                        "--timeout=2", "--alluredir", "allure",
                                        "-p", "no:cacheprovider", "-rA", timeout=120)
    run.assert_outcomes(passed=1, failed=1, errors=1)
    out = run.stdout.str() + run.stderr.str()
    assert "Timeout +" not in out  # pytest-timeout's banner: its own timer did not fire
    by_name = {}
    for path in (pytester.path / "allure").glob("*-result.json"):
        data = json.loads(path.read_text())
        by_name[data["name"]] = data
    marked = by_name["test_marked"]["statusDetails"]
    assert marked["message"].startswith("[timeout] gpuhil.outcomes.TestTimeout: per-test timeout: "
                                        "the test ran longer than 1 s"), marked
    assert marked["trace"].startswith("per-test timeout after 1 s")
    assert "host thread stacks:" in marked["trace"] and "time.sleep(60)" in marked["trace"]
    setup = by_name["test_hangs_in_setup"]
    labels = {(lab["name"], lab["value"]) for lab in setup["labels"]}
    assert ("gpuhil.outcome", "timeout") in labels, setup["labels"]
    assert "per-test timeout after 2 s" in json.dumps(setup)
    assert by_name["test_quick"]["status"] == "passed"


def test_a_test_with_a_machine_has_a_default_timeout(pytester: pytest.Pytester) -> None:
    """Nothing set: a test that talks to a machine gets the 600 s safety net (one hung device
    cannot block a night), a test without one none; the ini value (0: none) and the option win."""
    pytester.makepyfile(test_it="""
        from gpuhil.pytestplugin.watchdog import DEFAULT_TIMEOUT, timeouts

        def test_defaults(request, pytestconfig):
            expected = {"": DEFAULT_TIMEOUT, "0": 0.0, "45": 45.0}[pytestconfig.getini("gpuhil_timeout")]
            if pytestconfig.getoption("gpuhil_timeout"):
                expected = pytestconfig.getoption("gpuhil_timeout")
            assert timeouts(request.node, has_machine=True) == (expected, 0.0)
            assert timeouts(request.node)[0] == (0.0 if expected == DEFAULT_TIMEOUT else expected)
    """)
    assert DEFAULT_TIMEOUT == 600.0
    base = ("-p", "gpuhil.pytestplugin.results", "-p", "no:cacheprovider")
    pytester.runpytest_inprocess(*base).assert_outcomes(passed=1)
    pytester.runpytest_inprocess(*base, "--gpuhil-timeout=7").assert_outcomes(passed=1)
    for ini in ("0", "45"):
        pytester.makeini(f"[pytest]\ngpuhil_timeout = {ini}\n")
        pytester.runpytest_inprocess(*base).assert_outcomes(passed=1)
