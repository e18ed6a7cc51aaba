"""The virgl inline command a HOST3D blob is created with (``cmd`` of RESOURCE_CREATE_BLOB)."""
from __future__ import annotations

import struct

__all__ = ["virgl_pipe_resource_create"]

VIRGL_CCMD_PIPE_RESOURCE_CREATE = 48
VIRGL_PIPE_RES_CREATE_SIZE = 11
PIPE_BUFFER = 0
VIRGL_FORMAT_R8_UNORM = 64
VIRGL_BIND_VERTEX_BUFFER = 1 << 4
VIRGL_RESOURCE_FLAG_MAP_PERSISTENT = 1 << 1
VIRGL_RESOURCE_FLAG_MAP_COHERENT = 1 << 2


def virgl_pipe_resource_create(width: int, blob_id: int, *, target: int = PIPE_BUFFER,
                               format: int = VIRGL_FORMAT_R8_UNORM,
                               bind: int = VIRGL_BIND_VERTEX_BUFFER, height: int = 1,
                               depth: int = 1, array_size: int = 1, last_level: int = 0,
                               nr_samples: int = 0,
                               flags: int = VIRGL_RESOURCE_FLAG_MAP_PERSISTENT
                               | VIRGL_RESOURCE_FLAG_MAP_COHERENT) -> bytes:
    """A ``VIRGL_CCMD_PIPE_RESOURCE_CREATE`` for the inline ``cmd`` of a HOST3D blob.

    Defaults make a host-mappable (persistent, coherent) buffer of ``width`` bytes.  The
    payload order is target, format, bind, ... (swapping them makes virglrenderer reject it).
    """
    header = VIRGL_CCMD_PIPE_RESOURCE_CREATE | (VIRGL_PIPE_RES_CREATE_SIZE << 16)
    return struct.pack("<12I", header, target, format, bind, width, height, depth, array_size,
                       last_level, nr_samples, flags, blob_id)
