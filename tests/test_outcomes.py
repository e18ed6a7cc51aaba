"""The status model alone: classification of phases, kernel log records and Allure categories."""
from __future__ import annotations

import json
import re

import pytest

from dataclasses import asdict

from gpuhil.report.environment import (
    CATEGORIES, Provenance, categories_json, environment_properties, host_gpu_pci_ids,
)
from gpuhil.report.machines import FRAGMENTS_DIR, RunOrigin, write_environment, write_fragment
from gpuhil.devices.kmsg import parse_record
from gpuhil.lab.errors import GuestDied, GuestPanic, QemuLaunchError
from gpuhil.outcomes import (
    ALLURE, Category, KernelLogProblem, Outcome, PhaseResult, TestTimeout, allure_message,
    classify, scan_kernel_log,
)


def phases(*items: tuple[str, str, BaseException | None]) -> list[PhaseResult]:
    return [PhaseResult(when, outcome, exc) for when, outcome, exc in items]


PASSED = phases(("setup", "passed", None), ("call", "passed", None), ("teardown", "passed", None))


def test_parse_record_splits_facility_level_and_drops_continuation_lines() -> None:
    record = parse_record(b"12,734,5112,-;GPUHIL-MARK abc\n SUBSYSTEM=x\n")
    assert (record.facility, record.level, record.seq, record.text) == (1, 4, 734, "GPUHIL-MARK abc")
    assert not record.from_kernel
    kernel = parse_record(b"3,9,1,-;tmpfs: Unknown parameter 'x'")
    assert kernel.from_kernel and kernel.line() == "<3>tmpfs: Unknown parameter 'x'"


def test_scan_kernel_log_counts_only_kernel_warnings_and_worse() -> None:
    verdict = scan_kernel_log([
        parse_record(b"6,1,0,-;virtio_gpu: probed"),            # info: fine
        parse_record(b"12,2,0,-;WARNING: written by a user"),  # userspace facility: ignored
        parse_record(b"3,3,0,-;tmpfs: Unknown parameter 'x'"),  # err: warning
        parse_record(b"6,4,0,-;BUG: kernel NULL pointer dereference"),  # BUG text: failure
        parse_record(b"2,5,0,-;something critical"),            # crit: failure
    ])
    assert verdict.warnings == ("<3>tmpfs: Unknown parameter 'x'",)
    assert verdict.failures == ("<6>BUG: kernel NULL pointer dereference", "<2>something critical")
    assert scan_kernel_log([parse_record(b"6,1,0,-;hello")]).clean


def test_a_split_pr_cont_tail_counts_by_its_text_not_its_default_level() -> None:
    """fbcon's "Console: switching " + pr_cont("to colour frame buffer device ...") split by
    another task's message (seen in a CI run): the tail's level 4 is the default, not a warning."""
    head = parse_record(b"6,40,0,-;Console: switching ")
    tail = parse_record(b"4,42,0,c;to colour frame buffer device 160x50")
    assert tail.continuation and not head.continuation
    assert scan_kernel_log([head, parse_record(b"6,41,0,-;other task"), tail]).clean
    bug = parse_record(b"4,43,0,c;BUG: unable to handle page fault")
    assert scan_kernel_log([bug]).failures == ("<4>BUG: unable to handle page fault",)


def _splat(message: bytes, seq: int = 10) -> list:
    """A drm_WARN splat as x86 Linux writes it to /dev/kmsg (cut here, message, WARNING, trace)."""
    lines = [b"------------[ cut here ]------------", message,
             b"WARNING: CPU: 0 PID: 412 at drivers/gpu/drm/drm_atomic_helper.c:1720 "
             b"drm_atomic_helper_wait_for_vblanks.part.0+0x24d/0x260",
             b"Modules linked in: virtio_gpu", b"Call Trace:", b" <TASK>",
             b" drm_atomic_helper_commit_tail+0x6e/0x80", b" </TASK>",
             b"---[ end trace 0000000000000000 ]---"]
    return [parse_record(b"4,%d,0,-;" % (seq + i) + line) for i, line in enumerate(lines)]


