"""The QEMU blob trace parser alone (no guest): the lines Debian's QEMU 11.1 prints."""
from __future__ import annotations

from gpuhil.blob_traces import (CREATE, MAP, UNMAP, UNREF, parse, unmap_sequences, well_formed)

SAMPLE = """\
virtio_gpu_cmd_res_create_blob res 0x3, size 1048576
virtio_gpu_cmd_res_map_blob res 0x3, vmr 0x557ae62d78a0, mr 0x557ae62d78d0
qemu-system-x86_64: some unrelated warning
virtio_gpu_cmd_res_unmap_blob res 0x3, mr 0x557ae62d78d0, mapping_state 0
virtio_gpu_cmd_res_unmap_blob res 0x3, mr 0x557ae62d78d0, mapping_state 1
virtio_gpu_cmd_res_unmap_blob res 0x3, mr 0x557ae62d78d0, mapping_state 2
virtio_gpu_cmd_res_unref res 0x3
virtio_gpu_cmd_res_map_blob res 0x1f, vmr 0x1, mr 0x2
"""


def test_parse_reads_event_resource_and_fields():
    """Each trace line becomes an event with its resource id and fields; other lines are
    ignored, so QEMU warnings in the same stream do not confuse the checks."""
    events = parse(SAMPLE)
    assert [e.event for e in events] == [CREATE, MAP, UNMAP, UNMAP, UNMAP, UNREF, MAP]
    assert events[0].res == 3 and events[0].field("size") == "1048576"
    assert [e.mapping_state for e in events[2:5]] == [0, 1, 2]
    assert events[1].mapping_state is None and events[-1].res == 0x1F


def test_unmap_sequences_group_states_per_mapping():
    """The unmap states are grouped per mapping, and a mapping never unmapped shows empty."""
    assert unmap_sequences(parse(SAMPLE)) == {3: [[0, 1, 2]], 0x1F: [[]]}


def test_well_formed_unmap_sequences():
    """A mapping's unmap must start once (0), may re-enter in flight (1) and completes once (2)."""
    assert well_formed([0, 2]) and well_formed([0, 1, 1, 2])
    assert not well_formed([]) and not well_formed([0]) and not well_formed([0, 2, 2])
    assert not well_formed([2]) and not well_formed([0, 0, 2])
