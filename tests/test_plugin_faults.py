"""Faults under xdist with real processes: Ctrl-C (SIGINT to the whole process group, as a
terminal sends it) while each worker holds two booted guests or is still booting its first, and
a worker SIGKILLed in the middle of a test; afterwards no QEMU and no run directory is left,
and every test has a result."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuhil.lab.setup import LabSetup
from gpuhil.pids import pid_alive
from tests.interrupt import ctrl_c_default

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.lab

_INNER = '''
import os, time, pytest

@pytest.mark.parametrize("guest", ["plain"], indirect=True)
def test_first(guest):
    """Leaves a booted plain guest in the worker."""

@pytest.mark.parametrize("guest", ["virgl"], indirect=True)
def test_waits(guest):
    """Holds a second guest until the run is interrupted or released."""
    with open(os.path.join({ready!r}, str(os.getpid())), "w") as f:
        f.write(f"{{guest.pid}}\\n")
    deadline = time.monotonic() + 600
    while not os.path.exists({release!r}) and time.monotonic() < deadline:
        time.sleep(0.2)
'''


def _start(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path, Path]:
    """The inner run: ``--dist each``, so each of the two workers boots both guests."""
    ready, results, release = tmp_path / "ready", tmp_path / "allure", tmp_path / "release"
    ready.mkdir()
    (tmp_path / "test_inner.py").write_text(_INNER.format(ready=str(ready), release=str(release)))
    argv = [sys.executable, "-m", "pytest", "-n", "2", "--dist", "each", "-p",
            "no:cacheprovider", "--rootdir", str(tmp_path), "--alluredir", str(results),
            str(tmp_path / "test_inner.py")]
    proc = subprocess.Popen(argv, cwd=tmp_path, start_new_session=True, text=True,
                            stdout=open(tmp_path / "out.log", "w"), stderr=subprocess.STDOUT,
                            preexec_fn=ctrl_c_default)
    return proc, ready, results, release


def _wait_ready(proc: subprocess.Popen, ready: Path, tmp_path: Path) -> list[tuple[int, int]]:
    """(worker pid, its second guest's QEMU pid) for both workers, once both hold two guests."""
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        found = [(int(f.name), int(f.read_text().split()[0])) for f in ready.iterdir()
                 if f.read_text().strip()]
        if len(found) >= 2:
            return found
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the inner run's guests were not ready:\n{(tmp_path / 'out.log').read_text()[-3000:]}")


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie holds nothing any more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return pid_alive(pid)


def _left_behind(runs: Path, workers: list[tuple[int, int]]) -> list[str]:
    """Run directories of these workers still there, and their QEMUs still running.  A QEMU gets
    SIGKILL when its worker dies, and may take a while to exit on a loaded host: it is waited
    for (a safety net, not a verdict on time)."""
    deadline = time.monotonic() + 120
    while any(_running(q) for _, q in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    owners = {str(worker) for worker, _ in workers}
    left = [p.name for p in runs.iterdir() if p.name.split("-", 1)[0] in owners]
    return left + [f"QEMU pid {qemu}" for _, qemu in workers if _running(qemu)]


def _ended(proc: subprocess.Popen, seconds: float, what: str) -> str:
    """The inner run's output once it ended (it is killed, and the test fails, if it does not)."""
    log = Path(proc.args[proc.args.index("--rootdir") + 1]) / "out.log"
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        processes = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(proc.pid)],
                                   capture_output=True, text=True).stdout
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the run did not end within {seconds:g} s of {what}; its processes:\n"
                    f"{processes}\nits output ends:\n{log.read_text()[-3000:]}", pytrace=False)
    return log.read_text()


def _results(results: Path, name: str) -> list[dict]:
    """The Allure results written for test ``name``."""
    found = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    return [r for r in found if r["name"] == name]


