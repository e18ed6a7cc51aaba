"""virtio-gpu device protocol (linux/virtio_gpu.h) encode/decode core, table driven, in C.

Every control/cursor command and every response is described by one `Layout` built here
from the C structs of gpuhil_uapi.h (sizes and offsets computed by the compiler): its fixed
size, its scalar fields in wire order (offset, width), and an optional tail (bytes inside the
struct such as ctx_create.debug_name, or bytes after it such as attach_backing's mem
entries).  One message is one *row* of ROW_WIDTH uint64 values:

    [type, flags, fence_id, ctx_id, ring_idx, tail_off, tail_len, field0 .. field16]

`encode_batch` turns rows (plus a payload buffer the tails point into) into wire messages in
one preallocated buffer; `decode_batch` does the reverse, pointing the tails into the source
buffer.  `encode_one` / `decode_one` are the per-message entry points that gpuhil.protocol
wraps in dataclasses.  Errors are ProtocolError (gpuhil.protocol.constants) naming type and sizes.

This file holds the types, the table storage and its helpers; the parts are included:
protocol_layouts.pxi (the layout table), protocol_constants.pxi (ABI constants),
protocol_cores.pxi (the nogil cores and their errors), protocol_api.pxi (the entry points).
"""
from libc.stdint cimport int16_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from virtio_gpu cimport *

cdef extern from "<endian.h>" nogil:
    uint32_t htole32(uint32_t)
    uint64_t htole64(uint64_t)
    uint32_t le32toh(uint32_t)
    uint64_t le64toh(uint64_t)

cdef enum:
    MAX_FIELDS = 17
    MAX_LAYOUTS = 48
    COL_TYPE = 0
    COL_FLAGS = 1
    COL_FENCE_ID = 2
    COL_CTX_ID = 3
    COL_RING_IDX = 4
    COL_TAIL_OFF = 5
    COL_TAIL_LEN = 6
    COL_FIELDS = 7
    ROW_WIDTH_ = 24
    TAIL_NONE_ = 0
    TAIL_INLINE_ = 1
    TAIL_TRAILING_ = 2

# error codes of the nogil cores
cdef enum:
    E_OK = 0
    E_UNKNOWN_TYPE = 1
    E_SHORT = 2
    E_LENGTH = 3
    E_SPACE = 4
    E_PAYLOAD = 5
    E_TAIL_TOO_LONG = 6
    E_RANGE = 7
    E_SHORT_HEADER = 8

ROW_WIDTH = ROW_WIDTH_
FIRST_FIELD_COLUMN = COL_FIELDS
MAX_SCALAR_FIELDS = MAX_FIELDS
TAIL_NONE = TAIL_NONE_
TAIL_INLINE = TAIL_INLINE_
TAIL_TRAILING = TAIL_TRAILING_

cdef struct Layout:
    uint32_t type
    uint32_t size
    uint32_t nfields
    uint16_t off[MAX_FIELDS]
    uint8_t width[MAX_FIELDS]
    uint8_t tail_kind
    uint32_t tail_offset
    uint32_t tail_max        # TAIL_INLINE: size of the region inside the struct
    int32_t count_field      # TAIL_TRAILING: field index holding the element count, -1: none
    uint32_t unit            # TAIL_TRAILING: bytes per counted element

cdef Layout _layouts[MAX_LAYOUTS]
cdef int _nlayouts = 0
cdef int16_t _lut[0x13][16]     # [type >> 8][type & 0xff] -> layout index or -1
cdef Py_ssize_t HDR_SIZE = sizeof(virtio_gpu_ctrl_hdr)

#: Python view of the table: type -> (struct, size, fields, tail_kind, tail_name, tail_offset,
#: tail_max, count_field_name, unit); fields are (name, offset, width) in wire order.
LAYOUTS = {}
#: C expression (canonical Linux 7.2 uapi names) -> value compiled into this module.
ABI = {}
#: control type value -> uapi name without the VIRTIO_GPU_ prefix
TYPE_NAMES = {}


cdef inline int _lookup(uint32_t t) noexcept nogil:
    cdef uint32_t hi = t >> 8, lo = t & 0xff
    if hi >= 0x13 or lo >= 16 or (t >> 16) != 0:
        return -1
    return _lut[hi][lo]


cdef inline void _put32(unsigned char* p, uint32_t v) noexcept nogil:
    v = htole32(v)
    memcpy(p, &v, 4)


cdef inline void _put64(unsigned char* p, uint64_t v) noexcept nogil:
    v = htole64(v)
    memcpy(p, &v, 8)


cdef inline uint32_t _get32(const unsigned char* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return le32toh(v)


cdef inline uint64_t _get64(const unsigned char* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return le64toh(v)


cdef Py_ssize_t _off(void* base, void* member):
    return <char*>member - <char*>base


cdef _abi_struct(str struct, Py_ssize_t size):
    ABI[f"sizeof(struct {struct})"] = size


cdef _abi_off(str struct, str member, Py_ssize_t off):
    ABI[f"offsetof(struct {struct}, {member})"] = off


def _register(uint32_t t, str struct, Py_ssize_t size, list fields, int tail_kind=TAIL_NONE_,
               str tail_name=None, Py_ssize_t tail_offset=0, Py_ssize_t tail_max=0,
               str count=None, uint32_t unit=0):
    """Add the layout of control type t; fields are (name, offset, width) in wire order."""
    global _nlayouts
    cdef Layout* L = &_layouts[_nlayouts]
    cdef int i
    assert len(fields) <= MAX_FIELDS and _nlayouts < MAX_LAYOUTS
    memset(L, 0, sizeof(Layout))
    L.type = t
    L.size = <uint32_t>size
    L.nfields = len(fields)
    L.count_field = -1
    for i, (name, off, width) in enumerate(fields):
        assert width in (4, 8), (struct, name, width)
        L.off[i] = off
        L.width[i] = width
        _abi_off(struct, name, off)
        if name == count:
            L.count_field = i
    L.tail_kind = tail_kind
    L.tail_offset = <uint32_t>(size if tail_kind == TAIL_TRAILING_ else tail_offset)
    L.tail_max = <uint32_t>tail_max
    L.unit = unit
    if tail_kind == TAIL_INLINE_:
        _abi_off(struct, tail_name, tail_offset)
        ABI[f"sizeof(((struct {struct} *)0)->{tail_name})"] = tail_max
    _abi_struct(struct, size)
    _lut[t >> 8][t & 0xff] = _nlayouts
    _nlayouts += 1
    LAYOUTS[t] = (struct, size, tuple(fields), tail_kind, tail_name, L.tail_offset, tail_max,
                  count, unit)


cdef list _rect(str prefix, void* base, virtio_gpu_rect* r):
    return [(f"{prefix}.x", _off(base, &r.x), sizeof(r.x)),
            (f"{prefix}.y", _off(base, &r.y), sizeof(r.y)),
            (f"{prefix}.width", _off(base, &r.width), sizeof(r.width)),
            (f"{prefix}.height", _off(base, &r.height), sizeof(r.height))]




include "protocol_layouts.pxi"
include "protocol_constants.pxi"

_build_layouts()
_build_constants()
del _register   # the table is complete; nothing may change it afterwards


include "protocol_cores.pxi"
include "protocol_api.pxi"
