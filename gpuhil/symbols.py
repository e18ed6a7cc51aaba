"""Symbolic names of enum and flag values, as the native layer writes them in error messages."""
from __future__ import annotations

import enum

__all__ = ["enum_name", "flag_names"]


def enum_name(value: int, enum_type: type[enum.Enum]) -> str | int:
    """The name of ``value``'s member of ``enum_type`` (``HOST3D``), or the number itself."""
    try:
        return enum_type(value).name
    except ValueError:
        return value


def flag_names(value: int, flag_type: type[enum.Flag]) -> str:
    """``value`` as ``A|B`` from the single-bit members of ``flag_type``; bits without a member
    are appended in hex (``A|0x40``); no bits at all is ``"0"``."""
    parts = []
    rest = int(value)
    for member in flag_type:  # iterating a Flag yields its single-bit members only
        bit = int(member)
        if rest & bit:
            parts.append(member.name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) if parts else "0"