def test_ctrl_c_under_xdist_leaves_no_guest_and_marks_tests_interrupted(lab_setup: LabSetup,
                                                                         tmp_path: Path):
    """Ctrl-C with two booted guests per worker leaves no QEMU and no run directory, and the
    interrupted tests say so in Allure instead of showing as empty skips."""
    proc, ready, results, _ = _start(tmp_path)
    workers = _wait_ready(proc, ready, tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    output = _ended(proc, 120, "Ctrl-C")
    assert proc.returncode != 0, output
    assert _left_behind(lab_setup.runs(), workers) == [], output[-3000:]
    interrupted = _results(results, "test_waits[virgl]")
    assert len(interrupted) == 2, interrupted
    for result in interrupted:
        assert result["statusDetails"]["message"].startswith("[interrupted]"), result


def _parent_and_name(pid: str) -> tuple[int, str]:
    """(parent pid, command name) of a process, from /proc/PID/stat ((0, "") once it is gone)."""
    try:
        head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except OSError:
        return 0, ""
    return int(tail.split()[1]), head.split("(", 1)[1]


def _booting(proc: subprocess.Popen, runs: Path, tmp_path: Path) -> list[tuple[int, int]]:
    """(worker pid, QEMU pid) of both workers' first guests while they boot: a worker (a child
    of ``proc``) with a run directory and a QEMU child."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        workers = {int(r.name.split("-", 1)[0]) for r in (runs.iterdir() if runs.is_dir() else [])
                   if _parent_and_name(r.name.split("-", 1)[0])[0] == proc.pid}
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            parent, name = _parent_and_name(stat.parent.name)
            if parent in workers and name.startswith("qemu"):
                found.append((parent, int(stat.parent.name)))
        if len(found) >= 2:
            return found
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"the inner run's guests did not start booting:\n"
                f"{(tmp_path / 'out.log').read_text()[-3000:]}")


def test_ctrl_c_during_boot_under_xdist_leaves_no_guest(lab_setup: LabSetup, tmp_path: Path):
    """Ctrl-C while both workers' QEMUs are still booting leaves no QEMU and no run directory
    (a run dir was seen left behind after a Ctrl-C during boot)."""
    proc, _, _, _ = _start(tmp_path)
    workers = _booting(proc, lab_setup.runs(), tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    output = _ended(proc, 120, "Ctrl-C")
    assert proc.returncode != 0, output
    assert _left_behind(lab_setup.runs(), workers) == [], output[-3000:]


def test_sigkilled_worker_gives_its_test_a_crash_result_and_is_reaped(lab_setup: LabSetup,
                                                                     tmp_path: Path):
    """A worker killed outright (SIGKILL) gets a crash result naming the signal for the test it
    was running, and the controller removes the run directories it could not remove itself."""
    proc, ready, results, release = _start(tmp_path)
    victim, survivor = _wait_ready(proc, ready, tmp_path)
    os.kill(victim[0], signal.SIGKILL)
    time.sleep(2)
    release.write_text("")
    output = _ended(proc, 300, "the worker's SIGKILL")
    assert proc.returncode == 1, output[-3000:]
    assert "crashed while running" in output and "killed by SIGKILL" in output, output[-3000:]
    assert _left_behind(lab_setup.runs(), [victim, survivor]) == [], output[-3000:]
    statuses = sorted((r["status"], r.get("statusDetails", {}).get("message", ""))
                      for r in _results(results, "test_waits[virgl]"))
    assert [s for s, _ in statuses] == ["failed", "passed"], statuses
    assert statuses[0][1].startswith("[crash]") and "killed by SIGKILL" in statuses[0][1]


def test_qemu_that_dies_between_tests_is_reported(lab_setup: LabSetup,
                                                    pytester: pytest.Pytester):
    """A guest whose QEMU dies while no test uses it (killed here by a test on another guest,
    after its own test ended and it proved sound) is a session-level record naming the
    configuration and QEMU's end (terminal and an Allure result), and the next test of its
    configuration gets a fresh guest."""
    pytester.makepyfile(test_a="""
        import os, signal, time
        import pytest

        PIDS = []

        @pytest.mark.guest("plain")
        def test_first(guest):
            PIDS.append(guest.pid)
            assert guest.run(["true"]).returncode == 0

        @pytest.mark.guest("virgl")
        def test_meanwhile_the_plain_qemu_dies(guest):
            os.kill(PIDS[0], signal.SIGKILL)
            while os.path.exists(f"/proc/{PIDS[0]}") and "Z" not in open(
                    f"/proc/{PIDS[0]}/stat").read().split()[2]:
                time.sleep(0.05)
    """, test_b="""
        import pytest
        from test_a import PIDS

        @pytest.mark.guest("plain")
        def test_next_gets_a_fresh_guest(guest):
            assert guest.pid != PIDS[0]
            assert guest.run(["true"]).returncode == 0
    """)
    results = pytester.path / "allure-results"
    result = pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.lab", "-p",
                                           "no:cacheprovider", "-p", "no:randomly",
                                           "--alluredir", str(results))
    result.assert_outcomes(passed=3)
    deaths = [r for r in (json.loads(p.read_text()) for p in results.glob("*-result.json"))
              if r["fullName"].startswith("gpuhil guest pool::main::idle-death")]
    assert len(deaths) == 1 and deaths[0]["status"] == "failed", deaths
    assert deaths[0]["statusDetails"]["message"].startswith("[crash] [plain] QEMU killed by SIGKILL")
    result.stdout.re_match_lines([r"gpuhil: main: \[plain\] QEMU killed by SIGKILL while idle "
                                  r"between tests.*",
                                  r"gpuhil guest pool: bound 2 per worker; 3 boots, 0 evictions, "
                                  r"0 replaced after a test; peak live guests: main 2"])


def test_guest_logs_are_kept_beside_the_allure_results(lab_setup: LabSetup,
                                                       pytester: pytest.Pytester):
    """Console and QEMU logs of a run live in gpuhil-logs beside --alluredir, not only under
    pytest's basetemp that later sessions prune."""
    pytester.makepyfile(test_inner="""
        import pytest

        @pytest.mark.guest("plain")
        def test_boots(guest):
            assert guest.run(["true"]).returncode == 0
    """)
    results = pytester.path / "reports" / "allure-results"
    result = pytester.runpytest_subprocess("-p", "gpuhil.pytestplugin.lab", "-p",
                                           "no:cacheprovider", "--alluredir", str(results))
    result.assert_outcomes(passed=1)
    consoles = list((pytester.path / "reports" / "gpuhil-logs").glob("run-*/main-plain-1/console.log"))
    assert len(consoles) == 1, sorted(str(p) for p in (pytester.path / "reports").rglob("*"))
    assert (consoles[0].parent / "qemu.log").is_file()  # QEMU's stderr, beside the console
