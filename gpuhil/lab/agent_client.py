"""The host side of the guest agent protocol (see :mod:`gpuhil.agent`).

:class:`AgentClient` sends one pickled request at a time over a
:class:`multiprocessing.connection.Connection` and waits for its :class:`~gpuhil.agent.Reply`,
checking between polls that the guest is still alive.  A guest exception is re-raised on the host
with the guest traceback attached (``exc.guest_traceback`` and a note).
"""
from __future__ import annotations

import pickle
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

from gpuhil import agent
from gpuhil.errors import ClosedError
from gpuhil.lab.errors import AgentError, RemoteError

#: How often a waiting request checks that the guest is still alive.
POLL_INTERVAL = 0.05
#: How much longer than a Run request's own timeout the host waits for the agent's answer.
RUN_MARGIN = 30.0


def target_name(func: Callable[..., Any] | str) -> str:
    """``module:qualname`` for a module-level function (or the string itself, checked)."""
    if isinstance(func, str):
        module, sep, qualname = func.partition(":")
        if not (module and sep and qualname):
            raise ValueError(f"expected 'module:qualname', not {func!r}")
        return func
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname:
        raise TypeError(f"{func!r} has no __module__/__qualname__; pass a module-level function")
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(f"{module}.{qualname} is not importable in the guest: use a module-level function")
    if module == "__main__":
        raise ValueError(f"{qualname} lives in __main__, which the guest cannot import")
    return f"{module}:{qualname}"


def rebuild_exception(failure: agent.Failure) -> BaseException:
    """The guest's exception as a host object, with the guest traceback attached."""
    exc: BaseException | None = None
    if failure.pickled is not None:
        try:
            exc = pickle.loads(failure.pickled)
        except Exception:  # its class does not exist or differs on the host
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteError(failure.type_name, failure.message, failure.traceback)
    try:
        exc.guest_traceback = failure.traceback  # type: ignore[attr-defined]
    except AttributeError:
        pass
    exc.add_note("guest traceback:\n" + failure.traceback.rstrip("\n"))
    return exc


class AgentClient:
    """Requests to the guest agent; ``check_alive`` raises when the guest is gone."""

    def __init__(self, conn: Connection, check_alive: Callable[[], None] | None = None) -> None:
        self._conn: Connection | None = conn
        self._check_alive = check_alive or (lambda: None)
        self._broken: str | None = None

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        """Close the channel (the agent sees end-of-file and exits); harmless twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "AgentClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def request(self, request: Any, timeout: float | None = None) -> Any:
        """Send one request and return its value, or raise the guest's exception."""
        conn = self._conn
        if conn is None:
            raise ClosedError("the agent channel is closed")
        if self._broken:
            raise AgentError(f"the agent channel is unusable: {self._broken}")
        payload = pickle.dumps(request)
        deadline = None if timeout is None else time.monotonic() + timeout
        self._broken = f"interrupted during {type(request).__name__}"
        try:
            conn.send_bytes(payload)
            while not conn.poll(POLL_INTERVAL):
                self._check_alive()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"the agent did not answer {type(request).__name__} "
                                       f"within {timeout:g} s")
            data = conn.recv_bytes()
        except TimeoutError:
            raise
        except (EOFError, OSError) as exc:
            self._broken = f"lost during {type(request).__name__}: {exc!r}"
            self._check_alive()
            raise AgentError(f"the agent channel closed during {type(request).__name__}") from exc
        reply = pickle.loads(data)
        self._broken = None
        if not isinstance(reply, agent.Reply):
            self._broken = f"unexpected message {type(reply).__name__}"
            raise AgentError(self._broken)
        if reply.failure is not None:
            raise rebuild_exception(reply.failure)
        return reply.value

    def hello(self, timeout: float | None = None) -> agent.AgentInfo:
        """The handshake: returns what the agent reports about itself."""
        return self.request(agent.Hello(), timeout)

    def call(self, func: Callable[..., Any] | str, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``func(*args, **kwargs)`` in the guest and return its result."""
        return self.request(agent.Call(target_name(func), args, kwargs))

    def run(self, argv: list[str] | tuple[str, ...], timeout: float | None = None,
            check: bool = False, input: bytes | None = None) -> agent.RunResult:
        """Run a setup command in the guest; ``check`` raises CalledProcessError on failure."""
        # the guest kills the command after ``timeout``; the host stops waiting a margin later,
        # so an agent that no longer answers at all (a wedged guest) is a TimeoutError, not a hang
        wait = None if timeout is None else timeout + RUN_MARGIN
        result: agent.RunResult = self.request(agent.Run(tuple(argv), timeout, input), wait)
        return result.check() if check else result

    def kmsg_mark(self, label: str = "") -> str:
        """Write a marker into the guest kernel log and return it."""
        return self.request(agent.KmsgMark(label))

    def kmsg_read(self, marker: str = "") -> list[str]:
        """Guest kernel log lines written after ``marker`` (everything if empty)."""
        return self.request(agent.KmsgRead(marker))

    def stop(self, timeout: float | None = 5.0) -> None:
        """Ask the agent to exit (the guest powers off after it)."""
        self.request(agent.Stop(), timeout)
