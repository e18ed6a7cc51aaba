"""The qtest tier against the lab's real QEMU: the machine, the client, BAR assignment on
virtio-gpu-gl-pci, the virtio capabilities and a minimal virtio handshake, and teardown."""
from __future__ import annotations

import os
import signal
import struct
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from gpuhil.lab.errors import QemuLaunchError
from gpuhil.lab.qtest_machine import QtestMachine
from gpuhil.lab.setup import LabSetup
from gpuhil.machine import Machine
from gpuhil.qtest import pci
from gpuhil.qtest.errors import QtestClosed, QtestDied, QtestFailed

VIRTIO_GPU = (0x1AF4, 0x1050)
GET_DISPLAY_INFO, OK_DISPLAY_INFO, ERR_UNSPEC = 0x0100, 0x1101, 0x1200
VERSION_1 = 1 << 32


@pytest.fixture(scope="module")
def machine(lab_setup: LabSetup) -> Iterator[QtestMachine]:
    """One venus QEMU under qtest, its PCI bus brought up, for the module."""
    with QtestMachine(setup=lab_setup, name="qtest-lab") as m:
        m.functions = pci.bring_up(m.qtest)  # type: ignore[attr-defined]
        yield m


def _gpu(machine: QtestMachine) -> pci.PciFunction:
    return next(f for f in machine.functions if (f.vendor, f.device) == VIRTIO_GPU)  # type: ignore[attr-defined]


def _leftovers(pid: int, run_dir: Path) -> list[str]:
    found = []
    if Path(f"/proc/{pid}").exists():
        found.append(f"/proc/{pid}")
    for path in (run_dir, run_dir / "qtest.sock", run_dir / "ram"):
        if path.exists():
            found.append(str(path))
    return found


def test_machine_protocol_and_qmp(machine: QtestMachine) -> None:
    """The qtest machine is a Machine: QMP answers, no kernel, calls run here."""
    assert isinstance(machine, Machine)
    assert machine.alive and machine.fatal is None and machine.pid
    assert machine.qmp("query-status")["status"] == "running"
    assert isinstance(machine.qmp_events(), list)
    assert machine.kernel_log() == [] and machine.kmsg_mark("x") == ""
    assert machine.call(os.getpid) == os.getpid()
    assert "-d" in machine.qemu_argv and "guest_errors" in machine.qemu_argv


def test_socket_and_ram_file_are_unlinked_once_running(machine: QtestMachine) -> None:
    """After start-up neither the qtest socket nor the RAM file is left in the run directory."""
    assert machine.run_dir is not None
    assert not (machine.run_dir / "qtest.sock").exists()
    assert not (machine.run_dir / "ram").exists()


def test_guest_ram_is_shared_both_ways(machine: QtestMachine) -> None:
    """Stores into the mapped RAM are what qtest reads at that guest-physical address, and back."""
    ram, qtest = machine.ram, machine.qtest
    gpa = ram.alloc(4096)
    ram.write(gpa, bytes(range(16)))
    assert qtest.readl(gpa) == 0x03020100
    assert qtest.readq(gpa + 8) == 0x0F0E0D0C0B0A0908
    qtest.writel(gpa + 16, 0xDEADBEEF)
    assert ram.read(gpa + 16, 4) == b"\xef\xbe\xad\xde"
    qtest.write(gpa + 32, b"bulk bytes")
    assert qtest.read(gpa + 32, 10) == b"bulk bytes" == ram.read(gpa + 32, 10)


def test_fail_answer_from_real_qemu(machine: QtestMachine) -> None:
    """An unknown command is QEMU's FAIL, naming it, and the connection goes on."""
    with pytest.raises(QtestFailed, match="no_such_command"):
        machine.qtest.raw_command("no_such_command 1")
    assert machine.qtest.endianness() == "little"


def test_many_posted_writes_do_not_stall_qemu(machine: QtestMachine) -> None:
    """A thousand posted stores all land and QEMU keeps answering (unread OKs stay bounded)."""
    ram, qtest = machine.ram, machine.qtest
    gpa = ram.alloc(4096 * 4)
    for n in range(1000):
        qtest.post_writel(gpa + 4 * n, n)
    assert qtest.readl(gpa + 4 * 999) == 999
    assert ram.read(gpa, 8) == b"\x00\x00\x00\x00\x01\x00\x00\x00"


def test_bus_scan_and_bar_assignment(machine: QtestMachine) -> None:
    """virtio-gpu-gl-pci is 00:01.0; its BAR 2 and 256 MiB BAR 4 are assigned and decoding."""
    gpu = _gpu(machine)
    assert (gpu.bus, gpu.dev, gpu.fn) == (0, 1, 0)
    bar2, bar4 = gpu.bars[2], gpu.bars[4]
    assert bar2.kind == bar4.kind == "mem64"
    assert bar4.size == 256 << 20 and bar4.address is not None and bar4.address >= 1 << 32
    assert bar2.address is not None and bar2.address % bar2.size == 0
    assert gpu.config_read(0x10 + 4 * 4, 4) & ~0xF == bar4.address & 0xFFFFFFF0
    assert gpu.config_read(0x10 + 4 * 5, 4) == bar4.address >> 32
    assert gpu.config_read(0x04, 2) & 0x6 == 0x6


