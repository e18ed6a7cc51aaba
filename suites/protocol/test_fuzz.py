"""Fuzzing: random and mutated command batches, generated on the host by hypothesis and
submitted to the device (one payload call per batch, on a freshly reset device).  Oracle: every
command is answered (a hang is reported), QEMU stays alive, and the device's state stays
consistent: what the replay says exists can be destroyed, nothing else can, and a fresh
resource still works.

Each transport runs 60 derandomized batches of up to 12 commands.  On the VFIO transport each
batch is a guest round trip, not shrunk; on the qtest transport (the device from this process,
no guest) hypothesis shrinks a failing batch, on a fresh QEMU after a crash, and the failure
message carries it as a ready-to-paste regression test."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from gpuhil.raw.qemu_log import parse
from suites.protocol import fuzz, payloads

# the guest's intel-iommu driver logs the DMA faults the device takes on unmapped IOVAs on purpose
pytestmark = pytest.mark.kernel_log_allowed(r"DMAR: ", r"dmar_fault: \d+ callbacks suppressed")

_COMMON = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
#: transport -> (hypothesis settings, batches, the fewest commands the run must execute)
RUNS = {
    "vfio": (settings(max_examples=60, phases=(Phase.explicit, Phase.generate), **_COMMON),
             fuzz.batches, 60),
    # the at-scale run (fuzz.long_batches, 1,200 examples, 100x the commands) is not in the
    # suite yet: its first run found the QEMU crash below, its second one failed after 5 min
    # and is not triaged; until then qtest runs the VFIO-sized campaign, shrinking on
    "qtest": (settings(max_examples=60, phases=(Phase.explicit, Phase.generate, Phase.shrink),
                       **_COMMON), fuzz.batches, 60),
}


def _paste(requests: list[bytes]) -> str:
    """A crashing batch as a ready-to-paste regression test (built only on failure)."""
    return f"as a regression test:\n{fuzz.regression_test(requests, 'QEMU crashed')}"


class _Devices:
    """The device each example runs on: the test's, and on the qtest transport a fresh QEMU of
    the same configuration after one died (so hypothesis can replay and shrink a crash)."""

    def __init__(self, raw_gpu, lab) -> None:
        self.gpu, self.lab, self.spares = raw_gpu, lab, []

    def current(self):
        if self.gpu.transport == "qtest" and not self.gpu.machine.alive:
            from gpuhil.handles import qtest_raw_gpu
            from gpuhil.lab.qtest_machine import QtestMachine

            old = self.gpu.machine
            machine = QtestMachine(old.gpu, setup=self.lab.setup, name="fuzz",
                                   ram_mib=old.ram_mib, display=old.display).start()
            self.spares.append(machine)
            self.gpu = qtest_raw_gpu(machine)
        return self.gpu

    def close(self) -> None:
        for machine in self.spares:
            machine.close()


@pytest.mark.guest_may_die  # a crash found is reported as such, QEMU replaced for the next test
def test_fuzzed_batches_are_answered_and_state_stays_consistent(raw_gpu, qemu_log, lab,
                                                                 record_property):
    """60 derandomized batches of up to 12 random or mutated commands: each command gets a response, QEMU survives, UNREF agrees
    with the replayed creations, and a fresh 2D resource plus GET_DISPLAY_INFO succeed after
    every batch, so malformed input from a guest can neither hang nor corrupt the device."""
    hypothesis_settings, strategy, at_least = RUNS[raw_gpu.transport]
    executed = []
    devices = _Devices(raw_gpu, lab)

    @hypothesis_settings
    @given(strategy)
    def run(requests: list[bytes]) -> None:
        gpu = devices.current()
        executed.append(len(requests))
        try:
            result = gpu.call(payloads.fuzz_batch, requests, list(fuzz.RESOURCE_IDS),
                              list(fuzz.CONTEXT_IDS))
        except Exception as exc:
            if gpu.machine.alive:
                raise
            raise AssertionError(f"QEMU died ({gpu.machine.status()}) on this batch: "
                                 f"{type(exc).__name__}\n{gpu.qemu_state()}\n{_paste(requests)}") from None
        assert gpu.machine.alive, f"QEMU died: {gpu.qemu_state()}\n{_paste(requests)}"
        verdict = fuzz.judge(requests, result)
        assert not verdict, (f"{verdict}\nbatch:\n{fuzz.describe(requests, result)}\n"
                             f"QEMU: {parse(gpu.machine.qemu_stderr()).summary()}\n"
                             f"as a regression test:\n{fuzz.regression_test(requests, verdict)}")

    try:
        run()
    finally:
        devices.close()
    record_property("fuzz_batches", len(executed))
    record_property("fuzz_commands", sum(executed))
    assert sum(executed) >= at_least, \
        f"only {sum(executed)} commands in {len(executed)} batches; the run needs {at_least}"


#: the qtest fuzzer's first crash, shrunk: RESOURCE_CREATE_2D 0x303 of width and height 0
#: (refused by virglrenderer), then RESOURCE_MAP_BLOB of 0x303 at offset 0
CRASH_MAP_BLOB_AFTER_REFUSED_CREATE = [
    bytes.fromhex("01010000000000000100000000000000300000000000000003030000010000000000000000000000"),
    bytes.fromhex("0802000000000000e803000000000000300000000000000003030000000000000000000000000000"),
]


@pytest.mark.guest_may_die
def test_map_blob_after_refused_2d_create(raw_gpu):
    """RESOURCE_MAP_BLOB of an id whose 2D create (width and height 0) the renderer refused is
    answered with an error and QEMU survives, so a guest cannot kill its VMM that way (found
    by the qtest fuzzer)."""
    requests = CRASH_MAP_BLOB_AFTER_REFUSED_CREATE
    try:
        result = raw_gpu.call(payloads.fuzz_batch, requests, list(fuzz.RESOURCE_IDS),
                              list(fuzz.CONTEXT_IDS))
    except Exception as exc:
        assert raw_gpu.machine.alive, f"QEMU died: {type(exc).__name__}: {raw_gpu.qemu_state()}"
        raise
    assert raw_gpu.machine.alive, f"QEMU died: {raw_gpu.qemu_state()}"
    assert not fuzz.judge(requests, result), fuzz.describe(requests, result)
