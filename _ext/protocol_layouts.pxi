# The layout table: every control type's struct, scalar fields and tail, registered from the
# C structs of gpuhil_uapi.h (sizes and offsets computed by the compiler), and the ABI
# entries for the building blocks and headers.  Included by protocol.pyx.

cdef _build_layouts():
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
