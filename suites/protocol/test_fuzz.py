"""Bounded fuzzing: random and mutated command batches, generated on the host by hypothesis and
submitted in the guest (one payload call per batch).  Oracle: every command is answered (a hang
is reported), QEMU stays alive, and the device's state stays consistent: what the replay says
exists can be destroyed, nothing else can, and a fresh resource still works."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from gpuhil.raw.qemu_log import parse
from suites.protocol import fuzz, payloads

# the guest's intel-iommu driver logs the DMA faults the device takes on unmapped IOVAs on purpose
pytestmark = pytest.mark.kernel_log_allowed(r"DMAR: ", r"dmar_fault: \d+ callbacks suppressed")

# bounded: no shrinking (each example is a guest round trip), the failing batch is printed whole
FUZZ_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                         phases=(Phase.explicit, Phase.generate),
                         suppress_health_check=list(HealthCheck))


def test_fuzzed_batches_are_answered_and_state_stays_consistent(raw_gpu, qemu_log):
    """60 derandomized batches of up to 12 random or mutated commands: each command gets a
    response, QEMU survives, UNREF agrees with the replayed creations, and a fresh 2D resource
    plus GET_DISPLAY_INFO succeed after every batch."""

    @FUZZ_SETTINGS
    @given(fuzz.batches)
    def run(requests: list[bytes]) -> None:
        result = raw_gpu.call(payloads.fuzz_batch, requests, list(fuzz.RESOURCE_IDS),
                              list(fuzz.CONTEXT_IDS))
        assert raw_gpu.machine.alive, "QEMU died"
        verdict = fuzz.judge(requests, result)
        assert not verdict, (f"{verdict}\nbatch:\n{fuzz.describe(requests, result)}\n"
                             f"QEMU: {parse(qemu_log.text()).summary()}")

    run()
