"""labgrid places with the real processes: a coordinator and two exporters on loopback, each
exporting a GpuhilGpu of its own (the virtual lab's sid stack and Debian stable's), places
made with labgrid-client, and pytest sessions that ask for them: a session runs on its place's
GPU and target and gives the place back; a second session reports the holder or waits; a
place another user acquired is busy; a killed or interrupted session's place becomes free; a
reservation token designates its place; without labgrid nothing of it loads.

labgrid is an extra, and its own pytest plugin (an entry point gpuhil does not use) refuses a
second session in one process, which pytester's in-process sessions are; so these tests install
it into a venv of their own (in the lab cache, layered over this one's packages by a .pth file)
and run their sessions with that venv's Python, and this venv stays without labgrid, which is
the absent case tested last."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from filelock import FileLock

from gpuhil.lab.cache import cache_dir
from tests.interrupt import ctrl_c_default

ROOT = Path(__file__).resolve().parent.parent
LABGRID = "labgrid>=26.0"  # the labgrid extra of pyproject.toml
BIN = Path(sys.executable).parent  # the labgrid venv's, once the lab fixture made it


def _labgrid_venv() -> Path:
    """``<cache>/labgrid-venv``: labgrid installed over this venv's packages; its bin dir."""
    import sysconfig

    venv = cache_dir() / "labgrid-venv"
    python = venv / "bin" / "python"
    with FileLock(str(cache_dir() / ".labgrid-venv.lock")):
        if not (venv / ".installed").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            base = sysconfig.get_paths()["purelib"]  # with its own .pth files (the editable gpuhil)
            Path(site, "gpuhil-base.pth").write_text(f"import site; site.addsitedir({base!r})\n")
            done = subprocess.run([str(python), "-m", "pip", "install", "-q", LABGRID],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            (venv / ".installed").write_text(LABGRID)
    return venv / "bin"

EXPORTER = """
gpu:
  location: {location}
  GpuhilGpu:
    pci: "{pci}"
    vendor_device: "1af4:1050"
    driver: virtio_gpu
    target: "{target}"
"""

SESSION_TEST = """
import os, pathlib, time
from gpuhil.pytestplugin.keys import SESSION_KEY

def test_where(pytestconfig):
    settings = pytestconfig.stash[SESSION_KEY].settings
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    out = pathlib.Path(os.environ["GPUHIL_TEST_OUT"])
    (out / worker).write_text(f"{settings.target.describe()}|{','.join(settings.gpu_selectors)}")
    hold = os.environ.get("GPUHIL_TEST_HOLD")
    if hold:
        pathlib.Path(hold + ".started").touch()
        while not pathlib.Path(hold + ".go").exists():
            time.sleep(0.1)

def test_second(pytestconfig):
    test_where(pytestconfig)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """The coordinator's address and a labgrid-client runner."""

    def __init__(self, address: str, root: Path) -> None:
        self.address, self.root = address, root

    def client(self, *args: str, user: str | None = None, check: bool = True) -> str:
        env = dict(os.environ, **({"LG_USERNAME": user} if user else {}))
        done = subprocess.run([str(BIN / "labgrid-client"), "-x", self.address, *args],
                              capture_output=True, text=True, env=env, timeout=60)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    def acquired(self, place: str) -> str:
        line = next(l for l in self.client("-p", place, "show").splitlines()
                    if l.strip().startswith("acquired:"))
        return line.split(":", 1)[1].strip()

    def wait_free(self, place: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while self.acquired(place) != "None":
            assert time.monotonic() < deadline, f"{place} still acquired by {self.acquired(place)}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    global BIN
    BIN = _labgrid_venv()
    root = tmp_path_factory.mktemp("labgrid")
    address = f"127.0.0.1:{_free_port()}"
    (root / "stable.toml").write_text('host_suite = "stable"\n')
    # the coordinator keeps places.yaml and resources.yaml in its working directory
    procs = [subprocess.Popen([str(BIN / "labgrid-coordinator"), "-l", address], cwd=root,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)]
    try:
        lab = Lab(address, root)
        deadline = time.monotonic() + 60
        while lab.client("places", check=False).startswith("Error") or "connect" in \
                lab.client("places", check=False).lower():
            assert time.monotonic() < deadline, "the coordinator did not come up"
            time.sleep(0.3)
        for name, pci, target in (("host-a", "0000:00:02.0", "lab"),
                                  ("host-b", "0000:00:03.0", str(root / "stable.toml"))):
            config = root / f"{name}.yaml"
            config.write_text(EXPORTER.format(location=f"virtual lab {name}", pci=pci,
                                              target=target))
            procs.append(subprocess.Popen(
                [str(BIN / "labgrid-exporter"), "-c", address, "-n", name, str(config)], cwd=root,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        while lab.client("resources").count("GpuhilGpu") < 2:
            assert time.monotonic() < deadline, lab.client("resources")
            time.sleep(0.3)
        for place, exporter in (("gpu-a", "host-a"), ("gpu-b", "host-b")):
            lab.client("-p", place, "create")
            lab.client("-p", place, "add-match", f"{exporter}/gpu/GpuhilGpu")
            lab.client("-p", place, "set-tags", f"exporter={exporter}")
        yield lab
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _session(lab: Lab, tmp: Path, place: str, *args: str, hold: str = "", name: str = "s"):
    """A pytest session on ``place`` (Popen), writing what it ran on into ``tmp/<name>/``."""
    out = tmp / name
    out.mkdir(parents=True, exist_ok=True)
    (tmp / "test_place.py").write_text(textwrap.dedent(SESSION_TEST))
    env = dict(os.environ, GPUHIL_TEST_OUT=str(out), GPUHIL_TEST_HOLD=hold,
               PYTHONPATH=str(ROOT))
    env.pop("CI", None)
    return subprocess.Popen(
        [str(BIN / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_place.py",
         f"--gpuhil-place={place}", f"--gpuhil-coordinator={lab.address}",
         f"--gpuhil-lease-dir={tmp / 'leases'}", *args],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=ctrl_c_default)


def _wait_for(path: Path, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else proc.returncode
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def test_session_runs_on_its_place_and_gives_it_back(lab: Lab, tmp_path: Path) -> None:
    """Under xdist, every worker runs on the place's GPU and the target its exporter names;
    the place is acquired for the session and free again after it."""
    proc = _session(lab, tmp_path, "gpu-b", "-n", "2", f"--alluredir={tmp_path / 'allure'}")
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    seen = {p.name: p.read_text() for p in (tmp_path / "s").iterdir()}
    assert sorted(seen) == ["gw0", "gw1"], (seen, output)
    assert set(seen.values()) == {f"{lab.root / 'stable.toml'}|0000:00:03.0"}
    # each result names the place and its GPU as where it ran
    results = list((tmp_path / "allure").glob("*-result.json"))
    assert len(results) == 2, output
    for path in results:
        params = {p["name"]: p["value"] for p in json.loads(path.read_text())["parameters"]}
        assert params == {"machine": "gpu-b", "host GPU": "1af4:1050@0000:00:03.0"}, params
    assert lab.acquired("gpu-b") == "None"


def test_second_session_reports_the_holder_then_waits_for_it(lab: Lab, tmp_path: Path) -> None:
    """A session asking for a place another session holds fails naming the holder, or with
    --gpuhil-lease-busy=wait starts only once the first has ended."""
    first = _session(lab, tmp_path, "gpu-a", hold=str(tmp_path / "first"), name="first")
    _wait_for(tmp_path / "first.started", first)
    assert lab.acquired("gpu-a").endswith("/" + os.environ.get("LG_USERNAME", os.getlogin()
                                                               if os.isatty(0) else "root"))
    busy = _session(lab, tmp_path, "gpu-a", "--gpuhil-lease-busy=fail",
                    "--gpuhil-lease-timeout=1", name="busy")
    output = busy.communicate(timeout=120)[0]
    assert busy.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "--gpuhil-place gpu-a: place gpu-a: another gpuhil session on this host holds it" \
        in output and f"(pytest pid {first.pid})" in output, output

    waiting = _session(lab, tmp_path, "gpu-a", "--gpuhil-lease-busy=wait",
                       hold=str(tmp_path / "second"), name="second")
    time.sleep(3)
    assert not (tmp_path / "second.started").exists()  # still waiting for the first
    (tmp_path / "first.go").touch()
    assert first.wait(120) == 0
    _wait_for(tmp_path / "second.started", waiting)
    (tmp_path / "second.go").touch()
    output = waiting.communicate(timeout=120)[0]
    assert waiting.returncode == 0, output
    lab.wait_free("gpu-a", 5)


def test_place_acquired_by_another_user_is_busy(lab: Lab, tmp_path: Path) -> None:
    """labgrid's own acquisition by someone else excludes gpuhil, with the holder named."""
    lab.client("-p", "gpu-a", "acquire", user="qa-engineer")
    try:
        proc = _session(lab, tmp_path, "gpu-a", "--gpuhil-lease-busy=fail",
                        "--gpuhil-lease-timeout=1")
        output = proc.communicate(timeout=120)[0]
        assert proc.returncode == pytest.ExitCode.USAGE_ERROR, output
        assert "place gpu-a is acquired by " in output and "/qa-engineer" in output, output
    finally:
        lab.client("-p", "gpu-a", "release", user="qa-engineer")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_or_interrupted_session_frees_its_place(lab: Lab, tmp_path: Path,
                                                       signum: int) -> None:
    """labgrid's acquisitions never expire: the keeper gives the place back when its session
    is killed (SIGKILL) or interrupted (Ctrl-C), and the host lease goes with it."""
    proc = _session(lab, tmp_path, "gpu-b", hold=str(tmp_path / "hold"))
    _wait_for(tmp_path / "hold.started", proc)
    assert lab.acquired("gpu-b") != "None"
    os.kill(proc.pid, signum)
    proc.communicate(timeout=120)
    lab.wait_free("gpu-b")
    from gpuhil.host.lease import acquire

    acquire("labgrid-place-gpu-b", tmp_path / "leases", timeout=30).release()


def test_reservation_token_designates_its_place(lab: Lab, tmp_path: Path) -> None:
    """--gpuhil-place +TOKEN runs on the place labgrid allocated to the reservation."""
    token = lab.client("reserve", "--shell", "exporter=host-a").split("LG_TOKEN=")[1].split()[0]
    try:
        proc = _session(lab, tmp_path, f"+{token}")
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output
        assert (tmp_path / "s" / "main").read_text() == "lab|0000:00:02.0"
    finally:
        lab.client("cancel-reservation", token, check=False)
    lab.wait_free("gpu-a", 5)


def test_unknown_place_and_absent_labgrid_are_one_line_errors(lab: Lab, tmp_path: Path) -> None:
    """A place the coordinator does not have, and --gpuhil-place where labgrid is not
    installed, stop the session with one line naming the place; without a place, nothing of
    labgrid is imported."""
    proc = _session(lab, tmp_path, "gpu-zz")
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert f"--gpuhil-place gpu-zz: labgrid coordinator {lab.address}: place pattern gpu-zz " \
           f"matches nothing" in output
    plain = subprocess.run(  # this venv has no labgrid
        [sys.executable, "-c", "import gpuhil.pytestplugin.lab, gpuhil.pytestplugin.places, "
         "gpuhil.host.labgrid_place, sys; import importlib.util as u; "
         "assert u.find_spec('labgrid') is None; "
         "assert not [m for m in sys.modules if m.startswith('labgrid')]; "
         "sys.exit(__import__('pytest').main(['-p', 'no:cacheprovider', '--gpuhil-place=gpu-a']))"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert plain.returncode == pytest.ExitCode.USAGE_ERROR, plain.stdout + plain.stderr
    assert "--gpuhil-place gpu-a: labgrid is not installed (pip install 'gpuhil[labgrid]')" \
        in plain.stderr
