"""The gpuhil pytest plugin through pytester, on the ``local`` target (this machine, which has no
virtio-gpu): options and their errors, ``requires`` parsing and evaluation, skip reasons with
the probed values, ``--must-have`` failures, fixtures that skip with their reason."""
from __future__ import annotations

import json
import os

import pytest

pytest_plugins = ["pytester"]

LOCAL = ("-p", "gpuhil.pytestplugin.lab", "--gpuhil-target=local", "-p", "no:cacheprovider")


@pytest.fixture
def run(pytester: pytest.Pytester):
    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_it=source)
        return pytester.runpytest_inprocess(*LOCAL, "-rsf", *args)
    return run


@pytest.mark.parametrize("args, message", [
    (["--gpuhil-target=/nonexistent/lab.toml"],
     "--gpuhil-target=/nonexistent/lab.toml: no such file"),
    (["--gpuhil-gpu=radeon"], "--gpuhil-gpu='radeon': expected a PCI slot"),
    (["--must-have=capset.venus and"], "--must-have: bad capability expression 'capset.venus and'"),
    (["--must-have=capset.vneus"], "--must-have 'capset.vneus': unknown capability name "
     "'capset.vneus' (did you mean 'capset.venus' or 'raw.capset.venus'?); known names: "
     "configuration, kernel.guest,"),
    (["--gpuhil-boot-timeout=soon"], "--gpuhil-boot-timeout='soon': expected a number of seconds"),
    (["--gpuhil-boot-timeout=0"], "--gpuhil-boot-timeout='0': must be > 0"),
    (["--gpuhil-guest=cray"], "--gpuhil-guest='cray': unknown configuration"),
    (["--gpuhil-max-guests=two"], "--gpuhil-max-guests='two': expected a whole number"),
    (["--gpuhil-max-guests=-1"], "--gpuhil-max-guests='-1': must be >= 0"),
    (["--gpuhil-lease-busy=maybe"], "--gpuhil-lease-busy='maybe': expected one of skip, wait, fail"),
])
def test_bad_options_name_option_and_value(pytester, args, message):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_lab_config_file_problems_are_named(pytester):
    config = pytester.path / "lab.toml"
    config.write_text('qemu = "/usr/bin/qemu-system-x86_64"\nkernel = "nope"\n')
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", f"--gpuhil-target={config}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--gpuhil-target={config}: missing initramfs, guest_root" in result.stderr.str()


def test_ini_keys_are_read(pytester):
    pytester.makeini("[pytest]\ngpuhil_target = local\ngpuhil_must_have =\n    udmabuf\n")
    pytester.makepyfile("""
        import pytest
        @pytest.mark.requires("udmabuf")
        def test_needs_udmabuf(): pass
    """)
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*--must-have udmabuf does not hold: requires udmabuf: "
                                 "udmabuf=False*[local]*"])


def test_requires_skip_names_probed_values(run):
    result = run("""
        import pytest
        @pytest.mark.requires("capset.venus and param.host_visible")
        def test_venus(): pass

        @pytest.mark.requires("kernel.host >= 3.0 and not capset.drm")
        def test_met(): pass
    """)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "SKIPPED*requires capset.venus and param.host_visible: capset.venus=absent, "
        "param.host_visible=absent (capsets: none) [[]local[]]"])


def test_requires_reason_shows_kernel_value(run):
    release = os.uname().release
    result = run("""
        import pytest
        @pytest.mark.requires("kernel.host >= 999.1")
        def test_future(): pass
    """)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*requires kernel.host >= 999.1: kernel.host='{release}'*"])


def test_must_have_turns_a_matching_skip_into_a_failure(run):
    result = run("""
        import pytest
        @pytest.mark.requires("capset.venus")
        def test_venus(): pass

        @pytest.mark.requires("capset.drm")
        def test_drm(): pass
    """, "--must-have=capset.venus and udmabuf")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines([
        "--must-have capset.venus and udmabuf does not hold: "
        "requires capset.venus: capset.venus=absent (capsets: none) [[]local[]]",
        "*FAILED*test_venus*"])


