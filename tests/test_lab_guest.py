"""The lab runtime against real QEMU and a real guest: boot, teardown, failures, the agent."""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gpuhil.errors import IoctlError
from gpuhil.lab.errors import BootTimeout, GuestDied, GuestPanic, QemuLaunchError
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup, sweep_stale_runs
from gpuhil.lab.spec import GuestSpec
from gpuhil.outcomes import scan_kernel_log
from gpuhil.pids import pid_alive
from tests import lab_payloads
from tests.conftest import boot_guest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(600)]


def socket_fds() -> set[int]:
    """This process's open socket file descriptors."""
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if stat.S_ISSOCK(os.stat(f"/proc/self/fd/{name}").st_mode):
                fds.add(int(name))
        except FileNotFoundError:
            continue
    return fds


def assert_gone(guest: Guest, pid: int, run_dir: Path, sockets_before: set[int]) -> None:
    """Nothing of the guest is left: no QEMU process, no run directory, no socket of ours."""
    assert not pid_alive(pid), f"QEMU pid {pid} still exists"
    assert not run_dir.exists(), f"run directory {run_dir} was left behind"
    assert socket_fds() <= sockets_before, "sockets were left open"


def test_boot_then_teardown_leaves_nothing(lab_setup: LabSetup, tmp_path: Path):
    """A guest boots until its agent answers, runs a payload, and closing it leaves nothing."""
    before = socket_fds()
    guest = boot_guest(GuestSpec(), lab_setup, tmp_path, "boot")
    pid, run_dir = guest.pid, guest.run_dir
    assert pid is not None and pid_alive(pid) and run_dir is not None and run_dir.is_dir()
    manifest = lab_setup.assets.manifest  # the versions the lab built, whatever sid had
    assert guest.info is not None and guest.info.kernel == lab_setup.assets.kernel_release
    assert manifest.python.split(".")[:2] == guest.info.python.split(".")[:2]
    assert guest.status() == "running"
    assert os.uname().release != guest.call("os:uname").release
    guest.close()
    assert_gone(guest, pid, run_dir, before)
    assert "egl" not in (tmp_path / "qemu.log").read_text()  # no GPU: no display backend noise
    guest.close()  # harmless twice


def test_agent_exception_keeps_gpuhil_fields_and_guest_traceback(plain_guest: Guest):
    with pytest.raises(IoctlError) as info:
        plain_guest.call(lab_payloads.failing_ioctl)
    exc = info.value
    assert (exc.op, exc.errno, exc.args_) == ("RESOURCE_CREATE_BLOB", errno.EINVAL,
                                               {"blob_mem": "HOST3D", "size": 0})
    assert "/gpuhil/src/tests/lab_payloads.py" in exc.guest_traceback
    assert "in failing_ioctl" in exc.guest_traceback


def test_payload_modules_can_import_pytest_and_the_test_package(plain_guest: Guest):
    """Test modules are payload modules: the guest imports pytest and tests.* from the live tree."""
    version = plain_guest.call(lab_payloads.pytest_version)
    assert version and version[0].isdigit()
    assert plain_guest.call(module_name_in_guest) == __name__


def module_name_in_guest() -> str:
    """Runs in the guest: the name this module is imported under there."""
    return __name__


def test_setup_command_returns_rc_and_output(plain_guest: Guest):
    result = plain_guest.run(["sh", "-c", "cat /proc/cmdline; exit 3"])
    assert result.returncode == 3 and b"console=ttyS0" in result.stdout


def test_kmsg_mark_then_read_returns_only_later_lines(plain_guest: Guest):
    plain_guest.run(["sh", "-c", "echo gpuhil-before > /dev/kmsg"], check=True)
    marker = plain_guest.kmsg_mark("test")
    plain_guest.run(["sh", "-c", "echo gpuhil-after > /dev/kmsg"], check=True)
    lines = plain_guest.kernel_log(marker)
    assert any("gpuhil-after" in line for line in lines)
    assert not any("gpuhil-before" in line for line in lines)
    assert any(marker in line for line in plain_guest.kernel_log())


def test_a_burst_of_kmsg_marks_is_all_in_the_log(plain_guest: Guest):
    """Forty markers written back to back all reach the kernel log, so per-test log slices
    never lose their start or end marker to /dev/kmsg's write rate limit."""
    marks = [plain_guest.kmsg_mark(f"burst {i}") for i in range(40)]
    lines = plain_guest.kernel_log(marks[0])
    missing = [m for m in marks[1:] if not any(m in line for line in lines)]
    assert not missing, f"{len(missing)} of 39 markers missing, first {missing[0]!r}"


def test_kmsg_records_since_a_sequence_number(plain_guest: Guest):
    """records_since(last_seq()) returns exactly what was logged afterwards, so payloads can
    slice the kernel log without writing a marker."""
    after, with_previous = plain_guest.call(lab_payloads.kmsg_since_last_seq)
    assert after[0] == "gpuhil-after-seq" and "gpuhil-before-seq" not in after
    assert with_previous[:2] == ["gpuhil-before-seq", "gpuhil-after-seq"]


