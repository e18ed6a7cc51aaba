"""gpuhil.nested.seccomp on this host's kernel: a child process under the filter gets the chosen
errno for the denied ioctl request, and every other ioctl and system call as before."""
from __future__ import annotations

import errno
import subprocess
import sys
import termios

from gpuhil.nested.seccomp import deny_ioctls

CHILD = """
import fcntl, os, struct, sys, termios
r, w = os.pipe()
os.write(w, b"abc")
out = []
for request in (termios.FIONREAD, termios.FIOCLEX):
    try:
        value = fcntl.ioctl(r, request, b"\\0" * 4)
        out.append(f"{request:#x}=ok:{struct.unpack('i', value)[0]}")
    except OSError as exc:
        out.append(f"{request:#x}={exc.errno}")
print(" ".join(out), os.read(r, 3).decode())
"""


def _run(preexec) -> str:
    return subprocess.run([sys.executable, "-c", CHILD], preexec_fn=preexec, capture_output=True,
                          text=True, timeout=60, check=True).stdout.strip()


def test_denied_request_gets_the_errno_and_the_rest_passes() -> None:
    plain = _run(None)
    assert plain == f"{termios.FIONREAD:#x}=ok:3 {termios.FIOCLEX:#x}=ok:0 abc"
    filtered = _run(deny_ioctls({termios.FIONREAD: errno.ENOTTY}))
    assert filtered == f"{termios.FIONREAD:#x}={errno.ENOTTY} {termios.FIOCLEX:#x}=ok:0 abc"