def test_scan_kernel_log_tolerates_a_vblank_wait_of_a_starved_guest() -> None:
    """A 100 ms vblank wait missed by a TCG guest on a loaded host is wall-clock, not a verdict:
    its splat is kept as tolerated evidence and the slice stays clean."""
    verdict = scan_kernel_log(_splat(
        b"virtio_gpu virtio0: [drm] [CRTC:39:crtc-0] vblank wait timed out"))
    assert verdict.clean and not verdict.warnings
    assert len(verdict.tolerated) == 9 and "vblank wait timed out" in verdict.tolerated[1]


def test_scan_kernel_log_still_warns_on_other_splats_and_lines_beside_a_tolerated_one() -> None:
    other = scan_kernel_log(_splat(b"virtio_gpu virtio0: [drm] bad refcount"))
    assert not other.clean and len(other.warnings) == 9 and not other.tolerated
    mixed = scan_kernel_log(
        _splat(b"virtio_gpu virtio0: [drm] [CRTC:39:crtc-0] vblank wait timed out")
        + [parse_record(b"3,30,0,-;virtio_gpu virtio0: [drm] *ERROR* fence wait failed")]
        + _splat(b"virtio_gpu virtio0: [drm] bad refcount", seq=40))
    assert mixed.warnings[0] == "<3>virtio_gpu virtio0: [drm] *ERROR* fence wait failed"
    assert len(mixed.warnings) == 10 and len(mixed.tolerated) == 9
    # a BUG inside the splat is never tolerated, nor is a splat that never ends
    oops = _splat(b"virtio_gpu virtio0: [drm] [CRTC:39:crtc-0] vblank wait timed out")
    oops[4] = parse_record(b"4,14,0,-;BUG: kernel NULL pointer dereference")
    assert scan_kernel_log(oops).failures and not scan_kernel_log(oops).tolerated
    cut = _splat(b"virtio_gpu virtio0: [drm] [CRTC:39:crtc-0] vblank wait timed out")[:-1]
    assert len(scan_kernel_log(cut).warnings) == 8


@pytest.mark.parametrize("items, expected", [
    (PASSED, Outcome.PASS),
    (phases(("setup", "passed", None), ("call", "failed", AssertionError("x"))), Outcome.FAIL),
    (phases(("setup", "passed", None), ("call", "failed", KeyError("x"))), Outcome.ERROR),
    (phases(("setup", "skipped", None)), Outcome.SKIP),
    (phases(("setup", "passed", None), ("call", "failed", TestTimeout("per-test", 1))),
     Outcome.TIMEOUT),
    (phases(("setup", "passed", None), ("call", "failed", GuestPanic("Kernel panic - x"))),
     Outcome.CRASH),
    (phases(("setup", "passed", None), ("call", "failed", GuestDied("QEMU went away"))),
     Outcome.CRASH),
    (phases(("setup", "failed", QemuLaunchError("no qemu", 1, ["qemu"], ""))), Outcome.INFRA),
    # a LabError raised during boot in the call phase is the test's problem, not the lab's
    (phases(("setup", "passed", None), ("call", "failed", QemuLaunchError("x", 1, [], ""))),
     Outcome.ERROR),
])
def test_classify(items: list[PhaseResult], expected: Outcome) -> None:
    assert classify(items) is expected


def test_classify_setup_failure_caused_by_a_lab_error_is_infrastructure() -> None:
    try:
        try:
            raise QemuLaunchError("no qemu", 1, ["qemu"], "")
        except QemuLaunchError:
            raise RuntimeError("fixture gave up")
    except RuntimeError as exc:
        wrapped = exc
    assert classify(phases(("setup", "failed", wrapped))) is Outcome.INFRA
    assert classify(phases(("setup", "failed", RuntimeError("plain")))) is Outcome.ERROR


