"""The gpuhil plugin booting real lab guests (pytester sessions against the virtual lab): payloads
in the guest, requires/must-have on probed values, reuse, replacement after a crash, and the
``drm_native_context=on`` trap reported while the guest waits instead of hanging."""
from __future__ import annotations

import json
import os
import re

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.lab

LAB = ("-p", "gpuhil.pytestplugin.lab", "--gpuhil-target=lab", "-p", "no:cacheprovider", "-rsf")


@pytest.fixture(autouse=True)
def _lab_enabled():
    if os.environ.get("GPUHIL_LAB") == "0":
        pytest.skip("GPUHIL_LAB=0: the virtual lab is disabled")


def test_guest_lifecycle_and_gating_in_a_real_guest(pytester: pytest.Pytester, lab_setup):
    release = lab_setup.assets.kernel_release  # whatever kernel the lab built
    pytester.makepyfile(test_inner=f"""
        import platform
        import pytest
        from gpuhil.lab.errors import LabError

        PIDS = []

        def test_payload_runs_in_the_guest(guest):
            assert platform.release() != guest.call(platform.release)
            assert guest.call(platform.release) == "{release}"
            PIDS.append(guest.pid)

        @pytest.mark.requires("capset.drm and param.3d_features")
        def test_needs_drm(guest):
            pass

        @pytest.mark.requires("param.cross_device")
        def test_guaranteed_by_must_have(guest):
            pass

        def test_virtgpu_on_the_same_guest(virtgpu):
            assert virtgpu.path == "/dev/dri/renderD128"
            assert virtgpu.machine.pid == PIDS[0]
            assert virtgpu.capabilities.as_dict()["capset.venus"] is True

        @pytest.mark.guest_may_die
        def test_crash_the_guest(guest):
            with pytest.raises(LabError):
                guest.run(["sh", "-c", "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger"],
                          timeout=60)

        def test_fresh_guest_after_the_crash(guest):
            assert guest.pid != PIDS[0]
            assert guest.call(platform.release) == "{release}"
    """)
    result = pytester.runpytest_inprocess(*LAB, "--must-have=param.cross_device")
    result.assert_outcomes(passed=4, skipped=1, failed=1)
    result.stdout.fnmatch_lines_random([
        "SKIPPED*requires capset.drm and param.3d_features: capset.drm=absent, param.3d_features=1 "
        "(capsets: virgl v1, virgl2 v2, venus v0) [[]venus[]]",
        "--must-have param.cross_device does not hold: requires param.cross_device: "
        "param.cross_device=0 [[]venus[]]",
    ])


def test_a_damaged_guest_is_blamed_on_its_test_and_never_reaches_the_next(pytester):
    """A test that fails gets its guest replaced; a test that passes but leaves its guest's
    QEMU dead is an error in its own teardown; the tests after each run on a fresh guest."""
    pytester.makepyfile(test_inner="""
        import os, signal, time

        PIDS = []

        def test_a_failure(guest):
            PIDS.append(guest.pid)
            assert False, "a product bug that may have left the device in a bad state"

        def test_after_the_failure(guest):
            assert guest.pid != PIDS[-1]
            PIDS.append(guest.pid)

        def test_kills_its_qemu(guest):
            os.kill(guest.pid, signal.SIGKILL)
            while guest.alive:
                time.sleep(0.05)

        def test_after_the_kill(guest):
            assert guest.pid != PIDS[-1]
    """)
    result = pytester.runpytest_inprocess(*LAB)
    result.assert_outcomes(passed=3, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_kills_its_qemu*",
        "*the guest of configuration venus was not sound after this test: its QEMU killed by "
        "SIGKILL*"])
    result.stdout.fnmatch_lines(["*guest pool: *2 replaced after a test*"])


def test_drm_native_context_without_host_support_is_detected_early(pytester: pytest.Pytester):
    """This host's virglrenderer lacks DRM native context: QEMU starts, the renderer fails, and
    the guest would wait for capsets forever; the plugin sees QEMU's words while it waits (not
    the device timeout's expiry) and reports a skip.  How fast is measured in bench/."""
    pytester.makepyfile(test_inner="""
        import pytest

        @pytest.mark.guest("drm")
        @pytest.mark.requires("capset.drm")
        def test_drm_capset(guest):
            pass

        @pytest.mark.guest("drm")
        def test_drm_render_node(virtgpu):
            pass
    """)
    # a 900 s device timeout: the early path, not the deadline, must be what reports the gap
    result = pytester.runpytest_inprocess(*LAB, "--gpuhil-device-timeout=900")
    result.assert_outcomes(skipped=2)
    text = result.stdout.str()
    assert "requires capset.drm: capset.drm=absent (capsets: none; device error: the GPU " \
           "(virtio-gpu-gl-pci,blob=on,hostmem=256M,drm_native_context=on) could not initialize" in text
    assert "DRM native context support was not enabled in virglrenderer" in text
    assert re.search(r"seen \d+\.\d s after loading virtio_gpu", text), text
    assert "device timeout expired" not in text


def test_vfio_device_is_bound_then_restored(pytester: pytest.Pytester):
    pytester.makepyfile(test_inner="""
        import pytest
        from gpuhil.devices.vfio_binding import pci_driver

        SEEN = {}

        def test_bound(vfio_device):
            assert vfio_device.machine.call(pci_driver, vfio_device.address) == "vfio-pci"
            assert (vfio_device.vendor, vfio_device.device) == (0x1AF4, 0x1110)
            SEEN["device"] = vfio_device

        @pytest.mark.guest("vfio")
        def test_restored_afterwards(guest):
            device = SEEN["device"]
            assert guest is device.machine
            assert guest.call(pci_driver, device.address) == device.original_driver

        @pytest.mark.guest("vfio")
        @pytest.mark.requires("vfio.dma_buf and udmabuf.size_limit_mb > 0")
        def test_udmabuf_and_dma_buf_probed(udmabuf):
            assert udmabuf.path == "/dev/udmabuf" and udmabuf.size_limit_mb > 0
    """)
    result = pytester.runpytest_inprocess(*LAB)
    result.assert_outcomes(passed=3)


def test_capabilities_only_test_gets_the_guest_evidence(pytester: pytest.Pytester):
    """A test that uses only ``capabilities`` (or only a ``requires`` marker) has the guest in
    play: it gets the kernel-log slice, console, QEMU stderr and QMP events attached."""
    pytester.makepyfile(test_inner="""
        import pytest

        def test_capabilities_only(capabilities):
            assert capabilities.configuration == "venus"

        @pytest.mark.requires("capset.venus")
        def test_requires_only():
            pass
    """)
    result = pytester.runpytest_subprocess(*LAB, "-p", "gpuhil.pytestplugin.results",
                                           "--alluredir", "allure", timeout=600)
    result.assert_outcomes(passed=2)
    attachments = {}
    for path in (pytester.path / "allure").glob("*-result.json"):
        data = json.loads(path.read_text())
        attachments[data["name"]] = {a["name"] for a in data.get("attachments", [])}
    for name, got in sorted(attachments.items()):
        assert {"kernel log (test slice)", "guest console (test slice)", "QEMU stderr (test slice)",
                "QMP events", "guest spec", "QEMU argv"} <= got, (name, sorted(got))
    assert sorted(attachments) == ["test_capabilities_only", "test_requires_only"]
