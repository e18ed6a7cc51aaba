"""The virtio-gpu device protocol (linux/virtio_gpu.h, Linux 7.2) as typed Python objects.

Every control and cursor command and every response is a dataclass (``ResourceCreate2D``,
``RespCapsetInfo`` ...) whose ``hdr`` is the :class:`CtrlHdr` (flags, fence_id, ctx_id,
ring_idx, settable on every message).  :func:`encode` / :func:`encode_into` /
:func:`decode` convert one message to and from little-endian bytes in any buffer;
:class:`CommandBatch` and :func:`decode_batch` do many at native speed for the raw virtqueue
driver; :func:`malformed` and :class:`RawMessage` build deliberately wrong messages for
negative tests; :func:`ctrl_name` is the one name of a control type.  The encoding itself is
the table-driven C core in ``gpuhil._protocol``, whose ``ABI`` dict (re-exported here) records
every size, offset and constant it was compiled with.

The package's modules import only downward: ``constants`` (enums, ProtocolError) <-
``layouts`` (C layouts, nested structs, field declarations) <- ``message`` (base, registry,
encoding) <- ``commands`` / ``blobs`` / ``contexts`` / ``cursor`` / ``responses`` <-
``decoding`` <- ``batch``; ``config`` needs only ``constants``.  This module re-exports them.
"""
from __future__ import annotations

from gpuhil.protocol.batch import (BatchLayout, CommandBatch, DecodedBatch, decode_batch,
                                   encode_batch)
from gpuhil.protocol.blobs import *  # noqa: F401,F403
from gpuhil.protocol.blobs import __all__ as _BLOBS
from gpuhil.protocol.commands import *  # noqa: F401,F403
from gpuhil.protocol.commands import __all__ as _COMMANDS
from gpuhil.protocol.config import VirtioGpuConfig
from gpuhil.protocol.constants import (ABI, CONTEXT_INIT_CAPSET_ID_MASK, EVENT_DISPLAY,
                                       MAP_CACHE_MASK, MAX_SCANOUTS, RESOURCE_FLAG_Y_0_TOP,
                                       ROW_WIDTH, BlobFlag, BlobMem, Capset, Column, CtrlType,
                                       Feature, Format, HdrFlag, MapCache, ProtocolError, ShmId,
                                       bytes_view, capset_name, ctrl_name)
from gpuhil.protocol.contexts import *  # noqa: F401,F403
from gpuhil.protocol.contexts import __all__ as _CONTEXTS
from gpuhil.protocol.cursor import *  # noqa: F401,F403
from gpuhil.protocol.cursor import __all__ as _CURSOR
from gpuhil.protocol.decoding import decode
from gpuhil.protocol.layouts import (HDR, LAYOUTS, Box, CursorPos, DisplayOne, Layout, MemEntry,
                                     Rect, layout)
from gpuhil.protocol.message import (MESSAGE_CLASSES, CtrlHdr, Message, RawMessage, encode,
                                     encode_into, encoded_size, malformed, message_class)
from gpuhil.protocol.responses import *  # noqa: F401,F403
from gpuhil.protocol.responses import __all__ as _RESPONSES

__all__ = [
    "ABI", "ROW_WIDTH", "ProtocolError", "CtrlType", "Feature", "HdrFlag", "Capset", "BlobMem",
    "BlobFlag", "MapCache", "Format", "ShmId", "Column", "Layout", "layout", "ctrl_name",
    "capset_name",
    "MAP_CACHE_MASK", "MAX_SCANOUTS", "RESOURCE_FLAG_Y_0_TOP", "CONTEXT_INIT_CAPSET_ID_MASK",
    "EVENT_DISPLAY", "VirtioGpuConfig",
    "encode", "encode_into", "encoded_size", "decode", "malformed",
    "CommandBatch", "BatchLayout", "DecodedBatch", "encode_batch", "decode_batch",
    "CtrlHdr", "Rect", "Box", "CursorPos", "MemEntry", "DisplayOne", "Message", "RawMessage",
    "HDR", "LAYOUTS",
    "MESSAGE_CLASSES", "message_class",
    *_COMMANDS, *_BLOBS, *_CONTEXTS, *_CURSOR, *_RESPONSES,
]
