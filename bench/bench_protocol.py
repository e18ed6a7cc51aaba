"""virtio-gpu protocol encode/decode: gpuhil's C batch API vs struct.pack_into / unpack_from,
and vs a C program doing the same (bench/c/protocol_ref.c, compiled here with gcc).

The workload is a million mixed commands (12 control/cursor types, fenced headers, mem
entries, SUBMIT_3D streams, CTX_CREATE names), encoded as CHUNK commands at a time into one
buffer (a virtqueue-sized batch repeated), each message on an 8-byte boundary.  All sides
get their input prepared beforehand and are checked to produce the same bytes.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import tempfile
from array import array
from pathlib import Path

import gpuhil.protocol as P
from bench import Result, best_time

TOTAL = 1_000_000
CHUNK = 20_000
REPEATS = TOTAL // CHUNK
ALIGN = 8
HERE = Path(__file__).parent
ROOT = HERE.parent

T = P.CtrlType
HDR = "<IIQIB3x"
# (type, body format after the header, tail kind) for the mix; formats written from ABI.md
MIX = [
    (T.CMD_RESOURCE_CREATE_2D, "IIII", None),
    (T.CMD_TRANSFER_TO_HOST_2D, "IIIIQI4x", None),
    (T.CMD_RESOURCE_FLUSH, "IIIII4x", None),
    (T.CMD_SET_SCANOUT, "IIIIII", None),
    (T.CMD_SUBMIT_3D, "I4x", "trailing"),
    (T.CMD_TRANSFER_TO_HOST_3D, "IIIIIIQIIII", None),
    (T.CMD_RESOURCE_ATTACH_BACKING, "II", "trailing"),
    (T.CMD_RESOURCE_CREATE_BLOB, "IIIIQQ", None),
    (T.CMD_CTX_ATTACH_RESOURCE, "I4x", None),
    (T.CMD_RESOURCE_MAP_BLOB, "I4xQ", None),
    (T.CMD_UPDATE_CURSOR, "III4xIII4x", None),
    (T.CMD_CTX_CREATE, "II64s", "inline"),
]


def _fields(t: int, i: int) -> tuple[list[int], bytes]:
    """Scalar fields (layout order) and tail of the i-th command of type t."""
    if t == T.CMD_RESOURCE_CREATE_2D:
        return [i, P.Format.B8G8R8X8_UNORM, 64 + i % 1000, 32 + i % 500], b""
    if t == T.CMD_TRANSFER_TO_HOST_2D:
        return [i % 7, i % 11, 640, 480, i * 4096, i], b""
    if t == T.CMD_RESOURCE_FLUSH:
        return [0, 0, 1280, 800, i], b""
    if t == T.CMD_SET_SCANOUT:
        return [0, 0, 1280, 800, i % 16, i], b""
    if t == T.CMD_SUBMIT_3D:
        return [64], bytes((i + k) & 0xFF for k in range(64))
    if t == T.CMD_TRANSFER_TO_HOST_3D:
        return [0, 0, 0, 256, 256, 1, i * 65536, i, 0, 1024, 0], b""
    if t == T.CMD_RESOURCE_ATTACH_BACKING:
        return [i, 2], struct.pack("<QI4xQI4x", i << 12, 4096, (i + 1) << 12, 8192)
    if t == T.CMD_RESOURCE_CREATE_BLOB:
        return [i, P.BlobMem.HOST3D, P.BlobFlag.MAPPABLE, 0, i * 3, 1 << 20], b""
    if t == T.CMD_CTX_ATTACH_RESOURCE:
        return [i], b""
    if t == T.CMD_RESOURCE_MAP_BLOB:
        return [i, (i % 64) << 20], b""
    if t == T.CMD_UPDATE_CURSOR:
        return [0, i % 1280, i % 800, i, 8, 8], b""
    if t == T.CMD_CTX_CREATE:
        name = b"ctx-%06d" % (i % 1_000_000)
        return [len(name), P.Capset.VENUS], name
    raise AssertionError(t)


class Workload:
    """CHUNK commands in three equivalent forms: batch rows+payload (gpuhil and C) and
    (Struct, args, tail) tuples (plain Python)."""

    def __init__(self) -> None:
        self.rows = array("Q", bytes(8 * P.ROW_WIDTH * CHUNK))
        self.payload = bytearray()
        self.py: list[tuple[struct.Struct, tuple, bytes]] = []
        structs = {t: struct.Struct(HDR + body) for t, body, _ in MIX}
        self.py_decode = {int(t): (structs[t], kind == "trailing") for t, _, kind in MIX}
        size = 0
        for i in range(CHUNK):
            t, _, kind = MIX[i % len(MIX)]
            fields, tail = _fields(t, i)
            hdr = [int(t), P.HdrFlag.FENCE, i, 1 + i % 4, 0]
            base = i * P.ROW_WIDTH
            self.rows[base:base + 7] = array("Q", hdr + [len(self.payload), len(tail)])
            self.rows[base + 7:base + 7 + len(fields)] = array("Q", fields)
            self.payload += tail
            if kind == "inline":
                self.py.append((structs[t], (*hdr, *fields, tail), b""))  # name packed by "64s"
            else:
                self.py.append((structs[t], (*hdr, *fields), tail))
            size += (structs[t].size + (len(tail) if kind == "trailing" else 0) + ALIGN - 1) \
                & ~(ALIGN - 1)
        self.size = size
        self.offsets = array("I", bytes(4 * CHUNK))
        self.lengths = array("I", bytes(4 * CHUNK))
        self.out = bytearray(size)
        self.py_out = bytearray(size)
        self.decoded = array("Q", bytes(8 * P.ROW_WIDTH * CHUNK))


def encode_gpuhil(w: Workload) -> None:
    for _ in range(REPEATS):
        P.encode_batch(w.out, w.rows, w.payload, w.offsets, w.lengths, align=ALIGN)


def encode_python(w: Workload) -> None:
    buf = w.py_out
    for _ in range(REPEATS):
        off = 0
        for s, args, tail in w.py:
            s.pack_into(buf, off, *args)
            n = s.size
            if tail:
                buf[off + n:off + n + len(tail)] = tail
                n += len(tail)
            off = (off + n + 7) & ~7


def decode_gpuhil(w: Workload) -> None:
    for _ in range(REPEATS):
        P.decode_batch(w.out, w.offsets, w.lengths, w.decoded)


def decode_python(w: Workload) -> list:
    buf = w.out
    view = memoryview(buf)
    table = w.py_decode
    type_of = struct.Struct("<I").unpack_from
    for _ in range(REPEATS):
        out = []
        append = out.append
        for off, n in zip(w.offsets, w.lengths):
            s, trailing = table[type_of(buf, off)[0]]
            values = s.unpack_from(buf, off)
            append((values, view[off + s.size:off + n]) if trailing else values)
    return out


def encode_typed(w: Workload, msgs: list[P.Message]) -> None:
    """The convenient path: typed dataclasses appended one by one, then one C encode."""
    batch = P.CommandBatch(len(msgs))
    for m in msgs:
        batch.append(m)
    batch.encode_into(w.out, align=ALIGN)


def run_c(w: Workload) -> tuple[float, float] | None:
    """ns per command (encode, decode) of bench/c/protocol_ref.c, or None without gcc."""
    gcc = shutil.which("gcc")
    if not gcc:
        print("  gcc not found: no C reference")
        return None
    with tempfile.TemporaryDirectory(prefix="gpuhil-bench-") as tmp:
        exe, rows, payload, out = (os.path.join(tmp, n) for n in ("ref", "rows", "payload", "out"))
        subprocess.run([gcc, "-O2", "-o", exe, str(HERE / "c" / "protocol_ref.c"),
                        f"-I{ROOT / '_ext' / 'include'}"], check=True)
        Path(rows).write_bytes(w.rows.tobytes())
        Path(payload).write_bytes(bytes(w.payload))
        res = subprocess.run([exe, rows, payload, str(CHUNK), str(REPEATS), str(w.size), out],
                             check=True, capture_output=True, text=True)
        if Path(out).read_bytes() != bytes(w.out):
            raise AssertionError("the C reference encoded different bytes than gpuhil")
        enc, dec = (float(x) for x in res.stdout.split()[:2])
        return enc * 1e-9, dec * 1e-9


def main() -> list[Result]:
    w = Workload()
    encode_gpuhil(w)
    encode_python(w)
    if w.out != w.py_out:
        raise AssertionError("struct.pack_into baseline and gpuhil encoded different bytes")
    d = P.decode_batch(w.out, w.offsets, w.lengths)
    assert [d.type(i) for i in range(0, CHUNK, 997)] == [w.rows[i * P.ROW_WIDTH]
                                                          for i in range(0, CHUNK, 997)]
    print(f"  {TOTAL} mixed commands ({len(MIX)} types), {CHUNK} per batch, "
          f"{w.size} bytes per batch", flush=True)
    per = 1 / (REPEATS * CHUNK)
    enc = best_time(lambda: encode_gpuhil(w)) * per
    enc_py = best_time(lambda: encode_python(w)) * per
    dec = best_time(lambda: decode_gpuhil(w)) * per
    dec_py = best_time(lambda: decode_python(w)) * per
    msgs = list(d.messages())
    typed = best_time(lambda: encode_typed(w, msgs)) / CHUNK
    results = [
        Result("protocol", "encode_batch (1M mixed)", enc, enc_py, "struct.pack_into", 10.0),
        Result("protocol", "decode_batch (1M mixed)", dec, dec_py, "struct.unpack_from", 10.0),
        # informative: per-message dataclass convenience, not the fast path
        Result("protocol", "CommandBatch.append(dataclass)", typed, enc_py, "struct.pack_into"),
    ]
    c = run_c(w)
    if c:
        # here the ratio is C time / ours: 1.0 means as fast as C
        results.append(Result("protocol", "encode_batch vs C", enc, c[0], "C (gcc -O2)"))
        results.append(Result("protocol", "decode_batch vs C", dec, c[1], "C (gcc -O2)"))
    return results


if __name__ == "__main__":
    for r in main():
        print(r.line())
    sys.exit(0)
