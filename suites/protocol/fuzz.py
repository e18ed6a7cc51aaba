"""Host side of the protocol fuzzer: hypothesis strategies for command batches and the oracle.

Hypothesis draws :data:`DRAW_SIZE` bytes per command and :func:`decode` builds it from them: a
gpuhil.protocol dataclass with ids from small pools (so commands meet each other: a CREATE and a
later UNREF of the same id), sometimes mutated as bytes (truncated, extended, a body byte or
the type replaced).  One fixed-size draw per command keeps generation cheap (about ten times
the commands per second of a draw per field, which the device tier's at-scale runs need) and
shrinks towards all-zero draws, i.e. GET_DISPLAY_INFO.  :func:`sanitize` keeps out the
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

# Pools the decoder picks from (a byte of the draw, modulo the pool's length).
_IDS = RESOURCE_IDS + (0,)
_CTXS = (0,) + CONTEXT_IDS  # 0 first: an all-zero draw has no context
_DIMS = (0, 1, 16, 64, 256, 0xFFFF_FFFF)
_COORDS = (0, 1, 8, 64, 0xFFFF_FFF0)
# IOVAs the device cannot reach (the fuzzer has no DMA memory): mapping them must fail cleanly
_ADDRS = (0, 0x1000, 0x7F_0000_0000, 0xFFFF_FFFF_FFFF_F000)
_LENGTHS = (0, 4096, 0x10000)
_OFFSETS = (0, 0x10000, 0x0FFF_0000, 0x1000_0000, (1 << 64) - 4096)
_RETYPES = (0, 0x1FF, 0x210, 0x1100, 0x300, 0xFFFF_FFFF)
#: bytes one command is decoded from: kind, header (3), fields (12), mutation (8)
DRAW_SIZE = 24


def _pick(pool: tuple, byte: int):
    return pool[byte % len(pool)]


def _rect(b: bytes) -> P.Rect:
    return P.Rect(_pick(_COORDS, b[0]), _pick(_COORDS, b[1]), _pick(_DIMS, b[2]),
                  _pick(_DIMS, b[3]))


def _entries(b: bytes) -> tuple:
    return tuple(P.MemEntry(_pick(_ADDRS, b[1 + i]), _pick(_LENGTHS, b[1 + i] >> 4))
                 for i in range(b[0] % 4))


#: one builder per command kind: (12 field bytes, header) -> the command
BUILDERS = (
    lambda b, h: P.GetDisplayInfo(hdr=h),
    lambda b, h: P.ResourceCreate2D(_pick(_IDS, b[0]), _pick((1, 2, 67, 0x7F), b[1]),
                                    _pick(_DIMS, b[2]), _pick(_DIMS, b[3]), hdr=h),
    lambda b, h: P.ResourceUnref(_pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.SetScanout(_rect(b[1:5]), _pick((0, 1, 16), b[5]), _pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.ResourceFlush(_rect(b[1:5]), _pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.TransferToHost2D(_rect(b[1:5]), _pick((0, 4096, 1 << 40), b[5]),
                                    _pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.ResourceAttachBacking(_pick(_IDS, b[0]), _entries(b[1:5]), hdr=h),
    lambda b, h: P.ResourceDetachBacking(_pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.GetCapsetInfo(b[0] % 5, hdr=h),
    lambda b, h: P.GetCapset(b[0] % 8, b[1] % 4, hdr=h),
    lambda b, h: P.GetEdid(b[0] % 18, hdr=h),
    lambda b, h: P.ResourceCreateBlob(_pick(_IDS, b[0]), b[1] % 5, b[2] % 8, b[3] % 4,
                                      _pick(_LENGTHS, b[4]), _entries(b[5:9]), hdr=h),
    lambda b, h: P.ResourceMapBlob(_pick(_IDS, b[0]), _pick(_OFFSETS, b[1]), hdr=h),
    lambda b, h: P.ResourceUnmapBlob(_pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.CtxCreate(bytes(b[1:1 + b[0] % 9]), _pick((0, 1, 2, 4, 0x7F), b[9]), hdr=h),
    lambda b, h: P.CtxDestroy(hdr=h),
    lambda b, h: P.CtxAttachResource(_pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.CtxDetachResource(_pick(_IDS, b[0]), hdr=h),
    lambda b, h: P.Submit3D(_pick((b"", bytes(8), b"\xff" * 8), b[0]), hdr=h),
)


def decode(draw: bytes) -> bytes:
    """One command's wire bytes from :data:`DRAW_SIZE` drawn bytes (all zero: GET_DISPLAY_INFO
    as is, which is where hypothesis shrinks to): a kind, a header (fenced or not, a 32-bit
    fence id, a context from the pool), fields from the pools, and in about a third of the
    draws a mutation of the bytes (truncated, extended, a body byte or the type replaced)."""
    b = draw.ljust(DRAW_SIZE, b"\0")
    fenced = b[1] & 1
    hdr = P.CtrlHdr(_FENCE if fenced else 0, 1 + (b[2] | b[1] >> 1 << 8) % 1000 if fenced else 0,
                    _pick(_CTXS, b[3]), 0)
    wire = bytearray(P.encode(_pick(BUILDERS, b[0])(b[4:16], hdr)))
    how, x, y = b[16] % 7, b[17], b[18]
    body = len(wire) - HDR_SIZE
    if how == 3 and body > 0:      # truncate
        del wire[HDR_SIZE + x % body:]
    elif how == 4:                 # extend
        wire += b[19:19 + 1 + x % 5] * (1 + y % 6)
    elif how == 5 and body > 0:    # poke a body byte
        wire[HDR_SIZE + x % body] = y
    elif how == 6:                 # retype
        struct.pack_into("<I", wire, 0, _pick(_RETYPES, x))
    return sanitize(bytes(wire))


requests = st.binary(min_size=DRAW_SIZE, max_size=DRAW_SIZE).map(decode)
batches = st.lists(requests, min_size=1, max_size=12)


def decode_all(draws: bytes) -> list[bytes]:
    """A batch from one draw: :func:`decode` of each :data:`DRAW_SIZE` bytes in turn."""
    return [decode(draws[i:i + DRAW_SIZE]) for i in range(0, len(draws), DRAW_SIZE)]


#: the device tier's batches: up to 128 commands, a length drawn first (so it shrinks too) and
#: then all their bytes as one draw (a draw per command costs hypothesis 3x the time: 18k
#: against 52k generated commands/s on this machine)
long_batches = st.integers(1, 128).flatmap(
    lambda n: st.binary(min_size=n * DRAW_SIZE, max_size=n * DRAW_SIZE)).map(decode_all)


_CREATE_2D = int(P.CtrlType.CMD_RESOURCE_CREATE_2D)


_MAP_BLOB = int(P.CtrlType.CMD_RESOURCE_MAP_BLOB)
#: bit of a resource id that 2D creates always set and MAP_BLOB never does (see sanitize)
_BIT_2D = 0x2


def sanitize(request: bytes) -> bytes:
    """Keep a request out of the patterns with their own tests: shorter than a header, fences
    on a context's ring (INFO_RING_IDX) or with ids above 32 bits, and MAP_BLOB of an id a 2D
    create used (a refused 2D create followed by MAP_BLOB of its id kills QEMU:
    test_map_blob_after_refused_2d_create), by giving 2D creates ids with bit 1 set (0x302,
    0x303) and MAP_BLOB ids with it clear (0x300, 0x301).  Every create's id stays in the pool
    (or 0), so a batch's teardown destroys whatever it made and the next batch can run on the
    same device."""
    wire = bytearray(request.ljust(HDR_SIZE, b"\0"))
    flags, fence_id = struct.unpack_from("<IQ", wire, 4)
    struct.pack_into("<IQ", wire, 4, flags & ~_RING_IDX, fence_id & 0xFFFF_FFFF)
    type_ = struct.unpack_from("<I", wire)[0]
    if type_ in _CREATES | {_MAP_BLOB} and len(wire) >= HDR_SIZE + 4:
        rid = struct.unpack_from("<I", wire, HDR_SIZE)[0]
        if rid and rid not in RESOURCE_IDS:  # a poked id: created ids stay in the pool
            rid = RESOURCE_IDS[rid % len(RESOURCE_IDS)]
        if rid:
            rid = rid | _BIT_2D if type_ == _CREATE_2D else rid & ~_BIT_2D \
                if type_ == _MAP_BLOB else rid
        struct.pack_into("<I", wire, HDR_SIZE, rid)
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
            f"    result = raw_gpu.call(fuzz_payload.fuzz_batch, requests, list(fuzz.RESOURCE_IDS),\n"
            f"                          list(fuzz.CONTEXT_IDS))\n"
            f"    assert not fuzz.judge(requests, result), fuzz.describe(requests, result)\n")
