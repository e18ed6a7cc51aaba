"""The config suite's pure parsing, checked alone on synthetic PCI config spaces (no guest)."""
from __future__ import annotations

import struct

from suites.config.payloads import host_visible_region


def _config(caps: list[tuple[int, bytes]]) -> bytes:
    """A 256-byte config space whose capability list is ``caps`` [(offset, body after the
    id/next bytes)] in order."""
    space = bytearray(256)
    space[0x34] = caps[0][0] if caps else 0
    for index, (offset, body) in enumerate(caps):
        following = caps[index + 1][0] if index + 1 < len(caps) else 0
        space[offset:offset + 2 + len(body)] = bytes([body[0], following]) + body[1:]
    return bytes(space)


def _virtio_cap(cfg_type: int, shm_id: int, length: int) -> bytes:
    # cap_vndr (id), [next filled in], cap_len, cfg_type, bar, id, padding[2], offset, length,
    # offset_hi, length_hi (struct virtio_pci_cap64)
    return (bytes([0x09, 24, cfg_type, 4, shm_id, 0, 0])
            + struct.pack("<IIII", 0, length & 0xFFFFFFFF, 0, length >> 32))


def test_host_visible_region_is_found_behind_other_capabilities():
    """The HOST_VISIBLE shared memory capability is found after MSI-X, a common-config virtio
    capability and a shared memory region of another id, with its 64-bit length."""
    config = _config([(0x40, bytes([0x11]) + bytes(10)), (0x50, _virtio_cap(1, 0, 0x38)),
                      (0x70, _virtio_cap(8, 2, 1 << 20)), (0x90, _virtio_cap(8, 1, 8 << 30))])
    assert host_visible_region(config) == 8 << 30


def test_no_host_visible_region_is_zero():
    """A device without the capability (hostmem=0) and a capability list that loops both give
    0 instead of a wrong size or a hang."""
    assert host_visible_region(_config([(0x50, _virtio_cap(1, 0, 0x38))])) == 0
    looping = bytearray(_config([(0x50, _virtio_cap(1, 0, 0x38))]))
    looping[0x51] = 0x50
    assert host_visible_region(bytes(looping)) == 0
