"""qtest transport benchmark: round trip of a PCI config read, an MMIO read and one virtio-gpu
command per notify through gpuhil.qtest, against a plain-Python loop (bytes formatting +
``sendall``/``recv`` on the same connection, no error handling) in the same process.

Per-call latencies are measured one by one (``perf_counter_ns``); the report gives median,
p99 and calls/s.  Ratios are baseline / gpuhil (above 1: gpuhil is faster).
"""
from __future__ import annotations

import socket
import statistics
import struct
import sys
import time
from typing import Callable

from bench import Result

N = 5000
GET_DISPLAY_INFO = 0x0100


def _latencies(call: Callable[[], object], n: int = N) -> list[int]:
    for _ in range(200):  # warm up
        call()
    clock = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = clock()
        call()
        out.append(clock() - t0)
    return out


def _summary(ns: list[int]) -> tuple[float, float, float]:
    """(median, p99, calls/s) with latencies in ns."""
    ordered = sorted(ns)
    median = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return median, p99, 1e9 * len(ns) / sum(ns)


def _plain(sock: socket.socket, command: bytes, answers: int) -> Callable[[], int]:
    def call() -> int:
        sock.sendall(command)
        buf = sock.recv(256)
        while buf.count(b"\n") < answers:
            buf += sock.recv(256)
        return int(buf.split(b"\n")[answers - 1][3:], 16)
    return call


def _virtio_command(machine, gpu, posted: bool = False,  # type: ignore[no-untyped-def]
                    spin: bool = False) -> Callable[[], object]:
    """One GET_DISPLAY_INFO per notify, completion polled in shared RAM; ``posted``: the
    notify is a posted write (no round trip); ``spin``: busy-poll the used ring instead of
    SplitQueue.wait's growing sleeps."""
    from gpuhil._virtqueue import SplitQueue
    from gpuhil.raw.virtio_pci import VirtioPci

    ram = machine.ram
    virtio = VirtioPci(gpu)
    virtio.reset()
    virtio.negotiate(1 << 32)
    ring = ram.alloc(3 * 4096)
    queue = SplitQueue(ram.mapping, 64, ring, ring, "controlq")
    notify = virtio.setup_queue(0, 64, queue.desc_iova, queue.avail_iova, queue.used_iova)
    virtio.driver_ok()
    cmd, resp = ram.alloc(24), ram.alloc(408)
    ram.write(cmd, struct.pack("<IIQII", GET_DISPLAY_INFO, 0, 0, 0, 0))
    window, offset = virtio.notify_window[0], notify
    post, address = machine.qtest.post_writew, window.base + offset

    def call() -> object:
        queue.add([(cmd, 24)], [(resp, 408)])
        queue.publish()
        if posted:
            post(address, 0)
        else:
            window.write16(offset, 0)
        if spin:
            deadline = time.monotonic() + 10.0
            while (done := queue.poll()) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError("GET_DISPLAY_INFO not completed in 10 s")
            return done
        if not queue.wait(10.0, 1, 50):
            raise TimeoutError("GET_DISPLAY_INFO not completed in 10 s")
        return queue.poll()
    call.queue = queue  # type: ignore[attr-defined]
    return call


def main(argv: list[str] | None = None) -> list[Result]:
    from gpuhil.lab.qtest_machine import QtestMachine
    from gpuhil.lab.setup import LabSetup
    from gpuhil.qtest import pci
    from gpuhil.qtest.pci import config_address, config_read

    setup = LabSetup.default(progress=lambda line: print(f"  {line}", file=sys.stderr))
    results: list[Result] = []
    with QtestMachine(setup=setup, name="bench-qtest") as machine:
        print(f"bench_qtest: QEMU up and answering in {machine.start_seconds:.3f} s", flush=True)
        client = machine.qtest
        gpu = next(f for f in pci.bring_up(client) if f.vendor == 0x1AF4)
        common = gpu.bars[2].address
        sock = client.socket
        cases = [
            ("config read (4 bytes)", lambda: config_read(client, 0, 1, 0, 0, 4),
             _plain(sock, b"outl 0xcf8 0x%x\ninl 0xcfc\n" % config_address(0, 1, 0, 0), 2)),
            ("MMIO readl (common cfg)", lambda: client.readl(common),
             _plain(sock, b"readl 0x%x\n" % common, 1)),
            ("RAM readl via qtest", lambda: client.readl(0x100000),
             _plain(sock, b"readl 0x100000\n", 1)),
        ]
        for name, ours, plain in cases:
            o_med, o_p99, o_rate = _summary(_latencies(ours))
            b_med, b_p99, b_rate = _summary(_latencies(plain))
            print(f"  {name:26} gpuhil median {o_med / 1e3:6.1f} us p99 {o_p99 / 1e3:6.1f} us "
                  f"{o_rate:8.0f}/s | plain Python median {b_med / 1e3:6.1f} us "
                  f"p99 {b_p99 / 1e3:6.1f} us {b_rate:8.0f}/s")
            results.append(Result("qtest", f"{name} median", o_med * 1e-9, b_med * 1e-9,
                                  "plain struct+socket"))
            results.append(Result("qtest", f"{name} p99", o_p99 * 1e-9, b_p99 * 1e-9,
                                  "plain struct+socket"))
        first = True
        for label, posted, spin in (("notify answered, wait()", False, False),
                                    ("notify posted, wait()", True, False),
                                    ("notify posted, spin on used", True, True)):
            command = _virtio_command(machine, gpu, posted, spin)
            if first:
                start = time.perf_counter()
                command()
                print(f"  first GET_DISPLAY_INFO {1e3 * (time.perf_counter() - start):.1f} ms")
                first = False
            med, p99, rate = _summary(_latencies(command, 2000))
            print(f"  GET_DISPLAY_INFO, one per notify, {label:28}: median {med / 1e3:6.1f} us "
                  f"p99 {p99 / 1e3:6.1f} us {rate:7.0f} commands/s (issue 12: <= 50 us)")
            client.flush()
            command.queue.close()  # type: ignore[attr-defined]
    return results


if __name__ == "__main__":
    for result in main():
        print(result.line())
