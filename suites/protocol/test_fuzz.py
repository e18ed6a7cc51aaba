"""Fuzzing: random and mutated command batches, generated on the host by hypothesis and
submitted to the device.  Oracle: every command is answered (a hang is reported), QEMU stays
alive, and the device's state stays consistent: what the replay says exists can be destroyed,
nothing else can, and a fresh resource still works.

On the VFIO transport each of 60 derandomized batches of up to 12 commands is one guest round
trip on a freshly reset device, not shrunk.  On the qtest transport (the device from this
process, no guest) the campaign is at scale: 600 batches of up to 128 commands, 32 per
notify, on one device kept open (each batch's teardown destroys every resource and context
the pool can name, and the oracle checks that it did; a device reset costs a renderer
re-initialisation of 15-35 ms), reset after a failing batch and replaced after a crash, so
hypothesis can replay and shrink; the failure message carries a ready-to-paste regression
test."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from gpuhil.raw.qemu_log import parse
from suites.protocol import fuzz, fuzz_payload

# the guest's intel-iommu driver logs the DMA faults the device takes on unmapped IOVAs on purpose
pytestmark = pytest.mark.kernel_log_allowed(r"DMAR: ", r"dmar_fault: \d+ callbacks suppressed")

_COMMON = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=list(HealthCheck))
#: transport -> (hypothesis settings, batches, the fewest commands the run must execute)
RUNS = {
    "vfio": (settings(max_examples=60, phases=(Phase.explicit, Phase.generate), **_COMMON),
             fuzz.batches, 60),
    # 100x the VFIO run's commands (327 in 12.8 s on this machine) in less wall time
    "qtest": (settings(max_examples=600, phases=(Phase.explicit, Phase.generate, Phase.shrink),
                       **_COMMON), fuzz.long_batches, 33_000),
}
#: requests per notify on the qtest transport (a 64-entry queue holds 32 two-descriptor chains)
QTEST_PER_NOTIFY = 32


#: examples per round of a nightly campaign (``gpuhil fuzz``: a new seed each round until the
#: time budget is spent)
ROUND = 200


def _campaign(config, transport: str):
    """The rounds to run: [(settings, seed or None)] for the suite's fixed campaign, or an
    endless generator of seeded rounds when ``--gpuhil-fuzz-budget`` is set (qtest only)."""
    import itertools
    import time

    budget, base, corpus = (config.getoption(name) or config.getini(name) for name in
                            ("gpuhil_fuzz_budget", "gpuhil_fuzz_seed", "gpuhil_fuzz_corpus"))
    if not budget or transport != "qtest":
        return [(RUNS[transport][0], None)], RUNS[transport][2]
    try:
        budget, base = float(budget), int(base or 0)
    except ValueError:
        pytest.fail(f"--gpuhil-fuzz-budget {budget!r} / --gpuhil-fuzz-seed {base!r}: "
                    f"expected seconds and an integer", pytrace=False)
    phases = (Phase.reuse, Phase.generate, Phase.shrink) if corpus else \
        (Phase.generate, Phase.shrink)
    nightly = settings(RUNS["qtest"][0], max_examples=ROUND, derandomize=False, phases=phases,
                       database=DirectoryBasedExampleDatabase(corpus) if corpus else None)
    deadline = time.monotonic() + budget
    rounds = ((nightly, base + n) for n in itertools.count())
    return itertools.takewhile(lambda _round: time.monotonic() < deadline, rounds), 1


def _paste(requests: list[bytes]) -> str:
    """A crashing batch as a ready-to-paste regression test (built only on failure)."""
    return f"as a regression test:\n{fuzz.regression_test(requests, 'QEMU crashed')}"


class _Devices:
    """Where each example runs.  VFIO: a payload call in the guest (the device opened, so
    reset, per batch).  qtest: a RawGpu on the test's QEMU kept open across examples, reset
    after an example that failed, and on a fresh QEMU of the same configuration after one
    died."""

    def __init__(self, raw_gpu, lab) -> None:
        self.gpu, self.lab, self.spares = raw_gpu, lab, []
        self.open = self.backing = None
        self.dirty = False

    def run(self, requests: list[bytes]) -> dict:
        ids, ctxs = list(fuzz.RESOURCE_IDS), list(fuzz.CONTEXT_IDS)
        if self.gpu.transport == "vfio":
            return self.gpu.call(fuzz_payload.fuzz_batch, requests, ids, ctxs)
        if not self.gpu.machine.alive:
            self._replace()
        if self.open is None:
            from gpuhil.raw.rawgpu import RawGpu

            self.open = RawGpu.open(self.gpu.target)
            self.backing = self.open.dma(fuzz_payload.BACKING_SIZE)
        elif self.dirty:
            self.open.reset()
        self.dirty = True  # until the oracle has passed this example
        return fuzz_payload.fuzz_on(self.open, self.backing.iova, requests, ids, ctxs,
                                    QTEST_PER_NOTIFY)

    def _replace(self) -> None:
        from gpuhil.handles import qtest_raw_gpu
        from gpuhil.lab.qtest_machine import QtestMachine

        self._close_device()
        old = self.gpu.machine
        machine = QtestMachine(old.gpu, setup=self.lab.setup, name="fuzz",
                               ram_mib=old.ram_mib, display=old.display).start()
        self.spares.append(machine)
        self.gpu = qtest_raw_gpu(machine)

    def _close_device(self) -> None:
        for held in (self.backing, self.open):
            if held is not None:
                try:
                    held.close()
                except Exception:  # noqa: BLE001 - a dead QEMU's device cannot be closed cleanly
                    pass
        self.open = self.backing = None

    def close(self) -> None:
        self._close_device()
        for machine in self.spares:
            machine.close()


@pytest.mark.guest_may_die  # a crash found is reported as such, QEMU replaced for the next test
def test_fuzzed_batches_are_answered_and_state_stays_consistent(raw_gpu, qemu_log, lab,
                                                                 record_property, request):
    """Derandomized batches of random or mutated commands (60 of up to 12 over VFIO, 600 of up to 128 over qtest): each command gets a response, QEMU
    survives, UNREF agrees with the replayed creations, and a fresh 2D resource plus
    GET_DISPLAY_INFO succeed after every batch, so malformed input from a guest can neither
    hang nor corrupt the device."""
    strategy = RUNS[raw_gpu.transport][1]
    rounds, at_least = _campaign(request.config, raw_gpu.transport)
    executed = []
    devices = _Devices(raw_gpu, lab)

    def one(requests: list[bytes]) -> None:
        executed.append(len(requests))
        try:
            result = devices.run(requests)
        except Exception as exc:
            gpu = devices.gpu
            if gpu.machine.alive:
                raise
            raise AssertionError(f"QEMU died ({gpu.machine.status()}) on this batch: "
                                 f"{type(exc).__name__}\n{gpu.qemu_state()}\n{_paste(requests)}") from None
        gpu = devices.gpu
        assert gpu.machine.alive, f"QEMU died: {gpu.qemu_state()}\n{_paste(requests)}"
        verdict = fuzz.judge(requests, result)
        assert not verdict, (f"{verdict}\nbatch:\n{fuzz.describe(requests, result)}\n"
                             f"QEMU: {parse(gpu.machine.qemu_stderr()).summary()}\n"
                             f"as a regression test:\n{fuzz.regression_test(requests, verdict)}")
        devices.dirty = False

    try:
        for hypothesis_settings, round_seed in rounds:
            run = hypothesis_settings(given(strategy)(one))
            (seed(round_seed)(run) if round_seed is not None else run)()
    finally:
        devices.close()
    record_property("fuzz_batches", len(executed))
    record_property("fuzz_commands", sum(executed))
    assert sum(executed) >= at_least, \
        f"only {sum(executed)} commands in {len(executed)} batches; the run needs {at_least}"


#: the qtest fuzzer's crashes, shrunk to two commands each: a RESOURCE_CREATE_2D of 0x303 (or
#: 0x300) that virglrenderer refuses, then RESOURCE_MAP_BLOB of that id at offset 0
REFUSED_CREATE_THEN_MAP_BLOB = {
    # width and height 0 (first at-scale run)
    "zero-size": [
        bytes.fromhex("01010000000000000100000000000000300000000000000003030000010000000000000000000000"),
        bytes.fromhex("0802000000000000e803000000000000300000000000000003030000000000000000000000000000"),
    ],
    # format 0xd302 (a poked byte), 65536 x 4096 (the byte-decoded campaign)
    "bad-format": [
        bytes.fromhex("0101000000000000000000000000000031000000000000000003000002d300000001000010000000"),
        bytes.fromhex("08020000010000003102000000000000300000000000000000030000000000000000010000000000"),
    ],
}


@pytest.mark.guest_may_die
@pytest.mark.parametrize("case", sorted(REFUSED_CREATE_THEN_MAP_BLOB))
def test_map_blob_after_refused_2d_create(raw_gpu, case):
    """RESOURCE_MAP_BLOB of an id whose 2D create the renderer refused (zero size, or a format
    it does not know) is answered with an error and QEMU survives, so a guest cannot kill its
    VMM that way (found by the qtest fuzzer)."""
    requests = REFUSED_CREATE_THEN_MAP_BLOB[case]
    try:
        result = raw_gpu.call(fuzz_payload.fuzz_batch, requests, list(fuzz.RESOURCE_IDS),
                              list(fuzz.CONTEXT_IDS))
    except Exception as exc:
        assert raw_gpu.machine.alive, f"QEMU died: {type(exc).__name__}: {raw_gpu.qemu_state()}"
        raise
    assert raw_gpu.machine.alive, f"QEMU died: {raw_gpu.qemu_state()}"
    assert not fuzz.judge(requests, result), fuzz.describe(requests, result)
