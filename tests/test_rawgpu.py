"""The device-independent parts of the raw virtio-gpu path: the "raw" lab configuration, the
virtio capability walk over a config-space image, feature naming, and the hang report types.
The device itself is exercised in tests/test_rawgpu_lab.py."""
from __future__ import annotations

import pickle
import struct

import pytest

from gpuhil.lab.spec import Accel, Channels, Placement, qemu_argv
from gpuhil.lab.configurations import CONFIGURATIONS, is_raw_spec
from gpuhil.protocol import Feature, GetCapsetInfo, ctrl_name
from gpuhil.raw.rawgpu import Features, RawTimeout, RingState
from gpuhil.raw.virtio_caps import CapType, find_capabilities

WHERE = Placement(qemu="/usr/bin/qemu-system-x86_64", kernel="/k", initramfs="/i",
                  guest_root="/r", project_root="/p", run_dir="/run")
FDS = Channels(qmp_fd=5, console_fd=6, agent_fd=7)


def test_raw_configuration_puts_the_gpu_behind_intel_iommu():
    """The "raw" guest has virtio-gpu-gl with iommu_platform=on, blob, hostmem and venus behind
    intel-iommu with interrupt remapping, split irqchip, intel_iommu=on and iommu=nopt."""
    spec = CONFIGURATIONS["raw"]
    argv = qemu_argv(spec.with_accel(Accel.TCG), WHERE, FDS)
    joined = " ".join(argv)
    assert ("virtio-gpu-gl-pci,blob=on,hostmem=256M,venus=on,iommu_platform=on"
            in argv)
    assert "intel-iommu,intremap=on,caching-mode=on" in argv
    assert "kernel-irqchip=split" in joined
    cmdline = spec.kernel_cmdline().split()
    assert "intel_iommu=on" in cmdline and "iommu=nopt" in cmdline
    assert is_raw_spec(spec)
    assert not any(is_raw_spec(s) for name, s in CONFIGURATIONS.items() if name != "raw")


class ConfigImage:
    """A PCI config space as bytes, read the way VFIO's config region is (1/2/4 bytes LE)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.name = "image"

    def config_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.data[offset:offset + size], "little")


def _config_image() -> bytes:
    """The capability chain RAW-PATH.md measured on QEMU's virtio-gpu-gl-pci."""
    space = bytearray(256)
    struct.pack_into("<H", space, 0x06, 0x10)  # status: capability list
    space[0x34] = 0xB0
    space[0xB0:0xB2] = bytes([0x11, 0x9C])  # MSI-X, next 0x9c

    def vendor(at: int, nxt: int, length: int, cfg_type: int, bar: int, offset: int, size: int,
               extra: bytes = b"", shm_id: int = 0) -> None:
        struct.pack_into("<BBBBBBxxII", space, at, 0x09, nxt, length, cfg_type, bar, shm_id,
                         offset, size)
        space[at + 16:at + 16 + len(extra)] = extra

    vendor(0x9C, 0x88, 20, 5, 0, 0, 0, bytes(4))
    vendor(0x88, 0x78, 20, 2, 2, 0x3000, 0x1000, struct.pack("<I", 4))
    vendor(0x78, 0x68, 16, 4, 2, 0x2000, 0x1000)
    vendor(0x68, 0x58, 16, 3, 2, 0x1000, 0x1000)
    vendor(0x58, 0x40, 16, 1, 2, 0x0, 0x1000)
    vendor(0x40, 0x00, 24, 8, 4, 0x0, 0x10000000, struct.pack("<II", 0, 0), shm_id=1)
    return bytes(space)


def test_capability_walk_decodes_every_virtio_structure():
    """Walking the chain finds the six virtio capabilities with their BAR windows, the notify
    multiplier and the 64-bit shared-memory region with its id, skipping MSI-X."""
    caps = find_capabilities(ConfigImage(_config_image()))
    assert [(c.cfg_type, c.bar, c.offset) for c in caps] == [
        (CapType.PCI_CFG, 0, 0), (CapType.NOTIFY, 2, 0x3000), (CapType.DEVICE, 2, 0x2000),
        (CapType.ISR, 2, 0x1000), (CapType.COMMON, 2, 0), (CapType.SHARED_MEMORY, 4, 0)]
    assert caps[1].notify_off_multiplier == 4
    shm = caps[-1]
    assert (shm.id, shm.length, shm.type_name) == (1, 0x10000000, "SHARED_MEMORY")
    image = bytearray(_config_image())
    struct.pack_into("<II", image, 0x40 + 16, 2, 1)  # offset_hi, length_hi
    shm = find_capabilities(ConfigImage(bytes(image)))[-1]
    assert (shm.offset, shm.length) == (2 << 32, (1 << 32) | 0x10000000)


def test_capability_walk_survives_a_loop_and_no_list():
    """A chain pointing back at itself ends; no capability-list bit means no capabilities."""
    image = bytearray(_config_image())
    image[0x41] = 0x9C  # the last capability points back into the chain
    assert len(find_capabilities(ConfigImage(bytes(image)))) == 6
    image[0x06] = 0
    assert find_capabilities(ConfigImage(bytes(image))) == []


def test_feature_names_are_symbolic():
    """Feature masks print as VIRTIO_GPU_F_* / VIRTIO_F_* names, unknown bits as numbers."""
    names = Features.names(0x000001033000001B)
    assert names == ["VIRTIO_GPU_F_VIRGL", "VIRTIO_GPU_F_EDID", "VIRTIO_GPU_F_RESOURCE_BLOB",
                     "VIRTIO_GPU_F_CONTEXT_INIT", "VIRTIO_F_RING_INDIRECT_DESC",
                     "VIRTIO_F_RING_EVENT_IDX", "VIRTIO_F_VERSION_1",
                     "VIRTIO_F_ACCESS_PLATFORM", "VIRTIO_F_RING_RESET"]
    assert Features.names(1 << 50) == ["bit 50"]
    features = Features(offered=0b11011, negotiated=0b01001)
    assert features.has(Feature.VIRGL) and not features.has(Feature.EDID)
    assert features.offers(Feature.EDID)


def test_command_names_from_messages_and_bytes():
    """Hang reports name commands symbolically, or by hex type when unknown."""
    assert ctrl_name(GetCapsetInfo(0)) == "CMD_GET_CAPSET_INFO"
    assert ctrl_name(GetCapsetInfo(0).encode()) == "CMD_GET_CAPSET_INFO"
    assert ctrl_name(b"\xff\x01\x00\x00" + bytes(20)) == "0x01ff"
    assert ctrl_name(b"\x01") == "<1-byte message>"


def test_raw_timeout_carries_the_ring_state_across_pickling():
    """A hang report keeps the commands and ring state through the guest agent's pickling."""
    state = RingState("controlq", 64, 3, 2, 2, 62, (5,), 0x0F)
    error = RawTimeout("no completion within 1 s for GET_CAPSET", ("GET_CAPSET",), state)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, RawTimeout) and copy.state == state
    assert copy.commands == ("GET_CAPSET",)
    assert str(state) == ("controlq: avail_idx=3 used_idx=2 last_used=2 free=62/64 "
                          "in_flight=[5] device_status=0x0f")


@pytest.mark.parametrize("name", ["venus", "vfio", "plain"])
def test_other_configurations_keep_their_drivers(name):
    """Only the raw configuration skips loading virtio_gpu."""
    assert not is_raw_spec(CONFIGURATIONS[name])
