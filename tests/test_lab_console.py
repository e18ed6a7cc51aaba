"""Console capture over a socketpair: timestamped log, tail, fatal-line detection."""
from __future__ import annotations

import re
import socket
from pathlib import Path

from gpuhil.lab.console import Console, classify


def test_classify_panic_and_init_failure():
    assert classify("[ 1.2] Kernel panic - not syncing: sysrq triggered crash").kind == "panic"
    assert classify("GPUHIL-INIT-FAIL: mount 9p gpuhil.root").line == "GPUHIL-INIT-FAIL: mount 9p gpuhil.root"
    assert classify("[ 0.1] Linux version 7.2") is None


def test_console_logs_timestamped_lines_and_spots_the_panic(tmp_path: Path):
    ours, qemu = socket.socketpair()
    console = Console(ours, tmp_path / "console.log")
    qemu.sendall(b"line one\r\nline two\n[ 3.0] Kernel panic - not syncing: VFS\n")
    qemu.sendall(b"after 1\nunterminated")
    qemu.close()
    console.drain(5)
    assert console.fatal is not None and console.fatal.line == "Kernel panic - not syncing: VFS"
    assert console.tail(2) == "after 1\nunterminated"
    assert console.report(before=1).splitlines()[0] == "line two"
    log = (tmp_path / "console.log").read_text().splitlines()
    assert len(log) == 5
    assert all(re.match(r"\[\s*\d+\.\d{3}\] ", line) for line in log)
    assert log[0].endswith("] line one")
    console.close()
    console.close()


def test_error_excerpt_starts_at_the_oops(tmp_path: Path):
    ours, qemu = socket.socketpair()
    console = Console(ours, tmp_path / "console.log")
    noise = b"".join(b"noise %d\n" % i for i in range(50))
    oops = b"BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
    regs = b"".join(b"R%d: 0\n" % i for i in range(30))
    qemu.sendall(noise + oops + regs + b"Kernel panic - not syncing: Fatal exception in interrupt\n")
    qemu.close()
    console.drain(5)
    excerpt = console.report().splitlines()
    assert excerpt[0] == "noise 48" and excerpt[2].startswith("BUG: kernel NULL pointer")
    assert excerpt[-1].startswith("Kernel panic")
    console.close()
