"""The qtest client against a fake peer (answers scripted on a socketpair) and the BAR
assignment logic alone: no QEMU needed."""
from __future__ import annotations

import socket
import threading

import pytest

from gpuhil.qtest.client import QtestClient
from gpuhil.qtest.errors import (
    QtestClosed, QtestDied, QtestFailed, QtestProtocolError, QtestTimeout,
)
from gpuhil.qtest.bars import Bar, PciError, Window, assign_bars, decode_bar
from gpuhil.qtest.pci import config_address, config_read


class FakePeer:
    """The QEMU end of a socketpair: for each command line received, sends the next answer."""

    def __init__(self, answers: list[bytes], close_after: bool = False) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.answers = list(answers)
        self.received: list[bytes] = []
        self.close_after = close_after
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        buf = b""
        while self.answers:
            chunk = self.theirs.recv(4096)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf and self.answers:
                line, buf = buf.split(b"\n", 1)
                self.received.append(line)
                self.theirs.sendall(self.answers.pop(0))
        if self.close_after:
            self.theirs.close()

    def client(self, **kwargs) -> QtestClient:
        return QtestClient(self.ours, **kwargs)


def test_values_are_parsed_and_commands_formatted() -> None:
    """Each accessor sends its command line and returns the hex value of the OK answer."""
    peer = FakePeer([b"OK 0x00001af4\n", b"OK\n", b"OK 0x0000000012345678\n"])
    client = peer.client()
    assert client.inl(0xCFC) == 0x1AF4
    client.writew(0xC0003000, 1)
    assert client.readq(0x100000) == 0x12345678
    assert peer.received == [b"inl 0xcfc", b"writew 0xc0003000 0x1", b"readq 0x100000"]


def test_config_read_is_one_round_trip_of_two_lines() -> None:
    """A config read sends the 0xcf8 address and the data-port access together."""
    peer = FakePeer([b"OK\n", b"OK 0x0050\n"])
    assert config_read(peer.client(), 0, 1, 0, 2, 2) == 0x50
    assert peer.received == [b"outl 0xcf8 0x%x" % config_address(0, 1, 0, 2), b"inw 0xcfe"]


def test_irq_lines_between_command_and_answer_are_kept() -> None:
    """Asynchronous IRQ lines are recorded in order and not mistaken for the answer."""
    peer = FakePeer([b"IRQ raise 21\nIRQ lower 21\nOK 0x01\n", b"IRQ raise 3\nOK\n"])
    client = peer.client()
    assert client.readb(0x1000) == 1
    client.writeb(0x1000, 0)
    assert client.take_irq_events() == [(True, 21), (False, 21), (True, 3)]
    assert client.irq_levels == {21: False, 3: True}


def test_fail_answer_names_the_command_and_keeps_the_client() -> None:
    """FAIL is a QtestFailed naming the command; the connection stays usable."""
    peer = FakePeer([b"FAIL Unknown command 'bogus'\n", b"OK little\n"])
    client = peer.client()
    with pytest.raises(QtestFailed, match="bogus") as info:
        client.raw_command("bogus 1")
    assert info.value.command == "bogus 1"
    assert client.endianness() == "little"


@pytest.mark.parametrize("garbage", [b"HELLO\n", b"OK 0xzz\n", b"IRQ sideways 3\n", b"OKAY\n"])
def test_malformed_answer_is_a_protocol_error_and_breaks_the_client(garbage: bytes) -> None:
    """An answer that is not OK/FAIL/IRQ raises QtestProtocolError naming the command."""
    peer = FakePeer([garbage])
    client = peer.client()
    with pytest.raises(QtestProtocolError, match="readl 0x2000"):
        client.readl(0x2000)
    assert not client.usable
    with pytest.raises(QtestClosed):
        client.readl(0x2000)


def test_eof_mid_answer_is_qtest_died_with_the_owner_s_status() -> None:
    """A peer that closes before the answer's newline makes QtestDied with on_death's info."""
    peer = FakePeer([b"OK 0x"], close_after=True)
    client = peer.client(on_death=lambda: ("killed by SIGKILL", "boom\n"))
    with pytest.raises(QtestDied, match=r"inb 0x60.*killed by SIGKILL.*boom") as info:
        client.inb(0x60)
    assert info.value.status == "killed by SIGKILL" and not client.usable


def test_no_answer_is_a_timeout() -> None:
    """A peer that never answers gives QtestTimeout after the client's timeout."""
    ours, theirs = socket.socketpair()
    client = QtestClient(ours, timeout=0.2)
    with pytest.raises(QtestTimeout, match="readw 0x10"):
        client.readw(0x10)
    theirs.close()


