# The Python entry points: one message, one row, batches, the config space.  Included by
# protocol.pyx.

# ---------------------------------------------------------------- Python entry points

def encode_one(unsigned char[::1] out, Py_ssize_t offset, uint32_t type, uint32_t flags,
               uint64_t fence_id, uint32_t ctx_id, uint32_t ring_idx, fields,
               const unsigned char[::1] tail=None) -> int:
    """Encode one message at out[offset:]; return its length in bytes.

    fields are the scalar wire fields in layout order (missing ones are 0); tail is the
    inline or trailing bytes (LAYOUTS tells which).  Counts (nr_entries, size, nlen) are
    ordinary fields: the caller sets them, so they can disagree with the tail on purpose.
    """
    cdef uint64_t row[ROW_WIDTH_]
    cdef Py_ssize_t written = 0, n = len(fields), i
    cdef int rc
    if offset < 0 or offset > out.shape[0]:
        raise IndexError(f"offset {offset} outside a buffer of {out.shape[0]} bytes")
    if n > MAX_FIELDS:
        raise ValueError(f"{n} fields, at most {MAX_FIELDS}")
    memset(row, 0, sizeof(row))
    row[COL_TYPE] = type
    row[COL_FLAGS] = flags
    row[COL_FENCE_ID] = fence_id
    row[COL_CTX_ID] = ctx_id
    row[COL_RING_IDX] = ring_idx
    for i in range(n):
        row[COL_FIELDS + i] = <uint64_t>fields[i]
    cdef const unsigned char* pp = NULL
    cdef Py_ssize_t plen = 0
    if tail is not None and tail.shape[0]:
        pp = &tail[0]
        plen = tail.shape[0]
        row[COL_TAIL_LEN] = plen
    rc = _encode_row(&out[0] + offset if out.shape[0] else NULL, out.shape[0] - offset, row,
                     pp, plen, &written)
    if rc:
        _raise(rc, row, out.shape[0] - offset if rc == E_SPACE else plen, -1,
               _needed(row, plen))
    return written


cdef Py_ssize_t _needed(const uint64_t* row, Py_ssize_t tail_len):
    idx = _lookup(<uint32_t>row[COL_TYPE])
    if idx < 0:
        return 0
    return _layouts[idx].size + (tail_len if _layouts[idx].tail_kind == TAIL_TRAILING_ else 0)


def decode_one(const unsigned char[::1] src, Py_ssize_t offset=0, Py_ssize_t length=-1,
               bint strict=True):
    """Decode the message at src[offset:offset+length] (length -1: to the end).

    Returns (type, flags, fence_id, ctx_id, ring_idx, tail_off, tail_len, fields) with
    tail_off relative to src and fields a tuple in layout order.
    """
    cdef uint64_t row[ROW_WIDTH_]
    cdef Py_ssize_t size = src.shape[0]
    if length < 0:
        length = size - offset
    if offset < 0 or offset + length > size:
        raise IndexError(f"[{offset}:+{length}] outside a buffer of {size} bytes")
    memset(row, 0, sizeof(row))
    if length >= 4:
        row[COL_TYPE] = _get32(&src[offset])
    cdef int rc = _decode_row(&src[0] if size else NULL, offset, length, row, strict)
    if rc:
        _raise(rc, row, length, -1, row[COL_FIELDS + _count_index(row)] if rc == E_LENGTH else 0)
    idx = _lookup(<uint32_t>row[COL_TYPE])
    nf = _layouts[idx].nfields
    return (row[0], row[1], row[2], row[3], row[4], row[5], row[6],
            tuple([row[COL_FIELDS + i] for i in range(nf)]))


cdef int _count_index(const uint64_t* row) noexcept:
    idx = _lookup(<uint32_t>row[COL_TYPE])
    if idx < 0 or _layouts[idx].count_field < 0:
        return 0
    return _layouts[idx].count_field


def set_row(uint64_t[::1] rows, Py_ssize_t index, uint64_t type, uint64_t flags,
            uint64_t fence_id, uint64_t ctx_id, uint64_t ring_idx, uint64_t tail_off,
            uint64_t tail_len, fields) -> None:
    """Fill row `index` of a flat rows buffer (the per-message path of CommandBatch)."""
    cdef Py_ssize_t n = len(fields), i, base = index * ROW_WIDTH_
    if index < 0 or base + ROW_WIDTH_ > rows.shape[0]:
        raise IndexError(f"row {index} outside {rows.shape[0] // ROW_WIDTH_} rows")
    if n > MAX_FIELDS:
        raise ValueError(f"{n} fields, a row holds {MAX_FIELDS}")
    cdef uint64_t* r = &rows[base]
    for i in range(n):
        r[COL_FIELDS + i] = <uint64_t>fields[i]
    for i in range(n, MAX_FIELDS):
        r[COL_FIELDS + i] = 0
    r[COL_TYPE] = type
    r[COL_FLAGS] = flags
    r[COL_FENCE_ID] = fence_id
    r[COL_CTX_ID] = ctx_id
    r[COL_RING_IDX] = ring_idx
    r[COL_TAIL_OFF] = tail_off
    r[COL_TAIL_LEN] = tail_len