def test_virtio_capabilities(machine: QtestMachine) -> None:
    """The virtio windows are in BAR 2, the hostmem shared memory (id 1, 256 MiB) in BAR 4."""
    from gpuhil.raw.virtio_pci import CapType, find_capabilities

    gpu = _gpu(machine)
    assert 0x09 in {c.id for c in gpu.capabilities()}
    caps = {c.cfg_type: c for c in find_capabilities(gpu)}
    for kind, offset in ((CapType.COMMON, 0x0), (CapType.ISR, 0x1000),
                         (CapType.DEVICE, 0x2000), (CapType.NOTIFY, 0x3000)):
        assert (caps[kind].bar, caps[kind].offset) == (2, offset)
    assert caps[CapType.NOTIFY].notify_off_multiplier == 4
    shm = caps[CapType.SHARED_MEMORY]
    assert (shm.bar, shm.id, shm.length) == (4, 1, 256 << 20)


def test_virtio_handshake_command_irq_and_guest_error(machine: QtestMachine) -> None:
    """GET_DISPLAY_INFO is answered over shared RAM with an INTx IRQ; a short header lands
    QEMU's 'command size incorrect' in stderr."""
    from gpuhil._virtqueue import SplitQueue
    from gpuhil.raw.virtio_pci import VirtioPci

    ram, qtest = machine.ram, machine.qtest
    virtio = VirtioPci(_gpu(machine))  # type: ignore[arg-type]
    virtio.reset()
    virtio.negotiate(VERSION_1)
    qtest.irq_intercept_in("ioapic")
    ring = ram.alloc(3 * 4096)
    queue = SplitQueue(ram.mapping, 64, ring, ring, "controlq")
    try:
        notify = virtio.setup_queue(0, 64, queue.desc_iova, queue.avail_iova, queue.used_iova)
        virtio.driver_ok()
        ram.mapping.write16(queue.avail_offset, 0)  # interrupts wanted (SplitQueue polls)
        cmd, resp = ram.alloc(24), ram.alloc(408)
        for length, expected in ((24, OK_DISPLAY_INFO), (10, None)):
            before = len(machine.qemu_stderr())
            ram.write(cmd, struct.pack("<IIQII", GET_DISPLAY_INFO, 0, 0, 0, 0))
            queue.add([(cmd, length)], [(resp, 408)])
            queue.publish()
            virtio.notify(notify, 0)
            assert queue.wait(30.0) and queue.poll() is not None
            kind = struct.unpack_from("<I", ram.read(resp, 4))[0]
            if expected is not None:
                assert kind == expected
                assert qtest.wait_irq(None, 10.0)
                assert virtio.read_isr() & 1
                assert (False, next(n for up, n in qtest.irq_events if up)) in qtest.irq_events
            else:
                assert kind >= ERR_UNSPEC
                deadline = time.monotonic() + 120  # a safety net, not a verdict
                while "command size incorrect" not in machine.qemu_stderr(before):
                    assert time.monotonic() < deadline, machine.qemu_stderr(before)
                    time.sleep(0.01)
            qtest.take_irq_events()
        virtio.reset()
    finally:
        queue.close()


def test_qemu_killed_mid_command(lab_setup: LabSetup) -> None:
    """SIGKILL while a command is outstanding is QtestDied naming it and the signal; close
    then leaves no process, run directory, socket or RAM file."""
    machine = QtestMachine(gpu=None, setup=lab_setup, name="qtest-kill").start()
    pid, run_dir = machine.pid, machine.run_dir
    assert pid and run_dir
    try:
        os.kill(pid, signal.SIGSTOP)  # the command below is sent but cannot be answered
        errors: list[BaseException] = []
        thread = threading.Thread(target=lambda: _catch(errors, machine.qtest.readl, 0x100000))
        thread.start()
        time.sleep(0.2)
        assert thread.is_alive(), "the command was answered by a stopped QEMU"
        os.kill(pid, signal.SIGKILL)
        thread.join(10)
        assert len(errors) == 1 and isinstance(errors[0], QtestDied), errors
        assert "readl 0x100000" in str(errors[0]) and errors[0].status == "killed by SIGKILL"
        assert not machine.alive
        with pytest.raises(QtestClosed):
            machine.qtest.readl(0)
    finally:
        machine.close()
    assert _leftovers(pid, run_dir) == []


def _catch(errors: list[BaseException], func, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        func(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        errors.append(exc)


def test_close_leaves_nothing(lab_setup: LabSetup) -> None:
    """A normal close stops QEMU and removes the run directory; twice is harmless."""
    machine = QtestMachine(gpu=None, setup=lab_setup, name="qtest-close").start()
    pid, run_dir = machine.pid, machine.run_dir
    assert pid and run_dir and Path(f"/proc/{pid}").exists()
    machine.close()
    machine.close()
    assert _leftovers(pid, run_dir) == []
    assert not machine.alive


def test_failed_start_leaves_nothing(lab_setup: LabSetup) -> None:
    """A QEMU that refuses its command line is a QemuLaunchError with its stderr; nothing stays."""
    machine = QtestMachine(gpu=None, setup=lab_setup, name="qtest-bad",
                           extra_args=["-device", "no-such-device-gpuhil"])
    with pytest.raises(QemuLaunchError, match="no-such-device-gpuhil"):
        machine.start()
    assert machine.run_dir is not None and machine.pid is not None
    assert _leftovers(machine.pid, machine.run_dir) == []
