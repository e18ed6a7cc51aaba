"""Host GPU inventory (pyudev): selectors, this host's (empty) list, and a real enumeration inside
a lab guest, whose virtio-gpu is a display-class PCI device with a render node."""
from __future__ import annotations

import pytest

from gpuhil.host.inventory import HostGpu, SelectorError, host_gpus, parse_selector, select

AMD = HostGpu("0000:03:00.0", 0x1002, 0x73BF, 0x030000, "amdgpu", "/dev/dri/renderD128", 14)
INTEL = HostGpu("0000:00:02.0", 0x8086, 0x9A49, 0x030000, "vfio-pci", None, 2)


@pytest.mark.parametrize("text, parsed", [
    ("0000:03:00.0", ("slot", "0000:03:00.0")),
    ("03:00.0", ("slot", "0000:03:00.0")),
    ("1002:73BF", ("ids", "1002:73bf")),
    ("8086:*", ("ids", "8086:*")),
    ("/dev/dri/renderD129", ("node", "/dev/dri/renderD129")),
])
def test_selectors(text, parsed):
    assert parse_selector(text) == parsed


@pytest.mark.parametrize("text", ["amd", "0000:03:00", ""])
def test_bad_selector_names_option_and_value(text):
    with pytest.raises(SelectorError, match=rf"--gpuhil-gpu={text!r}: expected a PCI slot"):
        parse_selector(text)


@pytest.mark.parametrize("text, why", [
    ("99:99", "the vendor id '99' needs four hex digits"),
    ("10021:73bf", "the vendor id '10021' needs four hex digits"),
    ("1002:7g3f", "the device id '7g3f' needs four hex digits"),
    ("0000:03:00.9", "a PCI slot is [domain:]bus:device.function in hex"),
    ("renderD128", "a render node is a path under /dev/dri/"),
])
def test_a_selector_that_cannot_be_valid_says_why(text, why):
    """A selector that looks like ids, a slot or a node but cannot be one says what is wrong."""
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert str(info.value) == f"--gpuhil-gpu={text!r}: " + str(info.value).split(": ", 1)[1]
    assert why in str(info.value)


@pytest.mark.parametrize("selectors, expected", [
    ([], [AMD, INTEL]),
    (["03:00.0"], [AMD]),
    (["8086:*"], [INTEL]),
    (["1002:73bf", "0000:00:02.0"], [AMD, INTEL]),
    (["/dev/dri/renderD128"], [AMD]),
    (["10de:*"], []),
])
def test_select(selectors, expected):
    assert select([AMD, INTEL], selectors) == expected


def test_this_host_lists_only_display_devices():
    import pathlib

    displays = [p.name for p in pathlib.Path("/sys/bus/pci/devices").iterdir()
                if (p / "class").read_text().startswith("0x03")]
    assert sorted(g.pci_slot for g in host_gpus()) == sorted(displays)


@pytest.mark.lab
def test_guest_virtio_gpu_is_found_with_its_render_node(gl_guest):
    gpus = gl_guest.call(host_gpus)
    assert len(gpus) == 1
    gpu = gpus[0]
    assert (gpu.vendor, gpu.device) == (0x1AF4, 0x1050)  # virtio 1.0 GPU
    assert gpu.driver == "virtio-pci" and gpu.render_node == "/dev/dri/renderD128"
    assert gpu.class_code >> 16 == 0x03 and gpu.iommu_group is None
