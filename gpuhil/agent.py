"""The guest agent: runs in the lab guest and serves the host's requests over virtio-serial.

The transport is the stdlib's :class:`multiprocessing.connection.Connection` on the virtio-serial
port's file descriptor (length-prefixed messages); each message is one pickled request or
:class:`Reply`.  The requests are the dataclasses below: call a project function
(``module:qualname``) with arguments, run a setup command, mark or read the kernel log, stop.

``gpuhil/lab/guest/stage2.sh`` runs :func:`main` in the guest (``python3 -m gpuhil.agent`` works
too); the host side is :class:`gpuhil.lab.agent_client.AgentClient`.  Only the stdlib and this
module are imported before the handshake: the agent's import time is part of every boot.  :func:`serve` is transport-agnostic, so the
protocol is also exercised on the host over a socketpair.
"""
from __future__ import annotations

import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

#: Bumped whenever a message changes shape; the handshake refuses a mismatch.
PROTOCOL = 1
PORT_NAME = "gpuhil.agent"
#: Created by stage2.sh once /run, /tmp, /dev/pts and /dev/shm are mounted; the agent starts in
#: parallel with those mounts and waits for it before serving.
MOUNTED = "/run/gpuhil-mounted"


# --- requests ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """Handshake: the agent answers with :class:`AgentInfo` when it is ready."""

    protocol: int = PROTOCOL


@dataclass(frozen=True)
class Call:
    """Call ``module:qualname`` with ``args``/``kwargs`` and return its result."""

    target: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    """Run a command (argv, no shell) and return :class:`RunResult`."""

    argv: tuple[str, ...]
    timeout: float | None = None
    input: bytes | None = None


@dataclass(frozen=True)
class KmsgMark:
    """Write a unique marker line into the kernel log; returns the marker."""

    label: str = ""


@dataclass(frozen=True)
class KmsgRead:
    """Return the kernel log lines after ``marker`` (all lines when it is empty)."""

    marker: str = ""


@dataclass(frozen=True)
class Stop:
    """Reply, then end the agent (the guest then powers off)."""


# --- replies ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentInfo:
    """What the agent reports at the handshake."""

    protocol: int
    pid: int
    python: str
    kernel: str
    uptime: float


@dataclass(frozen=True)
class RunResult:
    """The outcome of a :class:`Run`."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    def check(self) -> "RunResult":
        """Raise :class:`subprocess.CalledProcessError` unless the command succeeded."""
        if self.returncode != 0:
            import subprocess

            raise subprocess.CalledProcessError(self.returncode, list(self.argv), self.stdout, self.stderr)
        return self


@dataclass(frozen=True)
class Failure:
    """An exception raised in the guest: pickled when possible, always described as text."""

    type_name: str
    message: str
    traceback: str
    pickled: bytes | None


@dataclass(frozen=True)
class Reply:
    """The answer to one request: ``value`` when ``failure`` is None."""

    value: object = None
    failure: Failure | None = None


# --- the serving side -------------------------------------------------------------------------

def resolve(target: str) -> object:
    """Import ``module:qualname`` and return the object it names."""
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"target must be 'module:qualname', not {target!r}")
    __import__(module_name)
    obj = sys.modules[module_name]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def describe(exc: BaseException) -> Failure:
    """Turn an exception into a :class:`Failure` that survives any unpicklable payload."""
    import traceback  # imported on first use: the agent's startup is on the boot's critical path

    text = "".join(traceback.format_exception(exc))
    try:
        pickled = pickle.dumps(exc)
        pickle.loads(pickled)
    except Exception:  # an exception that does not round-trip still travels as text
        pickled = None
    return Failure(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc), text, pickled)


def _kmsg_mark(label: str) -> str:
    from gpuhil.devices import kmsg  # imported on demand: the agent's start-up stays lean

    return kmsg.mark(label)


def _kmsg_read(marker: str) -> list[str]:
    from gpuhil.devices import kmsg

    return kmsg.lines_after(marker)


_site_loaded = False


def _load_site() -> None:
    """Add the site directories (pytest, pyudev live there) before the first payload request.

    The agent starts with ``-S`` because processing site costs a noticeable part of the boot.
    """
    global _site_loaded
    if not _site_loaded and sys.flags.no_site:
        import site

        site.main()
    _site_loaded = True


def handle(request: object) -> object:
    """Carry out one request and return its value (raises what the request raised)."""
    if isinstance(request, (Call, Run)):
        _load_site()
    if isinstance(request, Call):
        return resolve(request.target)(*request.args, **request.kwargs)
    if isinstance(request, Run):
        import subprocess

        proc = subprocess.run(list(request.argv), input=request.input, capture_output=True,
                              timeout=request.timeout, check=False)
        return RunResult(tuple(request.argv), proc.returncode, proc.stdout, proc.stderr)
    if isinstance(request, KmsgMark):
        return _kmsg_mark(request.label)
    if isinstance(request, KmsgRead):
        return _kmsg_read(request.marker)
    if isinstance(request, Stop):
        return None
    if isinstance(request, Hello):
        if request.protocol != PROTOCOL:
            raise RuntimeError(f"agent protocol {PROTOCOL}, host speaks {request.protocol}")
        return AgentInfo(PROTOCOL, os.getpid(), sys.version.split()[0], os.uname().release,
                         time.clock_gettime(time.CLOCK_BOOTTIME))
    raise TypeError(f"unknown request {type(request).__name__}")


def serve(conn: Connection) -> None:
    """Answer requests on ``conn`` until :class:`Stop` or the host goes away."""
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        request = None
        try:
            request = pickle.loads(data)
            reply = Reply(value=handle(request))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # every failure, SystemExit included, goes back to the host
            reply = Reply(failure=describe(exc))
        try:
            payload = pickle.dumps(reply)
        except Exception as exc:  # the result itself cannot be pickled
            payload = pickle.dumps(Reply(failure=describe(
                TypeError(f"the result cannot be sent to the host: {exc!r}"))))
        conn.send_bytes(payload)
        if isinstance(request, Stop):
            return


def find_port(name: str = PORT_NAME, sysfs: str = "/sys/class/virtio-ports") -> str:
    """The /dev node of the virtio-serial port called ``name`` (no udev symlinks needed)."""
    for port in sorted(os.listdir(sysfs)):
        try:
            with open(os.path.join(sysfs, port, "name")) as f:
                if f.read().strip() == name:
                    return os.path.join("/dev", port)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"no virtio-serial port named {name!r} in {sysfs}")


def _wait_for(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:g} s")
        time.sleep(0.005)


def main() -> int:
    """Serve the host over the agent port until it says stop or disconnects."""
    _wait_for(MOUNTED, 30)
    deadline = time.monotonic() + 10
    while True:
        try:
            path = find_port()
            break
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    fd = os.open(path, os.O_RDWR)
    conn = Connection(fd)
    try:
        serve(conn)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    # Run the imported module's main so that pickled classes are gpuhil.agent.*, not __main__.*
    from gpuhil.agent import main as _main

    sys.exit(_main())