def test_classify_kernel_log() -> None:
    warn = scan_kernel_log([parse_record(b"4,1,0,-;------------[ cut here ]------------")])
    bug = scan_kernel_log([parse_record(b"1,1,0,-;BUG: unable to handle page fault")])
    assert classify(PASSED, kernel_log=warn) is Outcome.DMESG_WARN
    assert classify(PASSED, kernel_log=bug) is Outcome.DMESG_FAIL
    raised = phases(("setup", "passed", None), ("call", "failed", KernelLogProblem(warn)))
    assert classify(raised) is Outcome.DMESG_WARN
    failed = phases(("setup", "passed", None), ("call", "failed", AssertionError("x")))
    assert classify(failed, kernel_log=bug) is Outcome.DMESG_FAIL
    assert classify(failed, kernel_log=warn) is Outcome.FAIL
    assert classify(PASSED, timed_out=True) is Outcome.TIMEOUT


def test_allure_mapping_covers_every_outcome() -> None:
    assert set(ALLURE) == set(Outcome)
    assert ALLURE[Outcome.INFRA].category is Category.INFRASTRUCTURE
    assert ALLURE[Outcome.ERROR].category is Category.TEST
    assert {ALLURE[o].status for o in (Outcome.CRASH, Outcome.DMESG_WARN, Outcome.FAIL)} == {"failed"}


def _category_of(status: str, message: str) -> str | None:
    """The first categories.json rule matching, as Allure 2 does (Java regex ~ Python re here)."""
    for rule in json.loads(categories_json()):
        if status in rule["matchedStatuses"] and re.fullmatch(rule["messageRegex"], message):
            return rule["name"]
    return None


@pytest.mark.parametrize("outcome, status, category", [
    (Outcome.FAIL, "failed", "Product defect: failed assertion"),
    (Outcome.CRASH, "failed", "Product defect: guest crash (panic, QEMU died)"),
    (Outcome.DMESG_WARN, "failed", "Product defect: guest kernel warnings (dmesg-warn)"),
    (Outcome.DMESG_FAIL, "failed", "Product defect: guest kernel BUG/oops (dmesg-fail)"),
    (Outcome.TIMEOUT, "broken", "Product defect: timeout (state dumped, then killed)"),
    (Outcome.INFRA, "broken", "Infrastructure: the lab could not start"),
    (Outcome.ERROR, "broken", "Test defect: the test code broke"),
])
def test_categories_match_each_outcome_once(outcome: Outcome, status: str, category: str) -> None:
    message = allure_message(outcome, "something\nwent wrong")
    assert message.startswith(f"[{outcome.value}] ")
    assert ALLURE[outcome].status == status
    matching = [r.name for r in CATEGORIES if status in r.statuses
                and re.fullmatch(r.message_regex, message)]
    assert matching == [category]
    assert _category_of(status, message) == category


def test_environment_properties_escape_and_prefix_the_snapshot() -> None:
    prov = Provenance(gpuhil_git="abc", host_kernel="6.1", qemu="1:11.1", virglrenderer="1.3",
                      mesa="25", guest_kernel="7.2", gpu_pci_ids=("1af4:1050@0000:00:02.0",))
    venus = {"capset.venus": True, "capset.venus.max_version": 0, "capset.drm": False,
             "feature.resource_blob": True, "feature.edid": False, "param.max": "a\nb"}
    text = environment_properties(prov, {"venus": venus})
    lines = text.splitlines()
    # the overview shows five entries: the summaries come first
    assert lines[0] == "stack=QEMU 1:11.1, virglrenderer 1.3, Mesa 25, guest kernel 7.2, host kernel 6.1"
    assert lines[1] == "capabilities=capsets: venus v0; features: resource_blob"
    assert "lab.qemu=1:11.1" in lines and "guest.kernel=7.2" in lines
    assert "host.gpu_pci_ids=1af4:1050@0000:00:02.0" in lines
    assert "capability.capset.venus=True" in lines
    assert "capability.param.max=a\\nb" in lines
    two = environment_properties(prov, {"venus": venus, "virgl": {"capset.virgl": True,
                                                                  "capset.virgl.max_version": 1}})
    lines = two.splitlines()
    assert lines[1:3] == ["capabilities.venus=capsets: venus v0; features: resource_blob",
                          "capabilities.virgl=capsets: virgl v1"]
    assert "capability.venus.capset.venus=True" in lines
    assert "capability.virgl.capset.virgl.max_version=1" in lines


