"""A synchronous QMP connection built on ``qemu.qmp``'s async QMPClient, run on a private event
loop thread so that it works from any thread and collects events while nobody is asking."""
from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any, Coroutine, TypeVar

from qemu.qmp import EventListener, QMPClient

T = TypeVar("T")


class Qmp:
    """QMP over an already-connected socket (QEMU's ``-chardev socket,fd=N`` end of a socketpair)."""

    def __init__(self, sock: socket.socket, name: str, timeout: float = 30.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"qmp:{name}",
                                        daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._closed = False
        #: Events still unread when the connection closed (QEMU died or quit), kept for events().
        self._unread: list[dict[str, Any]] = []
        #: Set when QEMU reports SHUTDOWN (the guest powered off, reset under -no-reboot, quit).
        self.shutdown = threading.Event()
        self._watcher = EventListener(("SHUTDOWN",))
        self._client.register_listener(self._watcher)
        try:
            self._run(self._client.connect(sock), timeout)
            self._run(self._start_watch(), timeout)
        except BaseException:
            self.close()
            raise

    async def _start_watch(self) -> None:
        async def watch() -> None:
            async for _event in self._watcher:
                self.shutdown.set()
        self._watch_task = asyncio.ensure_future(watch())

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def execute(self, command: str, arguments: dict[str, Any] | None = None,
                timeout: float | None = 10.0) -> Any:
        """Run a QMP command and return its ``return`` value (raises qemu.qmp's ExecuteError)."""
        return self._run(self._client.execute(command, arguments), timeout)

    async def _take(self) -> list[dict[str, Any]]:
        return [dict(event) for event in self._client.events.clear()]

    def events(self) -> list[dict[str, Any]]:
        """The events received since the last call (e.g. SHUTDOWN, RESET, STOP); after close,
        the ones that were still unread then."""
        if self._closed:
            unread, self._unread = self._unread, []
            return unread
        return self._run(self._take(), 5.0)

    async def _stop_watch(self) -> None:
        task = getattr(self, "_watch_task", None)
        if task is not None:
            task.cancel()

    def close(self) -> None:
        """Disconnect and stop the loop thread; harmless twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._unread = self._run(self._take(), 1.0)
            self._run(self._stop_watch(), 5.0)
            self._run(self._client.disconnect(), 5.0)
        except Exception:  # QEMU already gone: the disconnect reports its EOF
            pass
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            if not self._thread.is_alive():
                self._loop.close()
