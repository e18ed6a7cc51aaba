"""Guest kernel log records with their level and facility, read in the guest from ``/dev/kmsg``.

The agent's ``kmsg_read`` gives bare text; deciding whether a test made the kernel warn needs the
level (``<= 4`` is warning or worse) and the facility (0 is the kernel, 1 is userspace writing to
``/dev/kmsg``, like the test markers).  :func:`records_after` runs in the guest via ``guest.call``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

KERNEL_FACILITY = 0
WARNING_LEVEL = 4
#: How marker records start (a random hex id follows, then the label).
MARK_PREFIX = "gpuhil-mark:"


@dataclass(frozen=True)
class KmsgRecord:
    """One kernel log record: syslog facility and level, sequence number and text.

    ``continuation`` is the ``c`` flag: the record is the tail of a ``pr_cont`` message that the
    kernel could not append to its head (another task logged in between), so its level is the
    default message level (4), not one its writer chose.
    """

    facility: int
    level: int
    seq: int
    text: str
    continuation: bool = False

    @property
    def from_kernel(self) -> bool:
        return self.facility == KERNEL_FACILITY

    def line(self) -> str:
        """The record as ``<level>text`` (how dmesg -r shows it)."""
        return f"<{self.level}>{self.text}"


def parse_record(raw: bytes) -> KmsgRecord:
    """Parse one ``/dev/kmsg`` record: ``prio,seq,usec,flags;text\\n[ continuation lines]``."""
    head, _, body = raw.decode(errors="replace").partition(";")
    fields = head.split(",")
    prio = int(fields[0]) if fields and fields[0].isdigit() else 0
    seq = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    continuation = len(fields) > 3 and fields[3] == "c"
    return KmsgRecord(prio >> 3, prio & 7, seq, body.split("\n", 1)[0], continuation)


def read_records() -> list[KmsgRecord]:
    """Every record still in the guest's kernel log buffer (non-blocking read of /dev/kmsg)."""
    records = []
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                raw = os.read(fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # a record was overwritten while we read: go on
                continue
            if not raw:
                break
            records.append(parse_record(raw))
    finally:
        os.close(fd)
    return records


def last_seq() -> int:
    """The sequence number of the newest record (-1 when the log is empty): a position in the
    log that needs no marker written."""
    return max((record.seq for record in read_records()), default=-1)


def records_since(seq: int) -> list[KmsgRecord]:
    """Records logged after sequence number ``seq`` (from :func:`last_seq`)."""
    return [record for record in read_records() if record.seq > seq]


def records_after(marker: str, until: str = "") -> list[KmsgRecord]:
    """Records after the one starting with ``marker`` (and before ``until``, if given).

    Raises LookupError when the marker is no longer in the buffer.
    """
    records = read_records()
    for index, record in enumerate(records):
        if record.text.startswith(marker):
            after = records[index + 1:]
            break
    else:
        raise LookupError(f"kernel log marker {marker} not found (overwritten or never written)")
    if until:
        for index, record in enumerate(after):
            if record.text.startswith(until):
                return after[:index]
    return after


def mark(label: str = "") -> str:
    """Write a marker record (``gpuhil-mark:<random id> <label>``); the marker to slice the log
    with (:func:`records_after`, :func:`lines_after`)."""
    marker = f"{MARK_PREFIX}{os.urandom(16).hex()}"
    line = f"{marker} {label}".rstrip()
    fd = os.open("/dev/kmsg", os.O_WRONLY)
    try:
        os.write(fd, line.encode() + b"\n")  # an unterminated record stays open, unreadable
    finally:
        os.close(fd)
    return marker


def lines_after(marker: str = "") -> list[str]:
    """The text of the records after ``marker`` (of every record without one)."""
    records = records_after(marker) if marker else read_records()
    return [record.text for record in records]


__all__ = ["KmsgRecord", "MARK_PREFIX", "last_seq", "lines_after", "mark", "parse_record",
           "read_records", "records_after", "records_since"]