def test_bad_requires_expression_is_a_usage_error(run):
    result = run("""
        import pytest
        @pytest.mark.requires("capset.venus and (param.x")
        def test_x(): pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "test_it.py::test_x: @pytest.mark.requires: bad capability expression " \
           "'capset.venus and (param.x': expected ')' at position 25" in text


def test_requires_with_an_unknown_name_is_a_usage_error(run):
    result = run("""
        import pytest
        @pytest.mark.requires("udmabuf and param.host_visibel")
        def test_x(): pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stderr.str()
    assert "test_it.py::test_x: @pytest.mark.requires('udmabuf and param.host_visibel'): unknown " \
           "capability name 'param.host_visibel' (did you mean 'param.host_visible'" in text
    assert "known names: configuration, kernel.guest, kernel.host, render_node," in text


def test_requires_takes_one_string(run):
    result = run("""
        import pytest
        @pytest.mark.requires(1)
        def test_x(): pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "takes one expression string" in result.stderr.str()


def test_unknown_guest_configuration_in_marker_is_a_usage_error(run):
    result = run("""
        import pytest
        @pytest.mark.guest("warp")
        def test_x(guest): pass
    """)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown guest configuration 'warp'" in result.stderr.str()


def test_local_fixtures_skip_with_their_reason(run):
    result = run("""
        def test_gpu(virtgpu): pass
        def test_udmabuf(udmabuf): pass
        def test_vfio(vfio_device): pass
        def test_host_gpu(host_gpu): pass
    """)
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines_random([
        "*has no virtio-gpu render node*",
        "*/dev/udmabuf is missing [[]local[]]*",
        "*vfio_device needs a lab guest with a vIOMMU*",
        "*no host GPU matches any (pyudev found display-class PCI devices: none)*",
    ])


def test_snapshot_is_stashed_for_the_report(run, pytester):
    pytester.makeconftest("""
        from gpuhil.pytestplugin.keys import SNAPSHOT_KEY, SNAPSHOTS_KEY
        def pytest_sessionfinish(session):
            snapshot = session.config.stash[SNAPSHOT_KEY].as_dict()
            print("SNAPSHOT", snapshot["configuration"], snapshot["kernel.host"],
                  sorted(session.config.stash[SNAPSHOTS_KEY]))
    """)
    result = run("def test_x(guest): assert guest.call(len, 'abc') == 3", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*SNAPSHOT local {os.uname().release} [[]'local'[]]"])


def test_lab_that_cannot_start_is_an_infrastructure_error_once(pytester):
    """A lab config whose QEMU exits at once (``/bin/false``): the guest fixture raises the lab's
    QemuLaunchError (a LabError, for the report to classify) and the second test gets it
    without a new attempt.  (A QEMU that does not exist is refused when the target is parsed.)"""
    for name in ("vmlinuz", "initramfs.cpio"):
        (pytester.path / name).write_bytes(b"x")
    (pytester.path / "root").mkdir()
    (pytester.path / "lab.toml").write_text(
        'qemu = "/bin/false"\nkernel = "vmlinuz"\n'
        'initramfs = "initramfs.cpio"\nguest_root = "root"\n')
    pytester.makeconftest("""
        import pytest
        from gpuhil.lab.errors import QemuLaunchError
        ERRORS = []
        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_makereport(item, call):
            outcome = yield
            if call.excinfo is not None:
                ERRORS.append(call.excinfo.value)
        def pytest_sessionfinish(session):
            assert len(ERRORS) == 2 and ERRORS[0] is ERRORS[1], ERRORS
            assert isinstance(ERRORS[0], QemuLaunchError)
            print("SAME-ERROR-TWICE")
    """)
    pytester.makepyfile("""
        def test_a(guest): pass
        def test_b(guest): pass
    """)
    result = pytester.runpytest_inprocess("-p", "gpuhil.pytestplugin.lab", "-p", "no:cacheprovider", "-s",
                                          f"--gpuhil-target={pytester.path / 'lab.toml'}")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines_random(["*QEMU failed to start: QEMU exited during startup (exit code 1)*",
                                 "*SAME-ERROR-TWICE*"])


def test_xdist_workers_each_have_their_own_session(pytester):
    """Under ``-n 2`` both workers get the options, gate on their own snapshot, and own their slots."""
    pytester.makepyfile("""
        import os
        import pytest
        from gpuhil.pytestplugin.keys import SESSION_KEY

        @pytest.mark.parametrize("n", range(4))
        def test_worker(n, guest, pytestconfig):
            session = pytestconfig.stash[SESSION_KEY]
            assert session.worker == os.environ["PYTEST_XDIST_WORKER"]
            assert session.settings.must_have[0].source == "kernel.host >= 2"

        @pytest.mark.requires("capset.venus")
        def test_gated(): pass
    """)
    result = pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.lab", "--gpuhil-target=local", "-n", "2",
                                           "-p", "no:cacheprovider", "--must-have=kernel.host >= 2",
                                           "-rs")
    result.assert_outcomes(passed=4, skipped=1)
    result.stdout.fnmatch_lines(["*requires capset.venus: capset.venus=absent*"])


def test_every_fixture_with_a_machine_records_it_for_the_results_plugin(run):
    """``guest``, ``capabilities`` alone, a ``requires`` marker alone and a device handle each
    record the test's machine under MACHINE_KEY; a test with no machine in play records none."""
    result = run("""
        import pytest
        from gpuhil.machine import LocalMachine
        from gpuhil.pytestplugin.keys import machine_of

        def test_guest(request, guest):
            assert machine_of(request.node) is guest

        def test_capabilities_only(request, capabilities):
            assert isinstance(machine_of(request.node), LocalMachine)

        @pytest.mark.requires("kernel.host >= 2")
        def test_requires_only(request):
            assert isinstance(machine_of(request.node), LocalMachine)

        def test_host_only(request):
            assert machine_of(request.node) is None
    """)
    result.assert_outcomes(passed=4)


@pytest.mark.skipif(not os.access("/dev/kmsg", os.W_OK), reason="needs to write /dev/kmsg")
def test_capabilities_only_test_gets_the_kernel_log_slice(pytester):
    """With the results plugin and allure, a test that uses only ``capabilities`` on the local
    machine gets its kernel-log slice attached, and nothing QEMU-specific."""
    pytester.makepyfile("""
        def test_capabilities_only(capabilities):
            assert capabilities.configuration == "local"

        def test_host_only():
            pass
    """)
    result = pytester.runpytest_subprocess(*LOCAL, "-p", "gpuhil.pytestplugin.results",
                                           "--alluredir", "allure", timeout=120)
    result.assert_outcomes(passed=2)
    attachments = {}
    for path in (pytester.path / "allure").glob("*-result.json"):
        data = json.loads(path.read_text())
        attachments[data["name"]] = {a["name"] for a in data.get("attachments", [])}
    assert attachments["test_capabilities_only"] == {"kernel log (test slice)"}
    assert attachments["test_host_only"] == set()
