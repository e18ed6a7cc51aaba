"""gpuhil.pytestplugin.results with real lab guests: a session of demonstration tests (pass, fail, skip with a
probed reason, dmesg-warn, timeout, guest panic, infrastructure error) runs under pytest with
allure-pytest; the tests here check how each appears in the Allure results, then render the HTML
report and read it in headless Chromium.

Two guests boot: one for the module's demonstrations (the timeout, last, kills it) and one that
the panic test crashes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpuhil.report.render import ReportSummary, render

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SELFTEST_REPORTS = PROJECT_ROOT / "reports" / "selftest"

INNER_CONFTEST = '''
import pytest
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup
from gpuhil.lab.spec import Accel, GuestSpec
from gpuhil.pytestplugin.keys import use_machine


def _boot(tmp_path_factory, name):
    guest = Guest(GuestSpec(), log_dir=tmp_path_factory.mktemp(name), name=name,
                  boot_timeout=240)
    guest.start()
    return guest


@pytest.fixture(scope="module")
def demo_guest(tmp_path_factory):
    """One plain guest for the module (the timeout test, last, kills it)."""
    g = _boot(tmp_path_factory, "report-demo")
    yield g
    g.close()


@pytest.fixture
def guest(request, demo_guest):
    """The module's guest, recorded as the test's machine (for its evidence and watchdog)."""
    return use_machine(request, demo_guest)


@pytest.fixture
def doomed_guest(request, tmp_path_factory):
    """A guest of its own for the test that panics it."""
    g = _boot(tmp_path_factory, "report-panic")
    yield use_machine(request, g)
    g.close()


@pytest.fixture
def broken_lab(tmp_path):
    """A lab whose QEMU binary does not exist: Guest.start() raises QemuLaunchError."""
    setup = LabSetup(qemu=str(tmp_path / "no-such-qemu"), kernel=tmp_path / "vmlinux",
                     initramfs=tmp_path / "initramfs.cpio", guest_root=tmp_path, chroot=None,
                     runs_dir=tmp_path / "runs")
    g = Guest(GuestSpec(accel=Accel.TCG), setup=setup, log_dir=tmp_path / "log")
    g.start()
    yield g
    g.close()
'''

INNER_TESTS = '''
import pytest


@pytest.mark.severity("critical")
def test_pass(guest):
    assert guest.run(["cat", "/proc/sys/kernel/ostype"], check=True).stdout == b"Linux\\n"


def test_fail(guest):
    assert guest.run(["uname", "-s"], check=True).stdout == b"Windows\\n"


def test_skip_probed(guest):
    node = "/dev/dri/renderD128"
    if guest.run(["test", "-e", node]).returncode != 0:
        pytest.skip(f"requires a render node (probed: {node} absent, guest spec has no GPU)")


def test_dmesg_warn(guest):
    """The mount fails as it should, but the kernel logs an error line meanwhile."""
    # mount(2), not util-linux's fsconfig(): the legacy call reports bad options via printk
    code = ("import ctypes, sys; libc = ctypes.CDLL(None, use_errno=True); "
            "sys.exit(libc.mount(b'none', b'/tmp', b'tmpfs', 0, b'gpuhil_bogus_option'))")
    assert guest.run(["python3", "-c", code]).returncode != 0


def test_infra(broken_lab):
    broken_lab.run(["true"])


def test_panic(doomed_guest):
    doomed_guest.run(["sh", "-c", "echo c > /proc/sysrq-trigger"])


@pytest.mark.kernel_log_allowed(r"^tmpfs: Unknown parameter 'gpuhil_bogus_option'$")
def test_expected_kernel_error(guest):
    """The same kernel error line, expected by the test: it passes."""
    test_dmesg_warn(guest)


@pytest.mark.gpuhil_timeout(5)
def test_timeout(guest):
    guest.run(["sleep", "600"])
'''


@dataclass
class LabRun:
    """The inner session: its Allure results by test name and its terminal output."""

    results_dir: Path
    results: dict[str, dict[str, Any]]
    stdout: str

    def attachments(self, name: str) -> dict[str, str]:
        """The attachments of test ``name``: attachment name -> content."""
        return {a["name"]: (self.results_dir / a["source"]).read_text(errors="replace")
                for a in self.results[name].get("attachments", [])}

    def labels(self, name: str, label: str) -> list[str]:
        return [l["value"] for l in self.results[name]["labels"] if l["name"] == label]


def run_inner(root: Path, *options: str) -> LabRun:
    """Run the demonstration session in ``root`` with gpuhil.pytestplugin.results and allure-pytest."""
    if os.environ.get("GPUHIL_LAB") == "0":
        pytest.skip("GPUHIL_LAB=0: the virtual lab is disabled")
    (root / "conftest.py").write_text(INNER_CONFTEST)
    (root / "suites" / "lab").mkdir(parents=True)
    (root / "suites" / "lab" / "test_outcomes.py").write_text(INNER_TESTS)
    results_dir = root / "allure-results"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "gpuhil.pytestplugin.results", "--alluredir", str(results_dir),
         "-p", "no:cacheprovider", "-rA", *options, "suites"],
        cwd=root, capture_output=True, text=True, timeout=900)
    results = {}
    for path in results_dir.glob("*-result.json"):
        data = json.loads(path.read_text())
        results[data["name"]] = data
    return LabRun(results_dir, results, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory: pytest.TempPathFactory) -> LabRun:
    run = run_inner(tmp_path_factory.mktemp("report-lab"))
    assert len(run.results) == 8, (sorted(run.results), run.stdout[-5000:])
    return run


@pytest.mark.parametrize("name, status, outcome, message", [
    ("test_pass", "passed", "pass", None),
    ("test_expected_kernel_error", "passed", "pass", None),
    ("test_fail", "failed", "fail", "[fail] AssertionError: assert b'Linux\\n' == b'Windows\\n'"),
    ("test_skip_probed", "skipped", "skip", "Skipped: requires a render node (probed: "
     "/dev/dri/renderD128 absent, guest spec has no GPU)"),
    ("test_dmesg_warn", "failed", "dmesg-warn", "[dmesg-warn] gpuhil.outcomes.KernelLogProblem: "
     "the guest kernel logged warnings during the test:\n<3>tmpfs: Unknown parameter "
     "'gpuhil_bogus_option'"),
    ("test_infra", "broken", "infrastructure", "[infrastructure] gpuhil.lab.errors.QemuLaunchError"),
    ("test_panic", "failed", "crash", "[crash] gpuhil.lab.errors.GuestPanic: guest kernel panic: "
     "Kernel panic - not syncing: sysrq triggered crash"),
    ("test_timeout", "broken", "timeout", "[timeout] gpuhil.outcomes.TestTimeout: per-test "
     "timeout: the test ran longer than 5 s"),
])
def test_status_in_allure(lab_run: LabRun, name: str, status: str, outcome: str,
                          message: str | None) -> None:
    result = lab_run.results[name]
    assert result["status"] == status
    assert lab_run.labels(name, "gpuhil.outcome") == [outcome]
    assert lab_run.labels(name, "epic") == ["lab"]
    assert lab_run.labels(name, "feature") == ["outcomes"]
    assert lab_run.labels(name, "story") == [name]
    if message is not None:
        assert result["statusDetails"]["message"].startswith(message), result["statusDetails"]
    assert f"{outcome.upper()} suites/lab/test_outcomes.py::{name}" in lab_run.stdout or \
        outcome in ("pass", "skip", "fail")


def test_guest_evidence_attached(lab_run: LabRun) -> None:
    files = lab_run.attachments("test_dmesg_warn")
    assert "<3>tmpfs: Unknown parameter 'gpuhil_bogus_option'" in files["kernel log (test slice)"]
    spec = json.loads(files["guest spec"])
    assert spec["gpu"] is None and spec["machine"] == "q35"
    assert files["QEMU argv"].split()[0].endswith("qemu-system-x86_64")
    assert "-nodefaults" in files["QEMU argv"].split()
    assert json.loads(files["QMP events"]) == []
    assert {"guest console (test slice)", "QEMU stderr (test slice)"} <= set(files)
    assert lab_run.labels("test_pass", "severity") == ["critical"]
    assert lab_run.labels("test_pass", "guest_config") == ["no GPU"]
    # the pass test's slice is clean: only kernel-facility warnings count, not the markers
    expected = lab_run.attachments("test_expected_kernel_error")["kernel log (test slice)"]
    assert "<3>tmpfs: Unknown parameter 'gpuhil_bogus_option'" in expected  # still attached
    assert "tmpfs" not in lab_run.attachments("test_pass")["kernel log (test slice)"]


def test_kernel_log_attach_mode_only_attaches(tmp_path: Path) -> None:
    """--gpuhil-kernel-log=attach: the kernel error line is attached, the test still passes."""
    run = run_inner(tmp_path, "--gpuhil-kernel-log=attach", "-k", "dmesg_warn")
    assert run.results["test_dmesg_warn"]["status"] == "passed", run.stdout[-3000:]
    assert run.labels("test_dmesg_warn", "gpuhil.outcome") == ["pass"]
    assert "<3>tmpfs: Unknown parameter 'gpuhil_bogus_option'" in \
        run.attachments("test_dmesg_warn")["kernel log (test slice)"]


def test_timeout_dumped_state_before_killing(lab_run: LabRun) -> None:
    dump = lab_run.attachments("test_timeout")["timeout dump"]
    assert dump.startswith("per-test timeout after 5 s")
    assert 'QMP query-status: {"status": "running", "running": true}' in dump
    assert "sysrq: Show State" in dump and "sysrq: Show Blocked State" in dump
    assert re.search(r"task:sleep\s+state:S", dump), "the hung command's stack is in the dump"
    trace = lab_run.results["test_timeout"]["statusDetails"]["trace"]
    assert trace.startswith("per-test timeout after 5 s")


def test_panic_console_attached(lab_run: LabRun) -> None:
    console = lab_run.attachments("test_panic")["guest console (test slice)"]
    assert "Kernel panic - not syncing: sysrq triggered crash" in console
    assert "kernel log (test slice)" not in lab_run.attachments("test_panic")  # it died


def test_panic_keeps_the_qmp_events_of_the_dead_qemu(lab_run: LabRun) -> None:
    """The QMP events QEMU sent before it went away (the panic's SHUTDOWN) are still attached."""
    events = json.loads(lab_run.attachments("test_panic")["QMP events"])
    assert "SHUTDOWN" in [event.get("event") for event in events], events


def test_environment_has_lab_provenance(lab_run: LabRun) -> None:
    props = dict(line.split("=", 1) for line in
                 (lab_run.results_dir / "environment.properties").read_text().splitlines())
    from gpuhil.lab.assets import ensure_assets

    assets = ensure_assets()
    manifest = assets.manifest
    assert props["lab.qemu"] == manifest.qemu
    assert props["lab.virglrenderer"] == manifest.virglrenderer
    assert props["lab.mesa"] == manifest.mesa
    assert props["guest.kernel"] == assets.kernel_release
    assert props["host.kernel"] == os.uname().release


def _chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    return binary


def _chromium_argv(binary: str, profile: Path) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", "--allow-file-access-from-files",
            "--virtual-time-budget=20000", "--window-size=1400,1000", "--hide-scrollbars"]