def encode_batch(unsigned char[::1] out, const uint64_t[::1] rows,
                 const unsigned char[::1] payload=None, uint32_t[::1] offsets=None,
                 uint32_t[::1] lengths=None, Py_ssize_t start=0, Py_ssize_t align=8) -> int:
    """Encode len(rows) // ROW_WIDTH messages into out, one after the other from start.

    rows is a flat uint64 buffer (e.g. array('Q')) of ROW_WIDTH columns per message; the
    tails are (tail_off, tail_len) slices of payload.  Each message starts on an `align`
    boundary.  offsets[i] / lengths[i] (uint32 buffers of at least n entries) receive where
    message i went.  Returns the end offset (bytes used from 0).  Raises ProtocolError naming
    the message index on the first bad row; the buffer is then partly written.
    """
    cdef Py_ssize_t n = rows.shape[0] // ROW_WIDTH_, i, pos = start, written = 0
    cdef Py_ssize_t cap = out.shape[0], plen = 0
    cdef const unsigned char* pp = NULL
    cdef unsigned char* op = &out[0] if cap else NULL
    cdef int rc = 0
    if rows.shape[0] % ROW_WIDTH_:
        raise ValueError(f"rows holds {rows.shape[0]} values, not a multiple of {ROW_WIDTH_}")
    if offsets is None or lengths is None or offsets.shape[0] < n or lengths.shape[0] < n:
        raise ValueError(f"offsets and lengths need room for {n} entries")
    if align < 1 or (align & (align - 1)):
        raise ValueError(f"align must be a power of two, not {align}")
    if payload is not None and payload.shape[0]:
        pp = &payload[0]
        plen = payload.shape[0]
    if n == 0:
        return start
    cdef const uint64_t* rp = &rows[0]
    with nogil:
        for i in range(n):
            pos = (pos + align - 1) & ~(align - 1)
            if pos > cap:
                rc = E_SPACE
                break
            rc = _encode_row(op + pos, cap - pos, rp + i * ROW_WIDTH_, pp, plen, &written)
            if rc:
                break
            offsets[i] = <uint32_t>pos
            lengths[i] = <uint32_t>written
            pos += written
    if rc:
        _raise(rc, rp + i * ROW_WIDTH_, max(cap - pos, 0) if rc == E_SPACE else plen, i,
               _needed(rp + i * ROW_WIDTH_, rp[i * ROW_WIDTH_ + COL_TAIL_LEN]))
    return pos


def decode_batch(const unsigned char[::1] src, const uint32_t[::1] offsets,
                 const uint32_t[::1] lengths, uint64_t[::1] rows, bint strict=True) -> int:
    """Decode the messages src[offsets[i]:+lengths[i]] into rows (ROW_WIDTH per message).

    tail_off/tail_len of each row locate its tail (entries, command stream, capset data,
    debug_name, edid, uuid, pmodes) inside src.  Returns the number of messages decoded;
    raises ProtocolError naming the index of the first message that does not parse.
    """
    cdef Py_ssize_t n = offsets.shape[0], i, size = src.shape[0]
    cdef int rc = 0
    cdef uint64_t o, l
    if lengths.shape[0] != n:
        raise ValueError(f"{n} offsets but {lengths.shape[0]} lengths")
    if rows.shape[0] < n * ROW_WIDTH_:
        raise ValueError(f"rows needs {n * ROW_WIDTH_} values, has {rows.shape[0]}")
    if n == 0:
        return 0
    cdef const unsigned char* sp = &src[0] if size else NULL
    cdef uint64_t* rp = &rows[0]
    with nogil:
        for i in range(n):
            o = offsets[i]
            l = lengths[i]
            if o + l > <uint64_t>size:
                rc = -1
                break
            rp[i * ROW_WIDTH_] = _get32(sp + o) if l >= 4 else 0
            rc = _decode_row(sp, o, l, rp + i * ROW_WIDTH_, strict)
            if rc:
                break
    if rc == -1:
        raise IndexError(f"message {i}: [{offsets[i]}:+{lengths[i]}] outside a buffer of "
                         f"{size} bytes")
    if rc:
        _raise(rc, rp + i * ROW_WIDTH_, lengths[i], i,
               rp[i * ROW_WIDTH_ + COL_FIELDS + _count_index(rp + i * ROW_WIDTH_)])
    return n


def encode_config(unsigned char[::1] out, Py_ssize_t offset, uint32_t events_read,
                  uint32_t events_clear, uint32_t num_scanouts, uint32_t num_capsets,
                  uint32_t blob_alignment) -> int:
    """Write a virtio_gpu_config (20 bytes, little-endian) at out[offset:]; return its size."""
    cdef gpuhil_virtio_gpu_config_t c
    cdef Py_ssize_t size = sizeof(c)
    if offset < 0 or out.shape[0] - offset < size:
        from gpuhil.protocol.constants import ProtocolError
        raise ProtocolError(f"virtio_gpu_config needs {size} bytes, {out.shape[0] - offset} left",
                            size=out.shape[0] - offset, expected=size)
    c.events_read = htole32(events_read)
    c.events_clear = htole32(events_clear)
    c.num_scanouts = htole32(num_scanouts)
    c.num_capsets = htole32(num_capsets)
    c.blob_alignment = htole32(blob_alignment)
    memcpy(&out[offset], &c, size)
    return size


def decode_config(const unsigned char[::1] src, Py_ssize_t offset=0, bint strict=True):
    """Read a virtio_gpu_config at src[offset:] -> (events_read, events_clear, num_scanouts,
    num_capsets, blob_alignment).  strict: the buffer must hold exactly the 20 bytes."""
    cdef gpuhil_virtio_gpu_config_t c
    cdef Py_ssize_t size = sizeof(c), left = src.shape[0] - offset
    if offset < 0 or left < size or (strict and left != size):
        from gpuhil.protocol.constants import ProtocolError
        raise ProtocolError(f"virtio_gpu_config is {size} bytes, got {left}",
                            size=left, expected=size)
    memcpy(&c, &src[offset], size)
    return (le32toh(c.events_read), le32toh(c.events_clear), le32toh(c.num_scanouts),
            le32toh(c.num_capsets), le32toh(c.blob_alignment))
