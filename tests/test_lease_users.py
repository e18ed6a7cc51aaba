"""Two Unix users on one host contend for one GPU lease in a shared, group-owned directory: each
excludes the other, sees who holds it, and takes over when the other dies holding it."""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import textwrap
from pathlib import Path

import filelock
import pytest

import gpuhil
from gpuhil.host.lease import LeaseBusy, acquire, prepare_directory, read_owner

OTHER_USER, OTHER_GROUP = "nobody", "nogroup"

HOLDER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from gpuhil.host.lease import LeaseBusy, acquire
    directory, mode = sys.argv[2], sys.argv[3]
    try:
        lease = acquire("0000:03:00.0", directory, timeout=float(sys.argv[4]), holder=f"uid {os.getuid()}")
    except LeaseBusy as exc:
        print("busy", exc, flush=True)
        sys.exit(3)
    print("held", os.getpid(), "took-over" if lease.taken_over else "fresh", flush=True)
    if mode == "hold":
        sys.stdin.readline()
    lease.release()
    print("released", flush=True)
""")


@pytest.fixture
def shared(tmp_path_factory):
    """A copy of gpuhil's Python code and of filelock readable by the other user, and a lease
    directory for group nogroup (2770), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("switching to another Unix user needs root")
    try:
        pwd.getpwnam(OTHER_USER), grp.getgrnam(OTHER_GROUP)
    except KeyError:
        pytest.skip(f"no {OTHER_USER}:{OTHER_GROUP} on this host")
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no /usr/bin/python3 for the other user")
    base = Path(tempfile.mkdtemp(prefix="gpuhil-lease-users-", dir="/tmp"))
    os.chmod(base, 0o755)
    lib = base / "lib"
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.c")
    shutil.copytree(Path(gpuhil.__file__).parent, lib / "gpuhil", ignore=ignore)
    shutil.copytree(Path(filelock.__file__).parent, lib / "filelock", ignore=ignore)
    for path in [lib, *lib.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    leases = prepare_directory(base / "leases", group=OTHER_GROUP)
    yield python, lib, leases
    shutil.rmtree(base, ignore_errors=True)


def _as_other(python: str, lib: Path, leases: Path, mode: str, timeout: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([python, "-c", HOLDER, str(lib), str(leases), mode, str(timeout)],
                            user=OTHER_USER, group=OTHER_GROUP, extra_groups=[],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd="/", start_new_session=True)


def test_the_shared_directory_belongs_to_the_group(shared):
    """prepare_directory makes a setgid 2770 directory of the group, and the lock and owner files
    a lease writes there are group-readable and writable (0660)."""
    _python, _lib, leases = shared
    info = os.stat(leases)
    assert stat.S_IMODE(info.st_mode) == 0o2770
    assert info.st_gid == grp.getgrnam(OTHER_GROUP).gr_gid
    with acquire("gpu", leases):
        for name in ("gpu.lock", "gpu.owner"):
            mode = os.stat(leases / name)
            assert stat.S_IMODE(mode.st_mode) == 0o660, name
            assert mode.st_gid == info.st_gid, name


def test_two_users_exclude_each_other(shared):
    """While root holds the GPU, the other user is told it is busy and by whom; once root lets
    go, the other user gets it, and root in turn is told the other user holds it."""
    python, lib, leases = shared
    with acquire("0000:03:00.0", leases, holder="root-session"):
        busy = _as_other(python, lib, leases, "once")
        out, err = busy.communicate(timeout=60)
        assert busy.returncode == 3, err
        assert "busy" in out and f"pid {os.getpid()}" in out and "root-session" in out
    other = _as_other(python, lib, leases, "hold")
    try:
        line = other.stdout.readline().split()
        assert line[:1] == ["held"], other.stderr.read()
        with pytest.raises(LeaseBusy, match=f"pid {line[1]}"):
            acquire("0000:03:00.0", leases)
        owner = read_owner(leases, "0000:03:00.0")
        assert owner is not None and owner.holder == f"uid {pwd.getpwnam(OTHER_USER).pw_uid}"
        other.stdin.write("done\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "released"
    finally:
        other.kill()
        other.wait()
    with acquire("0000:03:00.0", leases) as lease:
        assert lease.taken_over is None


def test_a_user_takes_over_from_the_other_user_who_died_holding(shared):
    """When the other user's session is killed holding the GPU, root's next lease takes it over
    (naming the dead owner); when root's holder dies, the other user takes it over too."""
    python, lib, leases = shared
    other = _as_other(python, lib, leases, "hold")
    line = other.stdout.readline().split()
    assert line[:1] == ["held"], other.stderr.read()
    os.killpg(other.pid, signal.SIGKILL)
    other.wait()
    with acquire("0000:03:00.0", leases, timeout=5) as lease:
        assert lease.taken_over is not None and lease.taken_over.pid == int(line[1])
    mine = subprocess.Popen([python, "-c", HOLDER, str(lib), str(leases), "hold", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert mine.stdout.readline().split()[0] == "held"
    os.killpg(mine.pid, signal.SIGKILL)
    mine.wait()
    after = _as_other(python, lib, leases, "once", timeout=5)
    out, err = after.communicate(timeout=60)
    assert after.returncode == 0 and "took-over" in out, out + err
