"""Test data the suites write to device memory and read back (imported in the guest)."""
from __future__ import annotations


def pattern(size: int, seed: int) -> bytes:
    """``size`` bytes that differ per seed and per position within 251 bytes (a period prime to
    the page size, so one page's bytes never pass for another's)."""
    block = bytes((i * 31 + seed * 7 + 1) & 0xFF for i in range(251))
    return (block * (size // 251 + 1))[:size]