def test_metadata_merges_every_process_fragment(tmp_path) -> None:
    """xdist: each worker adds its configuration; the lab provenance survives a guest-less
    controller finishing last; a fragment of an older gpuhil (no origin) still counts."""
    lab = Provenance(host_kernel="6.1", qemu="1:11.1", guest_kernel="7.2")
    (tmp_path / FRAGMENTS_DIR).mkdir()
    (tmp_path / FRAGMENTS_DIR / "1.json").write_text(json.dumps(
        {"provenance": asdict(lab), "snapshots": {"venus": {"capset.venus": True}}}))
    (tmp_path / FRAGMENTS_DIR / "gw1.json").write_text(json.dumps(
        {"origin": {"machine": "", "gpu": "none"}, "provenance": asdict(lab),
         "snapshots": {"virgl": {"capset.virgl": True}}}))
    write_fragment(tmp_path, RunOrigin(""), Provenance(host_kernel="6.1"), {})  # the controller
    write_environment(tmp_path)
    lines = (tmp_path / "environment.properties").read_text().splitlines()
    assert "lab.qemu=1:11.1" in lines
    assert "capability.venus.capset.venus=True" in lines and "capability.virgl.capset.virgl=True" in lines
    assert json.loads((tmp_path / "categories.json").read_text())[0]["name"].startswith("Infrastructure")


def test_environment_of_several_machines_names_each(tmp_path) -> None:
    """Merged runs: every line is under its machine's name."""
    write_fragment(tmp_path, RunOrigin("a"), Provenance(qemu="11.1"), {"venus": {"capset.venus": True}})
    write_fragment(tmp_path, RunOrigin("b x"), Provenance(qemu="10.0"), {})
    assert [r.origin.machine for r in write_environment(tmp_path)] == ["a", "b x"]
    lines = (tmp_path / "environment.properties").read_text().splitlines()
    assert "stack.a=QEMU 11.1" in lines and "stack.b_x=QEMU 10.0" in lines
    assert "capability.capset.venus.a=True" in lines


@pytest.mark.parametrize("status, message, category", [
    ("skipped", "XFAIL known bug on QEMU 11.1 (f.toml: xfail[0], seen on 11.1): bug", "Known product bug (expectation entry)"),
    ("skipped", "XFAIL known intermittent bug on QEMU 11.1 (...): bug", "Known intermittent product bug (expectation entry)"),
    ("passed", "not reproduced on QEMU 11.2 (XPASS known bug ...)", "Known bug not reproduced on a newer stack"),
    ("failed", "[fail] [XPASS(strict)] known bug on QEMU 11.1 (...): bug", "Known bug fixed? A strict expectation entry's test passed"),
    ("skipped", "Skipped: requires capset.venus", None),
])
def test_known_bugs_have_categories_of_their_own(status, message, category) -> None:
    matching = [r.name for r in CATEGORIES if status in r.statuses
                and re.fullmatch(r.message_regex, message)]
    assert matching[:1] == ([category] if category else [])


def test_host_gpu_pci_ids_reads_display_class_functions(tmp_path) -> None:
    for slot, cls, vendor, device in (("0000:00:02.0", "0x030000", "0x1af4", "0x1050"),
                                      ("0000:00:03.0", "0x020000", "0x8086", "0x100e")):
        dev = tmp_path / slot
        dev.mkdir()
        (dev / "class").write_text(cls + "\n")
        (dev / "vendor").write_text(vendor + "\n")
        (dev / "device").write_text(device + "\n")
    assert host_gpu_pci_ids(tmp_path) == ("1af4:1050@0000:00:02.0",)
