"""A minimal vfio-user server: one PCI function with a mappable RAM BAR, for driving QEMU's
vfio-user client (``vfio-user-pci``) where no server is packaged (Debian and PyPI have none).

It answers the protocol of QEMU's ``docs/interop/vfio-user.rst`` as far as a client needs to
realize the device and touch its BAR: VERSION, DEVICE_GET_INFO, GET_REGION_INFO (BAR 0 backed
by a memfd whose fd goes with the answer, so the client can mmap it), GET_IRQ_INFO (no
interrupts), SET_IRQS, REGION_READ/WRITE (config space and BAR 0), DMA_MAP/UNMAP (accepted,
their fds closed) and DEVICE_RESET.  Anything else is refused with ENOTSUP.  It serves one
client connection on a thread and records the commands it saw (``commands``)."""
from __future__ import annotations

import array
import errno
import json
import mmap
import os
import socket
import struct
import threading

HDR = struct.Struct("<HHIII")  # id, command, size, flags, error_reply
VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO = 1, 2, 3, 4, 5
GET_IRQ_INFO, SET_IRQS, REGION_READ, REGION_WRITE, DEVICE_RESET = 7, 8, 9, 10, 13
REPLY, NO_REPLY, ERROR = 0x1, 0x10, 0x20
#: VFIO PCI layout: regions BAR0-5, ROM, config, VGA; interrupts INTx, MSI, MSI-X, ERR, REQ
NUM_REGIONS, NUM_IRQS, BAR0, CONFIG = 9, 5, 0, 7
FLAG_READ, FLAG_WRITE, FLAG_MMAP = 1, 2, 4
DEVICE_FLAGS_RESET, DEVICE_FLAGS_PCI = 1, 2
#: what the function says it is (Red Hat's test vendor id, "unclassified" class)
VENDOR, DEVICE = 0x1B36, 0x00FE


class VfioUserServer:
    """Listens on ``path``; serves one client on a thread until it hangs up or :meth:`close`.
    ``bar_size`` bytes of memfd RAM are BAR 0, named ``memfd_name`` (visible in the client's
    /proc/PID/maps when it mmaps the BAR)."""

    def __init__(self, path: str, bar_size: int = 1 << 16,
                 memfd_name: str = "gpuhil-vfio-user-bar0") -> None:
        self.path = path
        self.bar_size = bar_size
        self.memfd_name = memfd_name
        self.commands: list[int] = []
        self.error: BaseException | None = None
        self._bar_fd = os.memfd_create(memfd_name)
        os.ftruncate(self._bar_fd, bar_size)
        self._bar = mmap.mmap(self._bar_fd, bar_size)
        self._config = bytearray(256)
        struct.pack_into("<HH", self._config, 0, VENDOR, DEVICE)
        self._config[0x0B] = 0xFF  # class: unassigned
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(1)
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, name="vfio-user-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            self._conn, _ = self._listener.accept()
            while True:
                message = self._receive()
                if message is None:
                    return
                self._answer(*message)
        except OSError as exc:
            if self._conn is not None and self._conn.fileno() != -1:
                self.error = exc
        except BaseException as exc:  # noqa: BLE001 - kept for the caller, the thread ends
            self.error = exc

    def _receive(self) -> tuple[int, int, int, bytes] | None:
        """One message: (id, command, flags, body); fds that came with it are closed."""
        fds = array.array("i")
        head, ancillary, _flags, _addr = self._conn.recvmsg(HDR.size, socket.CMSG_SPACE(
            16 * fds.itemsize))
        if not head:
            return None
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
        for fd in fds:
            os.close(fd)
        msg_id, command, size, flags, _error = HDR.unpack(head)
        body = b""
        while len(body) < size - HDR.size:
            chunk = self._conn.recv(size - HDR.size - len(body))
            if not chunk:
                return None
            body += chunk
        return msg_id, command, flags, body

    def _reply(self, msg_id: int, command: int, body: bytes = b"", error: int = 0,
               fds: tuple[int, ...] = ()) -> None:
        flags = REPLY | (ERROR if error else 0)
        data = HDR.pack(msg_id, command, HDR.size + len(body), flags, error) + body
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self._conn.sendmsg([data], ancillary)

    def _answer(self, msg_id: int, command: int, flags: int, body: bytes) -> None:
        self.commands.append(command)
        reply = not flags & NO_REPLY
        if command == VERSION:
            caps = json.dumps({"capabilities": {"max_msg_fds": 8, "max_data_xfer_size": 1 << 20,
                                                "pgsizes": 4096, "max_dma_maps": 65535}})
            out = struct.pack("<HH", 0, 0) + caps.encode() + b"\0"
        elif command == GET_INFO:
            out = struct.pack("<IIII", 16, DEVICE_FLAGS_PCI | DEVICE_FLAGS_RESET, NUM_REGIONS,
                              NUM_IRQS)
        elif command == GET_REGION_INFO:
            index = struct.unpack_from("<I", body, 8)[0]
            sizes = {BAR0: self.bar_size, CONFIG: len(self._config)}
            mode = FLAG_READ | FLAG_WRITE | (FLAG_MMAP if index == BAR0 else 0)
            size = sizes.get(index, 0)
            out = struct.pack("<IIIIQQ", 32, mode if size else 0, index, 0, size, 0)
            if reply:
                self._reply(msg_id, command, out, fds=(self._bar_fd,) if index == BAR0 else ())
            return
        elif command == GET_IRQ_INFO:
            index = struct.unpack_from("<I", body, 8)[0]
            out = struct.pack("<IIII", 16, 1, index, 0)  # eventfd-capable, no vectors
        elif command in (REGION_READ, REGION_WRITE):
            offset, region, count = struct.unpack_from("<QII", body)
            target = self._config if region == CONFIG else self._bar if region == BAR0 else None
            if target is None or offset + count > len(target):
                self._reply(msg_id, command, error=errno.EINVAL)
                return
            if command == REGION_WRITE:
                if region == BAR0 or offset >= 4:  # the ids are read-only
                    target[offset:offset + count] = body[16:16 + count]
                out = body[:16]
            else:
                out = body[:16] + bytes(target[offset:offset + count])
        elif command in (DMA_MAP, DMA_UNMAP):
            out = body if command == DMA_UNMAP else b""
        elif command in (SET_IRQS, DEVICE_RESET):
            out = b""
        else:
            if reply:
                self._reply(msg_id, command, error=errno.ENOTSUP)
            return
        if reply:
            self._reply(msg_id, command, out)

    def close(self) -> None:
        """Stop serving: the socket file, the connection, the BAR memory and the thread."""
        for sock in (self._conn, self._listener):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self._thread.join(timeout=10)
        self._bar.close()
        os.close(self._bar_fd)
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> VfioUserServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["VfioUserServer"]
