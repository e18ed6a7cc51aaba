"""Ctrl-C for the sessions tests start: a job started in the background of a script (CI's
runner, ``nohup ... &``) inherits SIGINT ignored, Python then never raises KeyboardInterrupt,
and a SIGINT sent to simulate Ctrl-C would reach no one."""
from __future__ import annotations

import signal


def ctrl_c_default() -> None:
    """``preexec_fn`` for a session the test interrupts: SIGINT at its default, as in a
    terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
