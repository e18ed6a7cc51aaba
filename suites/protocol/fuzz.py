"""Host side of the protocol fuzzer: hypothesis strategies for command batches and the oracle.

Commands are built from gpuhil.protocol dataclasses with ids drawn from small pools (so they meet
each other: a CREATE and a later UNREF of the same id), then sometimes mutated as bytes
(truncated, extended, a body byte or the type replaced).  :func:`sanitize` keeps out the
patterns that have their own regression tests (they would hang every batch).  The oracle
(:func:`expected_live_resources`) replays the answered commands to know which resources must
still exist at the end.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st

from gpuhil import protocol as P

RESOURCE_IDS = (0x300, 0x301, 0x302, 0x303)
CONTEXT_IDS = (0x30, 0x31)
HDR_SIZE = P.layout(P.CtrlType.CMD_GET_DISPLAY_INFO).size
_RING_IDX = int(P.HdrFlag.INFO_RING_IDX)
_FENCE = int(P.HdrFlag.FENCE)

ids = st.sampled_from(RESOURCE_IDS + (0,))
ctxs = st.sampled_from(CONTEXT_IDS + (0,))
dims = st.sampled_from((0, 1, 16, 64, 256, 0xFFFF_FFFF))
coords = st.sampled_from((0, 1, 8, 64, 0xFFFF_FFF0))
rects = st.builds(P.Rect, coords, coords, dims, dims)
# IOVAs the device cannot reach (the fuzzer has no DMA memory): mapping them must fail cleanly
addrs = st.sampled_from((0, 0x1000, 0x7F_0000_0000, 0xFFFF_FFFF_FFFF_F000))
entries = st.lists(st.builds(P.MemEntry, addrs, st.sampled_from((0, 4096, 0x10000))),
                   max_size=3).map(tuple)
offsets = st.sampled_from((0, 0x10000, 0x0FFF_0000, 0x1000_0000, (1 << 64) - 4096))
# fences on the global timeline only, with 32-bit ids: ring_idx timelines of unknown contexts
# and 64-bit fence ids have their own tests (they are never answered)
hdrs = st.builds(lambda fenced, fence, ctx: P.CtrlHdr(_FENCE if fenced else 0, fence, ctx, 0),
                 st.booleans(), st.integers(1, 1000), ctxs)


def _m(cls, *args):
    return st.builds(cls, *args, hdr=hdrs)


COMMANDS = st.one_of(
    _m(P.GetDisplayInfo),
    _m(P.ResourceCreate2D, ids, st.sampled_from((1, 2, 67, 0x7F)), dims, dims),
    _m(P.ResourceUnref, ids),
    _m(P.SetScanout, rects, st.sampled_from((0, 1, 16)), ids),
    _m(P.ResourceFlush, rects, ids),
    _m(P.TransferToHost2D, rects, st.sampled_from((0, 4096, 1 << 40)), ids),
    _m(P.ResourceAttachBacking, ids, entries),
    _m(P.ResourceDetachBacking, ids),
    _m(P.GetCapsetInfo, st.integers(0, 4)),
    _m(P.GetCapset, st.integers(0, 7), st.integers(0, 3)),
    _m(P.GetEdid, st.integers(0, 17)),
    _m(P.ResourceCreateBlob, ids, st.integers(0, 4), st.integers(0, 7), st.integers(0, 3),
       st.sampled_from((0, 4096, 0x10000)), entries),
    _m(P.ResourceMapBlob, ids, offsets),
    _m(P.ResourceUnmapBlob, ids),
    _m(P.CtxCreate, st.binary(max_size=8), st.sampled_from((0, 1, 2, 4, 0x7F))),
    _m(P.CtxDestroy),
    _m(P.CtxAttachResource, ids),
    _m(P.CtxDetachResource, ids),
    _m(P.Submit3D, st.sampled_from((b"", bytes(8), b"\xff" * 8))),
)


@st.composite
def requests(draw) -> bytes:
    """One command as bytes, mutated in about a third of the draws."""
    wire = bytearray(P.encode(draw(COMMANDS)))
    how = draw(st.sampled_from(("as is", "as is", "as is", "truncate", "extend", "poke",
                                "retype")))
    if how == "truncate" and len(wire) > HDR_SIZE:
        del wire[draw(st.integers(HDR_SIZE, len(wire) - 1)):]
    elif how == "extend":
        wire += draw(st.binary(min_size=1, max_size=32))
    elif how == "poke" and len(wire) > HDR_SIZE:
        at = draw(st.integers(HDR_SIZE, len(wire) - 1))
        wire[at] = draw(st.integers(0, 255))
    elif how == "retype":
        struct.pack_into("<I", wire, 0, draw(st.sampled_from((0, 0x1FF, 0x210, 0x1100, 0x300,
                                                              0xFFFF_FFFF))))
    return sanitize(bytes(wire))


batches = st.lists(requests(), min_size=1, max_size=12)
#: the device tier's batches: up to 128 commands (a length drawn first, so it shrinks too)
long_batches = st.integers(1, 128).flatmap(
    lambda n: st.lists(requests(), min_size=n, max_size=n))


_CREATE_2D = int(P.CtrlType.CMD_RESOURCE_CREATE_2D)


def sanitize(request: bytes) -> bytes:
    """Keep a request out of the patterns with their own tests: shorter than a header, fences
    on a context's ring (INFO_RING_IDX) or with ids above 32 bits, and a 2D create of width
    or height 0 (a later MAP_BLOB of that id kills QEMU: test_map_blob_after_refused_2d_create)."""
    wire = bytearray(request.ljust(HDR_SIZE, b"\0"))
    flags, fence_id = struct.unpack_from("<IQ", wire, 4)
    struct.pack_into("<IQ", wire, 4, flags & ~_RING_IDX, fence_id & 0xFFFF_FFFF)
    if struct.unpack_from("<I", wire)[0] == _CREATE_2D and len(wire) >= HDR_SIZE + 16:
        width, height = struct.unpack_from("<II", wire, HDR_SIZE + 8)
        struct.pack_into("<II", wire, HDR_SIZE + 8, width or 1, height or 1)
    return bytes(wire)


# ---- oracle -----------------------------------------------------------------------------------

_CREATES = {int(P.CtrlType.CMD_RESOURCE_CREATE_2D), int(P.CtrlType.CMD_RESOURCE_CREATE_3D),
            int(P.CtrlType.CMD_RESOURCE_CREATE_BLOB)}
_UNREF = int(P.CtrlType.CMD_RESOURCE_UNREF)
ANSWERED_OK = "RESP_OK_NODATA"
TIMEOUT = "TIMEOUT"


@dataclass(frozen=True)
class Verdict:
    """What the oracle found wrong in one batch (empty lists: nothing)."""

    unanswered: list[tuple[int, str]]       # (request index, response) never written
    state: list[str]                         # resources whose UNREF disagreed with the replay
    health: list[str]                        # follow-up commands that failed

    def __bool__(self) -> bool:
        return bool(self.unanswered or self.state or self.health)


def _complete(request: bytes, type_: int) -> bool:
    """Whether the request carries the whole fixed part of its command (a truncated one must
    not count as a creation even when the device answered OK)."""
    try:
        return len(request) >= P.layout(type_).size
    except P.ProtocolError:
        return False


def expected_live_resources(requests: list[bytes], responses: list[str]) -> set[int]:
    """Replay: the resource ids a successful CREATE made and no successful UNREF removed since
    (a TIMEOUT reset the device, which destroys every resource)."""
    live: set[int] = set()
    for request, response in zip(requests, responses):
        if response == TIMEOUT:
            live.clear()
            continue
        type_ = struct.unpack_from("<I", request)[0]
        if type_ not in _CREATES | {_UNREF} or response != ANSWERED_OK \
                or not _complete(request, type_):
            continue
        rid = struct.unpack_from("<I", request, HDR_SIZE)[0]
        if type_ in _CREATES:
            live.add(rid)
        elif type_ == _UNREF:
            live.discard(rid)
    return live


def judge(requests: list[bytes], result: dict) -> Verdict:
    """Every request answered; UNREF of each pool id agrees with the replay (OK_NODATA for the
    live ones, INVALID_RESOURCE_ID for the others); the health commands all succeed."""
    responses = result["responses"]
    unanswered = [(n, r) for n, r in enumerate(responses)
                  if r == TIMEOUT or r.startswith(("UNWRITTEN", "<"))]
    live = expected_live_resources(requests, responses)
    state = []
    for rid, got in result["unref"].items():
        want = ANSWERED_OK if rid in live else "RESP_ERR_INVALID_RESOURCE_ID"
        if got != want:
            state.append(f"UNREF {rid:#x}: {got}, expected {want}")
    health = [r for r in result["health"]
              if r not in (ANSWERED_OK, "RESP_OK_DISPLAY_INFO")]
    return Verdict(unanswered, state, health)


def describe(requests: list[bytes], result: dict) -> str:
    """The batch as lines ``type len -> response`` for a failure message."""
    lines = []
    for request, response in zip(requests, result["responses"]):
        label = P.ctrl_name(request)
        lines.append(f"{label} ({len(request)} B, {request.hex()}) -> {response}")
    return "\n".join(lines)


def regression_test(requests: list[bytes], verdict: object) -> str:
    """A ready-to-paste suite test replaying ``requests`` (the minimal failing batch)."""
    import hashlib

    digest = hashlib.sha256(b"".join(requests)).hexdigest()[:8]
    rows = "".join(f'\n        bytes.fromhex("{r.hex()}"),' for r in requests)
    first = str(verdict).splitlines()[0][:80] if str(verdict) else "fuzzer finding"
    return (f"def test_fuzz_regression_{digest}(raw_gpu, qemu_log):\n"
            f'    """Fuzzer finding ({first}): this batch must be answered and leave the '
            f'device consistent."""\n'
            f"    requests = [{rows}\n    ]\n"
            f"    result = raw_gpu.call(payloads.fuzz_batch, requests, list(fuzz.RESOURCE_IDS),\n"
            f"                          list(fuzz.CONTEXT_IDS))\n"
            f"    assert not fuzz.judge(requests, result), fuzz.describe(requests, result)\n")