def test_rendered_report_in_chromium(lab_run: LabRun, tmp_path: Path) -> None:
    chromium = _chromium()
    report = SELFTEST_REPORTS / "html"
    previous = len(json.loads((report / "history" / "history-trend.json").read_text())) \
        if (report / "history" / "history-trend.json").is_file() else 0
    summary = render(lab_run.results_dir, report)
    assert summary == ReportSummary(total=8, passed=2, failed=3, broken=2, skipped=1, unknown=0)
    trend = json.loads((report / "history" / "history-trend.json").read_text())
    assert len(trend) == previous + 1  # the previous runs' history was carried over

    url = (report / "index.html").as_uri()
    dom = subprocess.run(_chromium_argv(chromium, tmp_path / "profile") + ["--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", dom,
                                                              flags=re.S)))
    assert re.search(r"\b8 test cases\b", text), text[:2000]
    for category in ("Infrastructure: the lab could not start",
                     "Product defect: guest crash (panic, QEMU died)",
                     "Product defect: guest kernel warnings (dmesg-warn)"):
        assert category in text
    # the environment widget shows the stack's provenance line
    assert re.search(r"stack QEMU \S+, virglrenderer \S+, Mesa \S+, guest kernel 7\.", text), text[:3000]

    shot = SELFTEST_REPORTS / "report-overview.png"
    shot.unlink(missing_ok=True)
    subprocess.run(_chromium_argv(chromium, tmp_path / "profile2") + [f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