def test_split_pr_cont_tails_are_flagged_and_not_warnings(plain_guest: Guest):
    """A pr_cont tail the kernel could not join to its head comes with the ``c`` flag at the
    default level 4; the kernel-log verdict must not call it a warning (a CI false alarm)."""
    records = plain_guest.call(lab_payloads.split_pr_cont_records)
    tails = [r for r in records if r.continuation]
    assert tails and all(r.level == 4 for r in tails), [r.line() for r in records][:20]
    assert scan_kernel_log(records).clean, scan_kernel_log(records).summary()


def test_qmp_reports_running_and_events(plain_guest: Guest):
    assert plain_guest.qmp("query-status")["running"] is True
    assert plain_guest.qmp("stop") == {}
    assert plain_guest.status() == "paused"
    plain_guest.qmp("cont")
    assert plain_guest.status() == "running"
    names = [event["event"] for event in plain_guest.process.qmp.events()]
    assert "STOP" in names and "RESUME" in names


def test_panic_in_the_guest_is_reported_with_console_tail(lab_setup: LabSetup, tmp_path: Path):
    before = socket_fds()
    guest = boot_guest(GuestSpec(), lab_setup, tmp_path, "panic")
    pid, run_dir = guest.pid, guest.run_dir
    with pytest.raises(GuestPanic) as info:
        guest.run(["sh", "-c", "echo c > /proc/sysrq-trigger"])
    assert "sysrq triggered crash" in info.value.panic_line
    assert "Kernel panic - not syncing" in info.value.console_tail
    assert "guest kernel panic" in str(info.value)
    assert_gone(guest, pid, run_dir, before)


def test_panic_during_boot(lab_setup: LabSetup, tmp_path: Path):
    """No usable init: the kernel panics while booting and the boot reports that panic."""
    guest = Guest(GuestSpec(kernel_args=("rdinit=/nonexistent",)), setup=lab_setup,
                  boot_timeout=120, log_dir=tmp_path, name="bootpanic")
    with pytest.raises(GuestPanic) as info:
        guest.start()
    assert "Kernel panic" in info.value.console_tail
    assert guest.process.poll() is not None


def test_boot_timeout_kills_qemu(lab_setup: LabSetup, tmp_path: Path):
    before = socket_fds()
    guest = Guest(GuestSpec(), setup=lab_setup, boot_timeout=1.0, log_dir=tmp_path, name="slow")
    with pytest.raises(BootTimeout, match="did not answer within 1 s"):
        guest.start()
    assert_gone(guest, guest.process.pid or 0, guest.run_dir, before)
    assert guest.process.returncode is not None


def test_qemu_startup_error_carries_exit_code_argv_and_stderr(lab_setup: LabSetup, tmp_path: Path):
    before = socket_fds()
    guest = Guest(GuestSpec(extra_args=("-device", "gpuhil-no-such-device")), setup=lab_setup,
                  log_dir=tmp_path, name="bad")
    with pytest.raises(QemuLaunchError) as info:
        guest.start()
    exc = info.value
    assert exc.returncode == 1
    assert "gpuhil-no-such-device" in exc.stderr and "gpuhil-no-such-device" in exc.argv
    assert "exit code 1" in str(exc) and "qemu-system-x86_64" in str(exc)
    assert not guest.run_dir.exists() and socket_fds() <= before


def test_qemu_killed_during_an_agent_call(lab_setup: LabSetup, tmp_path: Path):
    before = socket_fds()
    guest = boot_guest(GuestSpec(), lab_setup, tmp_path, "victim")
    pid, run_dir = guest.pid, guest.run_dir
    killer = threading.Timer(1.0, os.kill, (pid, 9))
    killer.start()
    with pytest.raises(GuestDied) as info:
        guest.call(lab_payloads.sleep, 60)
    killer.join()
    assert "killed by SIGKILL" in str(info.value) and "during an agent request" in str(info.value)
    assert_gone(guest, pid, run_dir, before)
    with pytest.raises(GuestDied):
        guest.call(lab_payloads.boot_id)


def test_two_guests_at_once_do_not_collide(lab_setup: LabSetup, tmp_path: Path):
    before = socket_fds()
    guests = [Guest(GuestSpec(), setup=lab_setup, boot_timeout=180, log_dir=tmp_path / name,
                    name=name) for name in ("one", "two")]
    try:
        for guest in guests:
            guest.launch()
        for guest in guests:
            guest.wait_ready()
        assert guests[0].pid != guests[1].pid and guests[0].run_dir != guests[1].run_dir
        ids = [g.call(lab_payloads.boot_id) for g in guests]
        assert ids[0] != ids[1]
        for guest, boot in zip(guests, ids):
            guest.call(lab_payloads.write_run_file, "whoami", boot)
            assert (guest.run_dir / "whoami").read_text() == boot
    finally:
        pids = [(g.pid, g.run_dir) for g in guests]
        for guest in guests:
            guest.close()
    for guest, (pid, run_dir) in zip(guests, pids):
        assert_gone(guest, pid or 0, run_dir, before)