def test_wait_irq_consumes_only_irq_lines() -> None:
    """wait_irq returns once the line is raised, and False when nothing comes in time."""
    ours, theirs = socket.socketpair()
    client = QtestClient(ours)
    theirs.sendall(b"IRQ raise 5\nIRQ raise 7\n")
    assert client.wait_irq(7, 5.0)
    assert client.irq_events == [(True, 5), (True, 7)]
    assert not client.wait_irq(9, 0.05)


def test_bulk_read_and_write_use_base64() -> None:
    """read/write travel as b64read/b64write; a short b64read answer is a protocol error."""
    peer = FakePeer([b"OK\n", b"OK AQID\n", b"OK AQ==\n"])
    client = peer.client()
    client.write(0x1000, b"\x01\x02\x03")
    assert client.read(0x1000, 3) == b"\x01\x02\x03"
    assert peer.received[0] == b"b64write 0x1000 0x3 AQID"
    with pytest.raises(QtestProtocolError, match="1 bytes instead of 3"):
        client.read(0x1000, 3)


def test_decode_bar_kinds() -> None:
    """Sized BAR registers decode into 32-bit, 64-bit prefetchable, I/O or absent BARs."""
    f = (0, 1, 0)
    assert decode_bar(f, 1, 0x0, 0xFFFFF000) == Bar(f, 1, "mem32", 0x1000)
    assert decode_bar(f, 4, 0xC, 0xF0000000 | 0xC, 0xFFFFFFFF) == Bar(f, 4, "mem64", 256 << 20, True)
    assert decode_bar(f, 4, 0x1, 0xFFE1) == Bar(f, 4, "io", 32)
    assert decode_bar(f, 0, 0x0, 0x0) is None


def test_assign_bars_largest_first_aligned_in_their_windows() -> None:
    """64-bit BARs go above 4 GiB, 32-bit ones from 0xc0000000, each aligned to its size."""
    f, g = (0, 1, 0), (0, 2, 0)
    bars = [Bar(f, 1, "mem32", 0x1000), Bar(f, 2, "mem64", 0x4000, True),
            Bar(f, 4, "mem64", 256 << 20, True), Bar(g, 0, "mem32", 0x10000),
            Bar(g, 1, "io", 0x20)]
    placed = {(b.function, b.index): b.address for b in assign_bars(bars)}
    assert placed == {(f, 4): 0x1_0000_0000, (f, 2): 0x1_1000_0000, (g, 0): 0xC000_0000,
                      (f, 1): 0xC001_0000, (g, 1): 0xC000}
    for bar in assign_bars(bars):
        assert bar.address % bar.size == 0


def test_assign_bars_without_a_64_bit_window_uses_the_32_bit_one() -> None:
    """Without a mem64 window a 64-bit BAR is placed below 4 GiB."""
    bar = Bar((0, 1, 0), 2, "mem64", 0x4000)
    (placed,) = assign_bars([bar], [Window("mem32", 0xC000_0000, 0xFEC0_0000)])
    assert placed.address == 0xC000_0000


def test_assign_bars_reports_what_does_not_fit() -> None:
    """A BAR larger than its window is a PciError naming the function, BAR and window."""
    with pytest.raises(PciError, match=r"00:01.0 BAR 1: 0x100000000 bytes do not fit in the mem32"):
        assign_bars([Bar((0, 1, 0), 1, "mem32", 1 << 32)])
    with pytest.raises(PciError, match="not a power of two"):
        assign_bars([Bar((0, 1, 0), 1, "mem32", 0x3000)])


def test_posted_write_failure_is_reported_at_the_next_call() -> None:
    """A posted write is not waited for; its FAIL surfaces at the next call, naming it."""
    peer = FakePeer([b"FAIL bad address\n", b"OK 0x01\n"])
    client = peer.client()
    client.post_writew(0xC0003000, 0)
    with pytest.raises(QtestFailed, match=r"writew 0xc0003000 0x0 \(posted\)"):
        client.readb(0x1000)


def test_posted_writes_are_drained_before_they_can_fill_the_socket() -> None:
    """At most MAX_POSTED answers stay unread; flush reads the rest."""
    from gpuhil.qtest.client import MAX_POSTED

    count = MAX_POSTED * 3
    peer = FakePeer([b"OK\n"] * count)
    client = peer.client()
    for n in range(count):
        client.post_writel(0x1000, n)
        assert client.posted <= MAX_POSTED
    client.flush()
    assert len(peer.received) == count and client.usable and client.posted == 0
