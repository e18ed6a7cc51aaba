# The nogil cores that encode and decode one row, and the ProtocolError they turn into.
# Included by protocol.pyx.

# ---------------------------------------------------------------- nogil cores

cdef int _encode_row(unsigned char* out, Py_ssize_t cap, const uint64_t* row,
                     const unsigned char* payload, Py_ssize_t payload_len,
                     Py_ssize_t* written) noexcept nogil:
    """Encode one row at out (cap bytes available); store the message length in written."""
    cdef uint32_t t = <uint32_t>row[COL_TYPE]
    if row[COL_TYPE] >> 32:
        return E_RANGE
    cdef int idx = _lookup(t)
    if idx < 0:
        return E_UNKNOWN_TYPE
    cdef const Layout* L = &_layouts[idx]
    cdef uint64_t tail_off = row[COL_TAIL_OFF], tail_len = row[COL_TAIL_LEN]
    cdef Py_ssize_t total = L.size
    if tail_len:
        if tail_off > <uint64_t>payload_len or tail_len > <uint64_t>payload_len - tail_off:
            return E_PAYLOAD
        if L.tail_kind == TAIL_TRAILING_:
            total += <Py_ssize_t>tail_len
        elif L.tail_kind != TAIL_INLINE_ or tail_len > L.tail_max:
            return E_TAIL_TOO_LONG
    if total > cap:
        return E_SPACE
    if (row[COL_FLAGS] >> 32) or (row[COL_CTX_ID] >> 32) or row[COL_RING_IDX] > 0xff:
        return E_RANGE
    memset(out, 0, L.size)
    _put32(out, t)
    _put32(out + 4, <uint32_t>row[COL_FLAGS])
    _put64(out + 8, row[COL_FENCE_ID])
    _put32(out + 16, <uint32_t>row[COL_CTX_ID])
    out[20] = <uint8_t>row[COL_RING_IDX]
    cdef uint32_t j
    cdef uint64_t v
    for j in range(L.nfields):
        v = row[COL_FIELDS + j]
        if L.width[j] == 4:
            if v >> 32:
                return E_RANGE
            _put32(out + L.off[j], <uint32_t>v)
        else:
            _put64(out + L.off[j], v)
    if tail_len:
        memcpy(out + L.tail_offset, payload + tail_off, tail_len)
    written[0] = total
    return E_OK


cdef int _decode_row(const unsigned char* src, Py_ssize_t base, Py_ssize_t length,
                     uint64_t* row, bint strict) noexcept nogil:
    """Decode the message src[base:base+length] into row (tail_off is relative to src)."""
    cdef const unsigned char* p = src + base
    if length < HDR_SIZE:
        return E_SHORT_HEADER
    cdef uint32_t t = _get32(p)
    cdef int idx = _lookup(t)
    if idx < 0:
        return E_UNKNOWN_TYPE
    cdef const Layout* L = &_layouts[idx]
    if length < <Py_ssize_t>L.size:
        return E_SHORT
    row[COL_TYPE] = t
    row[COL_FLAGS] = _get32(p + 4)
    row[COL_FENCE_ID] = _get64(p + 8)
    row[COL_CTX_ID] = _get32(p + 16)
    row[COL_RING_IDX] = p[20]
    cdef uint32_t j
    for j in range(L.nfields):
        if L.width[j] == 4:
            row[COL_FIELDS + j] = _get32(p + L.off[j])
        else:
            row[COL_FIELDS + j] = _get64(p + L.off[j])
    for j in range(L.nfields, <uint32_t>MAX_FIELDS):
        row[COL_FIELDS + j] = 0
    cdef uint64_t avail = <uint64_t>(length - L.size), need
    row[COL_TAIL_OFF] = <uint64_t>base + L.tail_offset
    if L.tail_kind == TAIL_INLINE_:
        row[COL_TAIL_LEN] = L.tail_max
    elif L.tail_kind == TAIL_TRAILING_:
        if L.count_field >= 0:
            need = row[COL_FIELDS + L.count_field] * L.unit
            if need != avail and (strict or need > avail):
                if strict:
                    return E_LENGTH
                need = avail - avail % L.unit
            row[COL_TAIL_LEN] = need
            return E_OK
        row[COL_TAIL_LEN] = avail
        return E_OK
    else:
        row[COL_TAIL_OFF] = 0
        row[COL_TAIL_LEN] = 0
    if strict and avail:
        return E_LENGTH
    return E_OK


# ---------------------------------------------------------------- errors

cdef str _type_name(uint64_t t):
    name = TYPE_NAMES.get(t)
    return f"{name} ({t:#06x})" if name else f"unknown type {t:#06x}"


cdef _raise(int code, const uint64_t* row, Py_ssize_t length, Py_ssize_t index,
            Py_ssize_t extra=0):
    """Raise the ProtocolError for a core's error code (extra: the count field or the size
    needed); imported here, not at the top, because gpuhil.protocol.constants imports this
    module."""
    from gpuhil.protocol.constants import ProtocolError
    cdef uint64_t t = row[COL_TYPE]
    where = f"message {index}: " if index >= 0 else ""
    layout = LAYOUTS.get(t)
    expected = layout[1] if layout else None
    if code == E_UNKNOWN_TYPE:
        msg = f"{_type_name(t)}: not a virtio-gpu control type ({length} bytes)"
    elif code == E_SHORT_HEADER:
        msg = f"{length} bytes: shorter than struct virtio_gpu_ctrl_hdr ({HDR_SIZE} bytes)"
        expected = HDR_SIZE
    elif code == E_SHORT:
        msg = f"{_type_name(t)}: {length} bytes, struct {layout[0]} needs {expected}"
    elif code == E_LENGTH:
        if layout[7]:
            msg = (f"{_type_name(t)}: {length} bytes, but {layout[7]}={extra} "
                   f"means {expected + extra * layout[8]}")
            expected = expected + extra * layout[8]
        else:
            msg = (f"{_type_name(t)}: {length} bytes, struct {layout[0]} is {expected} "
                   f"(trailing bytes)")
    elif code == E_SPACE:
        msg = f"{_type_name(t)}: needs {extra} bytes, {length} left in the buffer"
        expected = extra
    elif code == E_PAYLOAD:
        msg = (f"{_type_name(t)}: tail [{row[COL_TAIL_OFF]}:+{row[COL_TAIL_LEN]}] is outside "
               f"the payload ({length} bytes)")
    elif code == E_TAIL_TOO_LONG:
        cap = layout[6] if layout and layout[3] == TAIL_INLINE_ else 0
        msg = f"{_type_name(t)}: tail of {row[COL_TAIL_LEN]} bytes, room for {cap}"
    else:
        struct = layout[0] if layout else "?"
        msg = f"{_type_name(t)}: a value does not fit its field (u32/u8) in struct {struct}"
    known_type = code != E_SHORT_HEADER or length >= 4
    raise ProtocolError(where + msg, type=int(row[COL_TYPE]) if known_type else None,
                        size=length, expected=expected, index=index if index >= 0 else None)
