"""Leases on host resources, exercised with real processes holding, dying and racing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gpuhil.host.lease import LeaseBusy, Owner, acquire, acquire_any, read_owner

from gpuhil.pids import boot_id

pytest_plugins = ["pytester"]


def _holder(directory: Path, resource: str, *, fork_orphan: bool = False) -> subprocess.Popen:
    """A process that leases ``resource``, prints 'held' and sleeps.

    ``fork_orphan``: it forks a child that inherits the lock descriptor and then exits itself,
    so the flock stays held by a process that is not the recorded owner (a leaked fd).
    """
    code = textwrap.dedent(f"""
        import os, sys, time
        from gpuhil.host.lease import acquire
        lease = acquire({resource!r}, {str(directory)!r}, holder="test-holder")
        if {fork_orphan!r}:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
            print("held", flush=True)
            os._exit(0)
        print("held", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_lease_records_owner_and_release_frees(tmp_path):
    with acquire("gpu0", tmp_path, holder="gw0") as lease:
        owner = read_owner(tmp_path, "gpu0")
        assert owner is not None and owner.pid == os.getpid() and owner.holder == "gw0"
        assert owner.boot_id == boot_id() and owner.alive()
        assert lease.held and lease.taken_over is None
    assert not lease.held
    assert read_owner(tmp_path, "gpu0") is None
    lease.release()  # twice is harmless
    with acquire("gpu0", tmp_path):
        pass


def test_live_owner_in_another_process_blocks_until_timeout(tmp_path, procs):
    procs.append(holder := _holder(tmp_path, "0000:03:00.0"))
    started = time.monotonic()
    with pytest.raises(LeaseBusy) as info:
        acquire("0000:03:00.0", tmp_path, timeout=0.5)
    assert time.monotonic() - started >= 0.5
    assert f"pid {holder.pid}" in str(info.value) and "test-holder" in str(info.value)
    assert "0000:03:00.0" in str(info.value)


def test_killed_owner_frees_the_lease(tmp_path, procs):
    procs.append(holder := _holder(tmp_path, "gpu"))
    with pytest.raises(LeaseBusy):
        acquire("gpu", tmp_path)
    os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    with acquire("gpu", tmp_path, timeout=2) as lease:
        assert read_owner(tmp_path, "gpu").pid == os.getpid()
        assert lease.taken_over is not None and lease.taken_over.pid == holder.pid


def test_dead_owner_whose_lock_leaked_is_taken_over(tmp_path, procs):
    procs.append(holder := _holder(tmp_path, "vfio-dev", fork_orphan=True))
    holder.wait()  # the recorded owner is gone; its forked child still holds the flock
    stale = read_owner(tmp_path, "vfio-dev")
    assert stale is not None and stale.pid == holder.pid and not stale.alive()
    with acquire("vfio-dev", tmp_path, timeout=2) as lease:
        assert lease.taken_over == stale
        assert read_owner(tmp_path, "vfio-dev").pid == os.getpid()


def test_owner_from_another_boot_is_dead(tmp_path):
    assert not Owner(os.getpid(), "another-boot", time.time()).alive()
    assert Owner(os.getpid(), boot_id(), time.time()).alive()


def test_any_of_several_and_waiting_for_a_release(tmp_path, procs):
    procs.append(first := _holder(tmp_path, "a"))
    with acquire_any(["a", "b"], tmp_path) as lease:
        assert lease.resource == "b"
        with pytest.raises(LeaseBusy):
            acquire_any(["a", "b"], tmp_path, timeout=0.2)
    # a waiter gets "a" once its holder dies during the wait
    waiter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from gpuhil.host.lease import acquire_any
        with acquire_any(["a"], {str(tmp_path)!r}, timeout=20) as lease:
            print(lease.resource, flush=True)
    """)], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    assert waiter.poll() is None
    os.killpg(first.pid, signal.SIGKILL)
    out, _ = waiter.communicate(timeout=20)
    assert out.strip() == "a" and waiter.returncode == 0


def test_racing_processes_never_share(tmp_path):
    """Four processes lease one of two resources at once; at no time do two hold the same one."""
    log = tmp_path / "log"
    code = textwrap.dedent(f"""
        import os, time
        from gpuhil.host.lease import acquire_any
        for _ in range(5):
            with acquire_any(["r0", "r1"], {str(tmp_path / 'leases')!r}, timeout=30, poll=0.01) as l:
                with open({str(log)!r}, "a") as f:
                    f.write(f"+ {{l.resource}} {{os.getpid()}}\\n")
                time.sleep(0.02)
                with open({str(log)!r}, "a") as f:
                    f.write(f"- {{l.resource}} {{os.getpid()}}\\n")
    """)
    workers = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [w.wait(60) for w in workers] == [0, 0, 0, 0]
    holders: dict[str, int] = {}
    events = log.read_text().splitlines()
    assert len(events) == 40
    for event in events:
        sign, resource, pid = event.split()
        if sign == "+":
            assert resource not in holders, f"{resource} leased twice: {holders[resource]} and {pid}"
            holders[resource] = int(pid)
        else:
            assert holders.pop(resource) == int(pid)


def test_unreadable_owner_record_is_not_taken_over(tmp_path, procs):
    procs.append(_holder(tmp_path, "x"))
    (tmp_path / "x.owner").write_text(json.dumps({"garbage": 1}))
    with pytest.raises(LeaseBusy, match="unknown owner"):
        acquire("x", tmp_path)


CONTENDER = textwrap.dedent("""
    import os, sys, time
    from gpuhil.host.lease import acquire
    directory, inside, log = sys.argv[1:4]
    print("ready", flush=True)
    sys.stdin.readline()  # the start signal: every contender races at once
    with acquire("gpu", directory, timeout=30, poll=0.001, holder=f"contender {os.getpid()}"):
        try:
            fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            with open(log, "a") as f:
                f.write(f"DOUBLE {os.getpid()}\\n")
        else:
            os.close(fd)
            time.sleep(0.02)
            os.unlink(inside)
        with open(log, "a") as f:
            f.write(f"held {os.getpid()}\\n")
""")


def test_takeover_races_hand_the_lease_to_one_holder_at_a_time(tmp_path, procs):
    """Round after round, a dead owner's leaked lock is taken over by four racing processes
    while the leaked descriptor closes at a random moment; an exclusive marker file shows that
    no two of them ever hold the lease at once, and each gets it exactly once."""
    import random

    rounds, contenders = 15, 4
    rng = random.Random(1234)
    for round_no in range(rounds):
        directory = tmp_path / f"round{round_no}"
        directory.mkdir()
        orphaned = _holder(directory, "gpu", fork_orphan=True)
        orphaned.wait()  # the owner is dead; its child still holds the flock
        inside, log = tmp_path / f"inside{round_no}", tmp_path / f"log{round_no}"
        racers = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(directory), str(inside),
                                    str(log)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   text=True) for _ in range(contenders)]
        for racer in racers:
            assert racer.stdout.readline().strip() == "ready"
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        time.sleep(rng.uniform(0, 0.03))
        os.killpg(orphaned.pid, signal.SIGKILL)  # the leaked descriptor closes mid-race
        assert [r.wait(60) for r in racers] == [0] * contenders
        events = log.read_text().split()
        assert "DOUBLE" not in events, f"round {round_no}: two holders at once: {events}"
        assert events.count("held") == contenders, f"round {round_no}: {events}"


_BUSY_TEST = """
    import pytest
    from gpuhil.pytestplugin.keys import SESSION_KEY
    from gpuhil.pytestplugin.leasing import lease_for_test

    @pytest.fixture
    def gpu(pytestconfig):
        with lease_for_test(["gpu-busy"], pytestconfig.stash[SESSION_KEY].settings) as lease:
            yield lease

    def test_uses_the_gpu(gpu):
        print("taken over from", gpu.taken_over.pid if gpu.taken_over else None)
"""


@pytest.mark.parametrize("policy, ci, outcome", [
    ("skip", "", "skipped"), ("fail", "", "errors"), ("", "", "skipped"), ("", "1", "errors"),
])
def test_busy_policy_skips_or_fails_naming_the_holder(pytester, tmp_path, procs, monkeypatch,
                                                      policy, ci, outcome):
    procs.append(holder := _holder(tmp_path, "gpu-busy"))
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_it=_BUSY_TEST)
    args = ["-p", "gpuhil.pytestplugin.lab", "--gpuhil-target=local", "-p", "no:cacheprovider",
            "-rsf", f"--gpuhil-lease-dir={tmp_path}", "--gpuhil-lease-timeout=0.3"]
    result = pytester.runpytest_inprocess(*args, *([f"--gpuhil-lease-busy={policy}"] if policy else []))
    result.assert_outcomes(**{outcome: 1})
    effective = policy or ("fail" if ci else "skip")
    result.stdout.fnmatch_lines([f"*no free lease on gpu-busy within 0.3 s (gpu-busy held by pid "
                                 f"{holder.pid} (test-holder) since *) "
                                 f"(--gpuhil-lease-busy={effective})*"])


def test_busy_policy_wait_takes_the_gpu_when_its_holder_goes(pytester, tmp_path, procs):
    procs.append(holder := _holder(tmp_path, "gpu-busy"))
    pytester.makepyfile(test_it=_BUSY_TEST)
    threading.Timer(1.0, os.killpg, (holder.pid, signal.SIGKILL)).start()
    result = pytester.runpytest_inprocess(
        "-p", "gpuhil.pytestplugin.lab", "--gpuhil-target=local", "-p", "no:cacheprovider", "-s",
        f"--gpuhil-lease-dir={tmp_path}", "--gpuhil-lease-timeout=0.1", "--gpuhil-lease-busy=wait")
    result.assert_outcomes(passed=1)
    # the lease came from the killed holder (its record was left behind): the test waited for it
    result.stdout.fnmatch_lines([f"*taken over from {holder.pid}"])
