"""What a test does when the host resource it needs is leased by someone else: the user's
``--gpuhil-lease-busy`` policy.

``skip`` waits ``--gpuhil-lease-timeout`` seconds, then skips naming the holder; ``fail`` waits as
long, then fails naming the holder; ``wait`` waits until the resource is free (the test's own
timeout still applies).  Under ``CI`` the default is ``fail``, so a nightly job that could not get
its GPU says so instead of losing the coverage in a skip; elsewhere it is ``skip``.
"""
from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import pytest

from gpuhil.host.lease import Lease, LeaseBusy, acquire_any

__all__ = ["BUSY_POLICIES", "default_busy_policy", "lease_for_test"]

BUSY_POLICIES = ("skip", "wait", "fail")


def default_busy_policy(environ: Mapping[str, str] = os.environ) -> str:
    """``fail`` when the ``CI`` environment variable is set (and not ``false``/``0``), else
    ``skip``."""
    ci = environ.get("CI", "").strip().lower()
    return "fail" if ci not in ("", "0", "false", "no") else "skip"


def lease_for_test(resources: Sequence[str], settings, holder: str = "") -> Lease:
    """A lease on the first free resource of ``resources`` (``settings``: the lab plugin's
    :class:`~gpuhil.pytestplugin.options.Settings`); a busy one skips or fails the test by the
    policy, with the holder and the policy in the message."""
    policy = settings.lease_busy
    timeout = math.inf if policy == "wait" else settings.lease_timeout
    try:
        return acquire_any(resources, settings.lease_dir, timeout,
                           holder=holder or os.environ.get("PYTEST_XDIST_WORKER", "main"))
    except LeaseBusy as exc:
        message = f"{exc} (--gpuhil-lease-busy={policy})"
    if policy == "fail":  # in a fixture: the test errors in setup, it is not a skip
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
