"""udmabuf creation: which memfds, ranges, lists and flags /dev/udmabuf takes, and how it refuses.

Expected errnos are those of drivers/dma-buf/udmabuf.c: the memfd must carry F_SEAL_SHRINK and
must not carry F_SEAL_WRITE or F_SEAL_FUTURE_WRITE (EINVAL), offsets and sizes are page aligned
and non-empty (EINVAL), the total is at most ``size_limit_mb`` and a list at most ``list_limit``
items (EINVAL), and a file that is not shmem is EBADFD.  The limits are read from the guest.
"""
from __future__ import annotations

import pytest

from suites.dmabuf import payloads

PAGE = 4096
MIB = 1 << 20


def _limits(udmabuf) -> tuple[int, int]:
    if udmabuf.size_limit_mb is None or udmabuf.list_limit is None:
        pytest.skip(f"udmabuf module parameters not readable in the guest, probed: "
                    f"size_limit_mb={udmabuf.size_limit_mb}, list_limit={udmabuf.list_limit}")
    return udmabuf.size_limit_mb, udmabuf.list_limit


def test_required_and_forbidden_seals(udmabuf):
    """CREATE needs F_SEAL_SHRINK and refuses F_SEAL_WRITE and F_SEAL_FUTURE_WRITE, so a buffer a
    device reads can neither lose pages under it nor be one the owner promised not to change."""
    out = udmabuf.machine.call(payloads.seal_outcomes)
    assert out == {
        "none": "EINVAL", "GROW": "EINVAL", "WRITE": "EINVAL", "no-ALLOW_SEALING": "EINVAL",
        "SHRINK": f"ok:{PAGE}", "SHRINK|GROW": f"ok:{PAGE}", "SHRINK|SEAL": f"ok:{PAGE}",
        "SHRINK|WRITE": "EINVAL", "SHRINK|FUTURE_WRITE": "EINVAL",
    }


def test_seals_hold_while_the_dmabuf_pins_the_pages(udmabuf):
    """With a udmabuf alive the memfd cannot shrink (EPERM) but can grow, and F_SEAL_WRITE cannot be
    added (EBUSY: the pages are pinned), so the dma-buf's pages stay writable and in place."""
    out = udmabuf.machine.call(payloads.seal_effects)
    assert out["shrink"] == "EPERM"
    assert out["grow"] == "ok" and out["memfd_size"] == str(4 * PAGE)
    assert out["dmabuf_size"] == str(2 * PAGE)  # growing the memfd does not grow the dma-buf
    assert out["add_WRITE_while_mapped"] == "EBUSY"
    assert out["add_WRITE_after"] == "EBUSY"
    assert out["pwrite_after_WRITE_seal"] == "ok"  # the seal was refused, so writes still work
    assert out["dmabuf_write_after_WRITE_seal"] == "still-writable"
    assert out["new_create_after_WRITE_seal"] == f"ok:{PAGE}"


def test_alignment_range_and_size_limit(udmabuf):
    """Page-aligned ranges inside the file up to size_limit_mb are accepted with their exact size;
    unaligned, empty, out-of-file and over-limit ranges are EINVAL and non-memfds EBADFD."""
    size_limit_mb, _ = _limits(udmabuf)
    out = udmabuf.machine.call(payloads.create_outcomes, size_limit_mb)
    limit = size_limit_mb * MIB
    assert out == {
        "whole": f"ok:{4 * PAGE}", "offset-page": f"ok:{2 * PAGE}", "flags-zero": f"ok:{PAGE}",
        "offset-unaligned": "EINVAL", "offset-half-page": "EINVAL", "size-unaligned": "EINVAL",
        "size-short": "EINVAL", "size-zero": "EINVAL", "past-the-end": "EINVAL",
        "offset-at-end": "EINVAL",
        "at-limit": f"ok:{limit}", "limit-plus-page": "EINVAL",
        "pipe": "EBADFD", "closed-fd": "EBADFD",
    }


def test_unknown_create_flags_are_refused(udmabuf):
    """Flag bits the uapi does not define are refused with EINVAL by CREATE and CREATE_LIST, so the
    flags field stays usable for future flags (the kernel's rule for ioctl fields)."""
    out = udmabuf.machine.call(payloads.unknown_flag_outcomes)
    assert out == {"create:0x2": "EINVAL", "create:0x80000000": "EINVAL", "list:0x2": "EINVAL"}


def test_cloexec_flag_sets_fd_cloexec(udmabuf):
    """UDMABUF_FLAGS_CLOEXEC, and only it, gives an fd with FD_CLOEXEC, so buffers do not leak
    into exec'd children unless asked."""
    assert udmabuf.machine.call(payloads.cloexec_flags) == {"with": True, "without": False}


def test_create_list_concatenates_in_order_and_shares_pages(udmabuf):
    """CREATE_LIST lays ranges out in list order with their summed size, and a page listed twice is
    the same page at both offsets (a store through one shows at the other and in the memfd)."""
    out = udmabuf.machine.call(payloads.list_layout)
    assert out["size"] == out["fdinfo_size"] == 3 * PAGE
    assert out["pages"] == [b"a-page-1", b"b-page-2", b"a-page-1"]
    assert out["a_page_1_now"] == b"via-list" and out["first_range_now"] == b"via-list"


def test_create_list_limits_and_bad_items(udmabuf):
    """CREATE_LIST takes exactly list_limit items and a sum of exactly size_limit_mb; one more item,
    one more page, an empty list or any bad item fails the whole call (EINVAL, EBADFD)."""
    size_limit_mb, list_limit = _limits(udmabuf)
    out = udmabuf.machine.call(payloads.list_outcomes, size_limit_mb, list_limit)
    assert out == {
        "at-list-limit": f"ok:{list_limit * PAGE}", "list-limit-plus-one": "EINVAL",
        "empty": "EINVAL", "second-unaligned": "EINVAL", "second-zero-size": "EINVAL",
        "second-unsealed": "EINVAL", "second-write-sealed": "EINVAL", "second-pipe": "EBADFD",
        "sum-at-limit": f"ok:{size_limit_mb * MIB}", "sum-over-limit": "EINVAL",
    }


def test_create_cycles_return_fds_and_shmem(udmabuf):
    """Repeated create/list-create/map/sync/fence/close cycles leave the fd table and the guest's
    Shmem where they started (and Shmem does count pages a udmabuf holds)."""
    out = udmabuf.machine.call(payloads.fd_and_memory_balance)
    assert out["fds_after"] == out["fds_before"]
    assert out["held_file_kib"] == 8 * 1024  # the udmabuf's writes landed in the memfd's pages
    noise_kib = 512  # other guest processes' shmem comes and goes meanwhile
    assert out["shmem_held_kib"] - out["shmem_released_kib"] >= 8 * 1024 - noise_kib
    assert out["shmem_after_kib"] <= out["shmem_before_kib"] + noise_kib
