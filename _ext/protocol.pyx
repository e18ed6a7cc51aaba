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


cdef _build_tables():
    cdef int i, j
    for i in range(0x13):
        for j in range(16):
            _lut[i][j] = -1

    cdef virtio_gpu_ctrl_hdr h
    cdef virtio_gpu_rect rc
    cdef virtio_gpu_box bx
    cdef virtio_gpu_cursor_pos cp
    cdef virtio_gpu_mem_entry me
    cdef virtio_gpu_display_one d1
    cdef virtio_gpu_update_cursor uc
    cdef virtio_gpu_resource_unref ru
    cdef virtio_gpu_resource_create_2d c2
    cdef virtio_gpu_set_scanout ss
    cdef virtio_gpu_resource_flush fl
    cdef virtio_gpu_transfer_to_host_2d t2
    cdef virtio_gpu_resource_attach_backing ab
    cdef virtio_gpu_resource_detach_backing db
    cdef virtio_gpu_resp_display_info di
    cdef virtio_gpu_transfer_host_3d t3
    cdef virtio_gpu_resource_create_3d c3
    cdef virtio_gpu_ctx_create cc
    cdef virtio_gpu_ctx_destroy cd
    cdef virtio_gpu_ctx_resource cr
    cdef virtio_gpu_cmd_submit sb
    cdef virtio_gpu_get_capset_info gci
    cdef virtio_gpu_resp_capset_info rci
    cdef virtio_gpu_get_capset gc
    cdef virtio_gpu_resp_capset rcs
    cdef virtio_gpu_cmd_get_edid ge
    cdef virtio_gpu_resp_edid re
    cdef virtio_gpu_resource_assign_uuid au
    cdef virtio_gpu_resp_resource_uuid ruu
    cdef virtio_gpu_resource_create_blob cb
    cdef virtio_gpu_set_scanout_blob sbl
    cdef virtio_gpu_resource_map_blob mb
    cdef virtio_gpu_resp_map_info mi
    cdef virtio_gpu_resource_unmap_blob ub
    cdef gpuhil_virtio_gpu_config_t cfg

    # the building blocks
    for name, off in (("type", _off(&h, &h.type)), ("flags", _off(&h, &h.flags)),
                      ("fence_id", _off(&h, &h.fence_id)), ("ctx_id", _off(&h, &h.ctx_id)),
                      ("ring_idx", _off(&h, &h.ring_idx)), ("padding", _off(&h, &h.padding))):
        _abi_off("virtio_gpu_ctrl_hdr", name, off)
    _abi_struct("virtio_gpu_ctrl_hdr", sizeof(h))
    # _encode_row/_decode_row write the header with these constant offsets
    assert (_off(&h, &h.type), _off(&h, &h.flags), _off(&h, &h.fence_id), _off(&h, &h.ctx_id),
            _off(&h, &h.ring_idx), sizeof(h)) == (0, 4, 8, 16, 20, 24)
    for name, off in (("x", _off(&rc, &rc.x)), ("y", _off(&rc, &rc.y)),
                      ("width", _off(&rc, &rc.width)), ("height", _off(&rc, &rc.height))):
        _abi_off("virtio_gpu_rect", name, off)
    _abi_struct("virtio_gpu_rect", sizeof(rc))
    for name, off in (("x", _off(&bx, &bx.x)), ("y", _off(&bx, &bx.y)), ("z", _off(&bx, &bx.z)),
                      ("w", _off(&bx, &bx.w)), ("h", _off(&bx, &bx.h)), ("d", _off(&bx, &bx.d))):
        _abi_off("virtio_gpu_box", name, off)
    _abi_struct("virtio_gpu_box", sizeof(bx))
    for name, off in (("scanout_id", _off(&cp, &cp.scanout_id)), ("x", _off(&cp, &cp.x)),
                      ("y", _off(&cp, &cp.y)), ("padding", _off(&cp, &cp.padding))):
        _abi_off("virtio_gpu_cursor_pos", name, off)
    _abi_struct("virtio_gpu_cursor_pos", sizeof(cp))
    for name, off in (("addr", _off(&me, &me.addr)), ("length", _off(&me, &me.length)),
                      ("padding", _off(&me, &me.padding))):
        _abi_off("virtio_gpu_mem_entry", name, off)
    _abi_struct("virtio_gpu_mem_entry", sizeof(me))
    for name, off in (("r", _off(&d1, &d1.r)), ("enabled", _off(&d1, &d1.enabled)),
                      ("flags", _off(&d1, &d1.flags))):
        _abi_off("virtio_gpu_display_one", name, off)
    _abi_struct("virtio_gpu_display_one", sizeof(d1))
    for name, off in (("events_read", _off(&cfg, &cfg.events_read)),
                      ("events_clear", _off(&cfg, &cfg.events_clear)),
                      ("num_scanouts", _off(&cfg, &cfg.num_scanouts)),
                      ("num_capsets", _off(&cfg, &cfg.num_capsets)),
                      ("blob_alignment", _off(&cfg, &cfg.blob_alignment))):
        _abi_off("virtio_gpu_config", name, off)
    _abi_struct("virtio_gpu_config", sizeof(cfg))

    # header-only messages
    for t in (VIRTIO_GPU_CMD_GET_DISPLAY_INFO, VIRTIO_GPU_RESP_OK_NODATA,
              VIRTIO_GPU_RESP_ERR_UNSPEC, VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
              VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
              VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER):
        _register(t, "virtio_gpu_ctrl_hdr", sizeof(h), [])
    _register(VIRTIO_GPU_CMD_CTX_DESTROY, "virtio_gpu_ctx_destroy", sizeof(cd), [])

    _register(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, "virtio_gpu_resource_create_2d", sizeof(c2),
              [("resource_id", _off(&c2, &c2.resource_id), sizeof(c2.resource_id)),
               ("format", _off(&c2, &c2.format), sizeof(c2.format)),
               ("width", _off(&c2, &c2.width), sizeof(c2.width)),
               ("height", _off(&c2, &c2.height), sizeof(c2.height))])
    _register(VIRTIO_GPU_CMD_RESOURCE_UNREF, "virtio_gpu_resource_unref", sizeof(ru),
              [("resource_id", _off(&ru, &ru.resource_id), sizeof(ru.resource_id))])
    _abi_off("virtio_gpu_resource_unref", "padding", _off(&ru, &ru.padding))
    _register(VIRTIO_GPU_CMD_SET_SCANOUT, "virtio_gpu_set_scanout", sizeof(ss),
              _rect("r", &ss, &ss.r)
              + [("scanout_id", _off(&ss, &ss.scanout_id), sizeof(ss.scanout_id)),
                 ("resource_id", _off(&ss, &ss.resource_id), sizeof(ss.resource_id))])
    _register(VIRTIO_GPU_CMD_RESOURCE_FLUSH, "virtio_gpu_resource_flush", sizeof(fl),
              _rect("r", &fl, &fl.r)
              + [("resource_id", _off(&fl, &fl.resource_id), sizeof(fl.resource_id))])
    _register(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, "virtio_gpu_transfer_to_host_2d", sizeof(t2),
              _rect("r", &t2, &t2.r)
              + [("offset", _off(&t2, &t2.offset), sizeof(t2.offset)),
                 ("resource_id", _off(&t2, &t2.resource_id), sizeof(t2.resource_id))])
    _register(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, "virtio_gpu_resource_attach_backing",
              sizeof(ab),
              [("resource_id", _off(&ab, &ab.resource_id), sizeof(ab.resource_id)),
               ("nr_entries", _off(&ab, &ab.nr_entries), sizeof(ab.nr_entries))],
              TAIL_TRAILING_, "entries", count="nr_entries", unit=sizeof(me))
    _register(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, "virtio_gpu_resource_detach_backing",
              sizeof(db), [("resource_id", _off(&db, &db.resource_id), sizeof(db.resource_id))])
    _register(VIRTIO_GPU_CMD_GET_CAPSET_INFO, "virtio_gpu_get_capset_info", sizeof(gci),
              [("capset_index", _off(&gci, &gci.capset_index), sizeof(gci.capset_index))])
    _register(VIRTIO_GPU_CMD_GET_CAPSET, "virtio_gpu_get_capset", sizeof(gc),
              [("capset_id", _off(&gc, &gc.capset_id), sizeof(gc.capset_id)),
               ("capset_version", _off(&gc, &gc.capset_version), sizeof(gc.capset_version))])
    _register(VIRTIO_GPU_CMD_GET_EDID, "virtio_gpu_cmd_get_edid", sizeof(ge),
              [("scanout", _off(&ge, &ge.scanout), sizeof(ge.scanout))])
    _register(VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID, "virtio_gpu_resource_assign_uuid",
              sizeof(au), [("resource_id", _off(&au, &au.resource_id), sizeof(au.resource_id))])
    _register(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, "virtio_gpu_resource_create_blob",
              sizeof(cb),
              [("resource_id", _off(&cb, &cb.resource_id), sizeof(cb.resource_id)),
               ("blob_mem", _off(&cb, &cb.blob_mem), sizeof(cb.blob_mem)),
               ("blob_flags", _off(&cb, &cb.blob_flags), sizeof(cb.blob_flags)),
               ("nr_entries", _off(&cb, &cb.nr_entries), sizeof(cb.nr_entries)),
               ("blob_id", _off(&cb, &cb.blob_id), sizeof(cb.blob_id)),
               ("size", _off(&cb, &cb.size), sizeof(cb.size))],
              TAIL_TRAILING_, "entries", count="nr_entries", unit=sizeof(me))
    _register(VIRTIO_GPU_CMD_SET_SCANOUT_BLOB, "virtio_gpu_set_scanout_blob", sizeof(sbl),
              _rect("r", &sbl, &sbl.r)
              + [("scanout_id", _off(&sbl, &sbl.scanout_id), sizeof(sbl.scanout_id)),
                 ("resource_id", _off(&sbl, &sbl.resource_id), sizeof(sbl.resource_id)),
                 ("width", _off(&sbl, &sbl.width), sizeof(sbl.width)),
                 ("height", _off(&sbl, &sbl.height), sizeof(sbl.height)),
                 ("format", _off(&sbl, &sbl.format), sizeof(sbl.format))]
              + [(f"strides[{i}]", _off(&sbl, &sbl.strides[i]), sizeof(sbl.strides[0]))
                 for i in range(4)]
              + [(f"offsets[{i}]", _off(&sbl, &sbl.offsets[i]), sizeof(sbl.offsets[0]))
                 for i in range(4)])
    _abi_off("virtio_gpu_set_scanout_blob", "padding", _off(&sbl, &sbl.padding))
    _register(VIRTIO_GPU_CMD_CTX_CREATE, "virtio_gpu_ctx_create", sizeof(cc),
              [("nlen", _off(&cc, &cc.nlen), sizeof(cc.nlen)),
               ("context_init", _off(&cc, &cc.context_init), sizeof(cc.context_init))],
              TAIL_INLINE_, "debug_name", _off(&cc, &cc.debug_name), sizeof(cc.debug_name))
    for t in (VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE):
        _register(t, "virtio_gpu_ctx_resource", sizeof(cr),
                  [("resource_id", _off(&cr, &cr.resource_id), sizeof(cr.resource_id))])
    _register(VIRTIO_GPU_CMD_RESOURCE_CREATE_3D, "virtio_gpu_resource_create_3d", sizeof(c3),
              [("resource_id", _off(&c3, &c3.resource_id), sizeof(c3.resource_id)),
               ("target", _off(&c3, &c3.target), sizeof(c3.target)),
               ("format", _off(&c3, &c3.format), sizeof(c3.format)),
               ("bind", _off(&c3, &c3.bind), sizeof(c3.bind)),
               ("width", _off(&c3, &c3.width), sizeof(c3.width)),
               ("height", _off(&c3, &c3.height), sizeof(c3.height)),
               ("depth", _off(&c3, &c3.depth), sizeof(c3.depth)),
               ("array_size", _off(&c3, &c3.array_size), sizeof(c3.array_size)),
               ("last_level", _off(&c3, &c3.last_level), sizeof(c3.last_level)),
               ("nr_samples", _off(&c3, &c3.nr_samples), sizeof(c3.nr_samples)),
               ("flags", _off(&c3, &c3.flags), sizeof(c3.flags))])
    _abi_off("virtio_gpu_resource_create_3d", "padding", _off(&c3, &c3.padding))
    for t in (VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D, VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D):
        _register(t, "virtio_gpu_transfer_host_3d", sizeof(t3),
                  [("box.x", _off(&t3, &t3.box.x), sizeof(t3.box.x)),
                   ("box.y", _off(&t3, &t3.box.y), sizeof(t3.box.y)),
                   ("box.z", _off(&t3, &t3.box.z), sizeof(t3.box.z)),
                   ("box.w", _off(&t3, &t3.box.w), sizeof(t3.box.w)),
                   ("box.h", _off(&t3, &t3.box.h), sizeof(t3.box.h)),
                   ("box.d", _off(&t3, &t3.box.d), sizeof(t3.box.d)),
                   ("offset", _off(&t3, &t3.offset), sizeof(t3.offset)),
                   ("resource_id", _off(&t3, &t3.resource_id), sizeof(t3.resource_id)),
                   ("level", _off(&t3, &t3.level), sizeof(t3.level)),
                   ("stride", _off(&t3, &t3.stride), sizeof(t3.stride)),
                   ("layer_stride", _off(&t3, &t3.layer_stride), sizeof(t3.layer_stride))])
    _register(VIRTIO_GPU_CMD_SUBMIT_3D, "virtio_gpu_cmd_submit", sizeof(sb),
              [("size", _off(&sb, &sb.size), sizeof(sb.size))],
              TAIL_TRAILING_, "command_stream", count="size", unit=1)
    _abi_off("virtio_gpu_cmd_submit", "padding", _off(&sb, &sb.padding))
    _register(VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB, "virtio_gpu_resource_map_blob", sizeof(mb),
              [("resource_id", _off(&mb, &mb.resource_id), sizeof(mb.resource_id)),
               ("offset", _off(&mb, &mb.offset), sizeof(mb.offset))])
    _register(VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB, "virtio_gpu_resource_unmap_blob", sizeof(ub),
              [("resource_id", _off(&ub, &ub.resource_id), sizeof(ub.resource_id))])
    for t in (VIRTIO_GPU_CMD_UPDATE_CURSOR, VIRTIO_GPU_CMD_MOVE_CURSOR):
        _register(t, "virtio_gpu_update_cursor", sizeof(uc),
                  [("pos.scanout_id", _off(&uc, &uc.pos.scanout_id), sizeof(uc.pos.scanout_id)),
                   ("pos.x", _off(&uc, &uc.pos.x), sizeof(uc.pos.x)),
                   ("pos.y", _off(&uc, &uc.pos.y), sizeof(uc.pos.y)),
                   ("resource_id", _off(&uc, &uc.resource_id), sizeof(uc.resource_id)),
                   ("hot_x", _off(&uc, &uc.hot_x), sizeof(uc.hot_x)),
                   ("hot_y", _off(&uc, &uc.hot_y), sizeof(uc.hot_y))])
    _abi_off("virtio_gpu_update_cursor", "pos", _off(&uc, &uc.pos))
    _abi_off("virtio_gpu_update_cursor", "padding", _off(&uc, &uc.padding))

    _register(VIRTIO_GPU_RESP_OK_DISPLAY_INFO, "virtio_gpu_resp_display_info", sizeof(di), [],
              TAIL_INLINE_, "pmodes", _off(&di, &di.pmodes), sizeof(di.pmodes))
    _register(VIRTIO_GPU_RESP_OK_CAPSET_INFO, "virtio_gpu_resp_capset_info", sizeof(rci),
              [("capset_id", _off(&rci, &rci.capset_id), sizeof(rci.capset_id)),
               ("capset_max_version", _off(&rci, &rci.capset_max_version),
                sizeof(rci.capset_max_version)),
               ("capset_max_size", _off(&rci, &rci.capset_max_size), sizeof(rci.capset_max_size))])
    _abi_off("virtio_gpu_resp_capset_info", "padding", _off(&rci, &rci.padding))
    # resp_capset is hdr + a flexible array: its C sizeof is the header size
    _register(VIRTIO_GPU_RESP_OK_CAPSET, "virtio_gpu_resp_capset", sizeof(rcs), [],
              TAIL_TRAILING_, "capset_data")
    _abi_off("virtio_gpu_resp_capset", "capset_data", _off(&rcs, &rcs.capset_data))
    _register(VIRTIO_GPU_RESP_OK_EDID, "virtio_gpu_resp_edid", sizeof(re),
              [("size", _off(&re, &re.size), sizeof(re.size))],
              TAIL_INLINE_, "edid", _off(&re, &re.edid), sizeof(re.edid))
    _register(VIRTIO_GPU_RESP_OK_RESOURCE_UUID, "virtio_gpu_resp_resource_uuid", sizeof(ruu), [],
              TAIL_INLINE_, "uuid", _off(&ruu, &ruu.uuid), sizeof(ruu.uuid))
    _register(VIRTIO_GPU_RESP_OK_MAP_INFO, "virtio_gpu_resp_map_info", sizeof(mi),
              [("map_info", _off(&mi, &mi.map_info), sizeof(mi.map_info))])
    _abi_off("virtio_gpu_resp_map_info", "padding", _off(&mi, &mi.padding))

    # every message starts with its header
    for struct, off in (
            ("virtio_gpu_update_cursor", _off(&uc, &uc.hdr)),
            ("virtio_gpu_resource_unref", _off(&ru, &ru.hdr)),
            ("virtio_gpu_resource_create_2d", _off(&c2, &c2.hdr)),
            ("virtio_gpu_set_scanout", _off(&ss, &ss.hdr)),
            ("virtio_gpu_resource_flush", _off(&fl, &fl.hdr)),
            ("virtio_gpu_transfer_to_host_2d", _off(&t2, &t2.hdr)),
            ("virtio_gpu_resource_attach_backing", _off(&ab, &ab.hdr)),
            ("virtio_gpu_resource_detach_backing", _off(&db, &db.hdr)),
            ("virtio_gpu_resp_display_info", _off(&di, &di.hdr)),
            ("virtio_gpu_transfer_host_3d", _off(&t3, &t3.hdr)),
            ("virtio_gpu_resource_create_3d", _off(&c3, &c3.hdr)),
            ("virtio_gpu_ctx_create", _off(&cc, &cc.hdr)),
            ("virtio_gpu_ctx_destroy", _off(&cd, &cd.hdr)),
            ("virtio_gpu_ctx_resource", _off(&cr, &cr.hdr)),
            ("virtio_gpu_cmd_submit", _off(&sb, &sb.hdr)),
            ("virtio_gpu_get_capset_info", _off(&gci, &gci.hdr)),
            ("virtio_gpu_resp_capset_info", _off(&rci, &rci.hdr)),
            ("virtio_gpu_get_capset", _off(&gc, &gc.hdr)),
            ("virtio_gpu_resp_capset", _off(&rcs, &rcs.hdr)),
            ("virtio_gpu_cmd_get_edid", _off(&ge, &ge.hdr)),
            ("virtio_gpu_resp_edid", _off(&re, &re.hdr)),
            ("virtio_gpu_resource_assign_uuid", _off(&au, &au.hdr)),
            ("virtio_gpu_resp_resource_uuid", _off(&ruu, &ruu.hdr)),
            ("virtio_gpu_resource_create_blob", _off(&cb, &cb.hdr)),
            ("virtio_gpu_set_scanout_blob", _off(&sbl, &sbl.hdr)),
            ("virtio_gpu_resource_map_blob", _off(&mb, &mb.hdr)),
            ("virtio_gpu_resp_map_info", _off(&mi, &mi.hdr)),
            ("virtio_gpu_resource_unmap_blob", _off(&ub, &ub.hdr))):
        assert off == 0, struct
        _abi_off(struct, "hdr", off)

    # constants
    cdef dict consts = {
        "VIRTIO_GPU_F_VIRGL": VIRTIO_GPU_F_VIRGL,
        "VIRTIO_GPU_F_EDID": VIRTIO_GPU_F_EDID,
        "VIRTIO_GPU_F_RESOURCE_UUID": VIRTIO_GPU_F_RESOURCE_UUID,
        "VIRTIO_GPU_F_RESOURCE_BLOB": VIRTIO_GPU_F_RESOURCE_BLOB,
        "VIRTIO_GPU_F_CONTEXT_INIT": VIRTIO_GPU_F_CONTEXT_INIT,
        "VIRTIO_GPU_F_BLOB_ALIGNMENT": VIRTIO_GPU_F_BLOB_ALIGNMENT,
        "VIRTIO_GPU_FLAG_FENCE": VIRTIO_GPU_FLAG_FENCE,
        "VIRTIO_GPU_FLAG_INFO_RING_IDX": VIRTIO_GPU_FLAG_INFO_RING_IDX,
        "VIRTIO_GPU_SHM_ID_UNDEFINED": VIRTIO_GPU_SHM_ID_UNDEFINED,
        "VIRTIO_GPU_SHM_ID_HOST_VISIBLE": VIRTIO_GPU_SHM_ID_HOST_VISIBLE,
        "VIRTIO_GPU_MAX_SCANOUTS": VIRTIO_GPU_MAX_SCANOUTS,
        "VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP": VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP,
        "VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK": VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK,
        "VIRTIO_GPU_EVENT_DISPLAY": VIRTIO_GPU_EVENT_DISPLAY,
        "VIRTIO_GPU_CAPSET_VIRGL": VIRTIO_GPU_CAPSET_VIRGL,
        "VIRTIO_GPU_CAPSET_VIRGL2": VIRTIO_GPU_CAPSET_VIRGL2,
        "VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN": VIRTIO_GPU_CAPSET_GFXSTREAM_VULKAN,
        "VIRTIO_GPU_CAPSET_VENUS": VIRTIO_GPU_CAPSET_VENUS,
        "VIRTIO_GPU_CAPSET_CROSS_DOMAIN": VIRTIO_GPU_CAPSET_CROSS_DOMAIN,
        "VIRTIO_GPU_CAPSET_DRM": VIRTIO_GPU_CAPSET_DRM,
        "VIRTIO_GPU_BLOB_MEM_GUEST": VIRTIO_GPU_BLOB_MEM_GUEST,
        "VIRTIO_GPU_BLOB_MEM_HOST3D": VIRTIO_GPU_BLOB_MEM_HOST3D,
        "VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST": VIRTIO_GPU_BLOB_MEM_HOST3D_GUEST,
        "VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE": VIRTIO_GPU_BLOB_FLAG_USE_MAPPABLE,
        "VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE": VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE,
        "VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE": VIRTIO_GPU_BLOB_FLAG_USE_CROSS_DEVICE,
        "VIRTIO_GPU_MAP_CACHE_MASK": VIRTIO_GPU_MAP_CACHE_MASK,
        "VIRTIO_GPU_MAP_CACHE_NONE": VIRTIO_GPU_MAP_CACHE_NONE,
        "VIRTIO_GPU_MAP_CACHE_CACHED": VIRTIO_GPU_MAP_CACHE_CACHED,
        "VIRTIO_GPU_MAP_CACHE_UNCACHED": VIRTIO_GPU_MAP_CACHE_UNCACHED,
        "VIRTIO_GPU_MAP_CACHE_WC": VIRTIO_GPU_MAP_CACHE_WC,
        "VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM": VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
        "VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM": VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
        "VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM": VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM,
        "VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM": VIRTIO_GPU_FORMAT_X8R8G8B8_UNORM,
        "VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM": VIRTIO_GPU_FORMAT_R8G8B8A8_UNORM,
        "VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM": VIRTIO_GPU_FORMAT_X8B8G8R8_UNORM,
        "VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM": VIRTIO_GPU_FORMAT_A8B8G8R8_UNORM,
        "VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM": VIRTIO_GPU_FORMAT_R8G8B8X8_UNORM,
    }
    cdef dict types = {
        "VIRTIO_GPU_UNDEFINED": VIRTIO_GPU_UNDEFINED,
        "VIRTIO_GPU_CMD_GET_DISPLAY_INFO": VIRTIO_GPU_CMD_GET_DISPLAY_INFO,
        "VIRTIO_GPU_CMD_RESOURCE_CREATE_2D": VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
        "VIRTIO_GPU_CMD_RESOURCE_UNREF": VIRTIO_GPU_CMD_RESOURCE_UNREF,
        "VIRTIO_GPU_CMD_SET_SCANOUT": VIRTIO_GPU_CMD_SET_SCANOUT,
        "VIRTIO_GPU_CMD_RESOURCE_FLUSH": VIRTIO_GPU_CMD_RESOURCE_FLUSH,
        "VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D": VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
        "VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING": VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
        "VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING": VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
        "VIRTIO_GPU_CMD_GET_CAPSET_INFO": VIRTIO_GPU_CMD_GET_CAPSET_INFO,
        "VIRTIO_GPU_CMD_GET_CAPSET": VIRTIO_GPU_CMD_GET_CAPSET,
        "VIRTIO_GPU_CMD_GET_EDID": VIRTIO_GPU_CMD_GET_EDID,
        "VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID": VIRTIO_GPU_CMD_RESOURCE_ASSIGN_UUID,
        "VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB": VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB,
        "VIRTIO_GPU_CMD_SET_SCANOUT_BLOB": VIRTIO_GPU_CMD_SET_SCANOUT_BLOB,
        "VIRTIO_GPU_CMD_CTX_CREATE": VIRTIO_GPU_CMD_CTX_CREATE,
        "VIRTIO_GPU_CMD_CTX_DESTROY": VIRTIO_GPU_CMD_CTX_DESTROY,
        "VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE": VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE,
        "VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE": VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE,
        "VIRTIO_GPU_CMD_RESOURCE_CREATE_3D": VIRTIO_GPU_CMD_RESOURCE_CREATE_3D,
        "VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D": VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D,
        "VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D": VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D,
        "VIRTIO_GPU_CMD_SUBMIT_3D": VIRTIO_GPU_CMD_SUBMIT_3D,
        "VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB": VIRTIO_GPU_CMD_RESOURCE_MAP_BLOB,
        "VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB": VIRTIO_GPU_CMD_RESOURCE_UNMAP_BLOB,
        "VIRTIO_GPU_CMD_UPDATE_CURSOR": VIRTIO_GPU_CMD_UPDATE_CURSOR,
        "VIRTIO_GPU_CMD_MOVE_CURSOR": VIRTIO_GPU_CMD_MOVE_CURSOR,
        "VIRTIO_GPU_RESP_OK_NODATA": VIRTIO_GPU_RESP_OK_NODATA,
        "VIRTIO_GPU_RESP_OK_DISPLAY_INFO": VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
        "VIRTIO_GPU_RESP_OK_CAPSET_INFO": VIRTIO_GPU_RESP_OK_CAPSET_INFO,
        "VIRTIO_GPU_RESP_OK_CAPSET": VIRTIO_GPU_RESP_OK_CAPSET,
        "VIRTIO_GPU_RESP_OK_EDID": VIRTIO_GPU_RESP_OK_EDID,
        "VIRTIO_GPU_RESP_OK_RESOURCE_UUID": VIRTIO_GPU_RESP_OK_RESOURCE_UUID,
        "VIRTIO_GPU_RESP_OK_MAP_INFO": VIRTIO_GPU_RESP_OK_MAP_INFO,
        "VIRTIO_GPU_RESP_ERR_UNSPEC": VIRTIO_GPU_RESP_ERR_UNSPEC,
        "VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY": VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
        "VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID": VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
        "VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID": VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
        "VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID": VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID,
        "VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER": VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
    }
    ABI.update(consts)
    ABI.update(types)
    for name, value in types.items():
        TYPE_NAMES[value] = name[len("VIRTIO_GPU_"):]


_build_tables()
del _register   # the table is complete; nothing may change it afterwards


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
