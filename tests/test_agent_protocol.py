"""The agent protocol end to end on the host: gpuhil.agent.serve on one end of a socketpair,
AgentClient on the other (the same code the guest runs, over a different byte pipe)."""
import errno
import socket
import subprocess
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pytest

from gpuhil import agent
from gpuhil.errors import IoctlError, Unsupported
from gpuhil.lab.agent_client import AgentClient, target_name
from gpuhil.lab.errors import AgentError, RemoteError


@dataclass(frozen=True)
class Point:
    x: int
    y: int


def add(a, b, *, scale=1):
    return (a + b) * scale


def swap(p: Point) -> Point:
    return Point(p.y, p.x)


def fail_ioctl():
    raise Unsupported("RESOURCE_CREATE_BLOB", {"blob_mem": "HOST3D", "size": 0}, errno.ENOTTY)


def fail_plain():
    def inner():
        raise ValueError("deep in the guest")
    inner()


class _Local(Exception):
    def __init__(self, a, b):  # does not pickle back (args mismatch)
        super().__init__(a)


def fail_unpicklable():
    raise _Local("x", "y")


def unpicklable_result():
    return threading.Lock()


def exits():
    raise SystemExit(3)


@pytest.fixture
def client():
    host_sock, guest_sock = socket.socketpair()
    guest = Connection(guest_sock.detach())
    server = threading.Thread(target=agent.serve, args=(guest,), daemon=True)
    server.start()
    c = AgentClient(Connection(host_sock.detach()))
    yield c
    c.close()
    server.join(5)
    guest.close()
    assert not server.is_alive()


def test_handshake_reports_the_agent(client):
    info = client.hello(timeout=5)
    assert info.protocol == agent.PROTOCOL and info.pid > 0 and info.python


def test_call_by_function_and_by_name(client):
    assert client.call(add, 2, 3, scale=10) == 50
    assert client.call("tests.test_agent_protocol:add", 1, 1) == 2
    assert client.call(swap, Point(1, 2)) == Point(2, 1)


def test_gpuhil_error_keeps_op_args_errno_and_guest_traceback(client):
    with pytest.raises(Unsupported) as info:
        client.call(fail_ioctl)
    exc = info.value
    assert isinstance(exc, IoctlError)
    assert exc.op == "RESOURCE_CREATE_BLOB" and exc.errno == errno.ENOTTY
    assert exc.args_ == {"blob_mem": "HOST3D", "size": 0}
    assert "in fail_ioctl" in exc.guest_traceback
    assert any("guest traceback" in note for note in exc.__notes__)


def test_plain_exception_carries_the_inner_frame(client):
    with pytest.raises(ValueError, match="deep in the guest") as info:
        client.call(fail_plain)
    assert "in inner" in info.value.guest_traceback


def test_exception_that_does_not_unpickle_arrives_as_remote_error(client):
    with pytest.raises(RemoteError) as info:
        client.call(fail_unpicklable)
    assert info.value.type_name == "tests.test_agent_protocol._Local"
    assert "fail_unpicklable" in info.value.guest_traceback


def test_unpicklable_result_is_reported_and_channel_survives(client):
    with pytest.raises(TypeError, match="cannot be sent to the host"):
        client.call(unpicklable_result)
    assert client.call(add, 1, 2) == 3


def test_system_exit_in_payload_does_not_stop_the_agent(client):
    with pytest.raises(SystemExit):
        client.call(exits)
    assert client.call(add, 0, 0) == 0


def test_bad_targets(client):
    with pytest.raises(ModuleNotFoundError):
        client.call("no_such_module_xyz:f")
    with pytest.raises(AttributeError):
        client.call("tests.test_agent_protocol:nope")
    with pytest.raises(ValueError):
        client.call(lambda: 1)
    with pytest.raises(ValueError):
        target_name("no-colon")


def test_run_returns_rc_and_output(client):
    result = client.run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (result.returncode, result.stdout, result.stderr) == (4, b"out\n", b"err\n")
    with pytest.raises(subprocess.CalledProcessError):
        client.run(["false"], check=True)
    assert client.run(["cat"], input=b"abc").stdout == b"abc"


def test_stop_ends_the_agent_and_later_requests_fail():
    host_sock, guest_sock = socket.socketpair()
    guest = Connection(guest_sock.detach())
    server = threading.Thread(target=agent.serve, args=(guest,), daemon=True)
    server.start()
    c = AgentClient(Connection(host_sock.detach()))
    c.stop()
    server.join(5)
    assert not server.is_alive()
    guest.close()
    with pytest.raises(AgentError):
        c.call(add, 1, 2)
    c.close()


def test_timeout_marks_the_channel_unusable():
    host_sock, guest_sock = socket.socketpair()  # nobody serves the guest end
    c = AgentClient(Connection(host_sock.detach()))
    with pytest.raises(TimeoutError):
        c.request(agent.Hello(), timeout=0.2)
    with pytest.raises(AgentError, match="unusable"):
        c.hello()
    c.close()
    c.close()
    guest_sock.close()


def test_a_run_with_a_timeout_gives_up_on_an_agent_that_never_answers(monkeypatch):
    """A Run with a timeout is a TimeoutError a margin after it when nothing answers (a wedged
    guest's agent), so a health check cannot hang a test session."""
    from gpuhil.lab import agent_client

    monkeypatch.setattr(agent_client, "RUN_MARGIN", 0.2)
    host_sock, guest_sock = socket.socketpair()  # nobody serves the guest end
    c = AgentClient(Connection(host_sock.detach()))
    with pytest.raises(TimeoutError, match="did not answer Run within 0.3 s"):
        c.run(["true"], timeout=0.1)
    c.close()
    guest_sock.close()


def test_check_alive_is_raised_while_waiting():
    host_sock, guest_sock = socket.socketpair()

    class Dead(Exception):
        pass

    def check():
        raise Dead("qemu exited")

    c = AgentClient(Connection(host_sock.detach()), check_alive=check)
    with pytest.raises(Dead):
        c.hello()
    c.close()
    guest_sock.close()


def keyword_named_func(*, func, self):
    return (func, self)


def test_payload_keywords_named_like_call_parameters(client):
    assert client.call(keyword_named_func, func=1, self=2) == (1, 2)