_LAUNCHER = """
import signal, sys, time
# Ctrl-C as in an interactive shell, whatever signal state the test runner passed on
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
from gpuhil.lab.guest import Guest
from gpuhil.lab.setup import LabSetup, sweep_stale_runs
from gpuhil.lab.spec import GuestSpec
from gpuhil.outcomes import scan_kernel_log
guest = Guest(GuestSpec(), setup=LabSetup.default(), boot_timeout=300, name="interrupted")
guest.launch()
print(guest.pid, guest.run_dir, flush=True)
guest.wait_ready()
print("ready", flush=True)
time.sleep(300)
"""


def _launch_in_subprocess(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    script = tmp_path / "launcher.py"
    script.write_text(_LAUNCHER)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.stdout is not None
    pid_text, run_dir = proc.stdout.readline().split()
    return proc, int(pid_text), Path(run_dir)


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_ctrl_c_during_boot_leaves_nothing(lab_setup: LabSetup, tmp_path: Path):
    proc, pid, run_dir = _launch_in_subprocess(tmp_path)
    assert pid_alive(pid) and run_dir.is_dir()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    try:
        returncode = proc.wait(60)
    except subprocess.TimeoutExpired:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        stack = Path(f"/proc/{proc.pid}/wchan").read_text()
        proc.kill()
        pytest.fail(f"the launcher ignored Ctrl-C for 60 s (wchan {stack}):\n"
                    + "\n".join(l for l in status.splitlines() if l.startswith(("Sig", "Shd", "State"))))
    assert returncode != 0
    assert _wait_gone(pid), f"QEMU pid {pid} survived Ctrl-C"
    assert not run_dir.exists()


def test_killed_host_process_takes_qemu_along(lab_setup: LabSetup, tmp_path: Path):
    """A test process killed outright (no cleanup runs): QEMU dies with it, and the next guest
    launch sweeps its run directory."""
    proc, pid, run_dir = _launch_in_subprocess(tmp_path)
    proc.kill()
    proc.wait(10)
    assert _wait_gone(pid), f"QEMU pid {pid} outlived its killed owner"
    assert run_dir.is_dir()
    sweep_stale_runs(run_dir.parent)
    assert not run_dir.exists()


def test_poweroff_after_virgl_use_is_detected_and_qemu_reaped(lab_setup: LabSetup, tmp_path: Path):
    """LAB.md §8: once virtio_gpu initialised virgl, QEMU hangs after the guest powers off; the
    guest must still be reported dead and QEMU killed by its PID."""
    from tests.conftest import GL_SPEC

    before = socket_fds()
    guest = boot_guest(GL_SPEC, lab_setup, tmp_path, "hang")
    pid, run_dir = guest.pid, guest.run_dir
    guest.run(["modprobe", "virtio_gpu"], check=True)
    with pytest.raises(GuestDied, match="the guest shut down"):
        guest.run(["sh", "-c", "echo o > /proc/sysrq-trigger; sleep 30"])
    assert_gone(guest, pid, run_dir, before)
    assert guest.process.returncode is not None


def test_missing_qemu_binary_is_a_launch_error(lab_setup: LabSetup, tmp_path: Path):
    """A lab machine naming a QEMU that does not exist gets a launch error, not a traceback."""
    from dataclasses import replace

    setup = replace(lab_setup, qemu="/nonexistent/qemu-system-x86_64", chroot=None)
    guest = Guest(GuestSpec(), setup=setup, log_dir=tmp_path, name="nobin")
    with pytest.raises(QemuLaunchError, match="cannot execute /nonexistent/qemu-system-x86_64"):
        guest.start()
    assert not guest.run_dir.exists()


def test_a_guest_root_apart_from_the_chroot_is_the_one_the_guest_gets(lab_setup: LabSetup,
                                                                      tmp_path: Path):
    """With QEMU run from the lab tree (chroot) and guest_root naming another tree, the guest
    boots from guest_root (a marker only that tree has is visible in the guest), not from the
    chroot tree."""
    assert lab_setup.chroot is not None
    other = tmp_path / "guestroot"
    subprocess.run(["cp", "-al", str(lab_setup.chroot), str(other)], check=True)
    marker = "etc/gpuhil-guest-root-marker"
    (other / marker).write_text("the other tree\n")
    setup = LabSetup(qemu=lab_setup.qemu, kernel=lab_setup.kernel,
                     initramfs=lab_setup.initramfs, guest_root=other, chroot=lab_setup.chroot)
    setup.check()
    try:
        with Guest(GuestSpec(), setup=setup, log_dir=tmp_path / "log", name="otherroot") as guest:
            assert guest.call(lab_payloads.read_text, "/" + marker) == "the other tree\n"
    finally:
        subprocess.run(["rm", "-rf", str(other)], check=True)
    assert not (lab_setup.chroot / marker).exists()
