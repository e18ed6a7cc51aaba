"""Constants, enums, layouts and the error type of the virtio-gpu protocol (linux/virtio_gpu.h).

Every value comes from the ``ABI`` dict of the compiled C core (``gpuhil._protocol``), so the
Python names can never drift from what the encoder was built with.  Import them from
:mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

from gpuhil import _protocol
from gpuhil.errors import GpuhilError

ABI: dict[str, int] = _protocol.ABI
ROW_WIDTH: int = _protocol.ROW_WIDTH


class ProtocolError(GpuhilError, ValueError):
    """A virtio-gpu message could not be encoded or decoded.

    ``type`` is the control type involved (None if not even a header was there), ``size`` the
    byte count seen, ``expected`` the size the layout needs, ``index`` the message's position
    in a batch.
    """

    def __init__(self, message: str, *, type: int | None = None, size: int | None = None,
                 expected: int | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.type = type
        self.size = size
        self.expected = expected
        self.index = index

    def __reduce__(self):
        return (_rebuild_protocol_error,
                (str(self), self.type, self.size, self.expected, self.index))


def _rebuild_protocol_error(message, type, size, expected, index) -> ProtocolError:
    return ProtocolError(message, type=type, size=size, expected=expected, index=index)


def _consts(prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in ABI.items() if k.startswith(prefix)}


CtrlType = IntEnum("CtrlType", {
    k[len("VIRTIO_GPU_"):]: v for k, v in ABI.items()
    if k.startswith(("VIRTIO_GPU_CMD_", "VIRTIO_GPU_RESP_")) or k == "VIRTIO_GPU_UNDEFINED"},
    module=__name__)
CtrlType.__doc__ = "enum virtio_gpu_ctrl_type: commands (CMD_*) and responses (RESP_*)."
Feature = IntEnum("Feature", _consts("VIRTIO_GPU_F_"), module=__name__)
Feature.__doc__ = "VIRTIO_GPU_F_* feature bit numbers."
HdrFlag = IntFlag("HdrFlag", _consts("VIRTIO_GPU_FLAG_"), module=__name__)
HdrFlag.__doc__ = "virtio_gpu_ctrl_hdr.flags bits (VIRTIO_GPU_FLAG_*)."
CapsetId = IntEnum("CapsetId", _consts("VIRTIO_GPU_CAPSET_"), module=__name__)
CapsetId.__doc__ = "VIRTIO_GPU_CAPSET_* capability set ids."
BlobMem = IntEnum("BlobMem", _consts("VIRTIO_GPU_BLOB_MEM_"), module=__name__)
BlobMem.__doc__ = "resource_create_blob.blob_mem (VIRTIO_GPU_BLOB_MEM_*; 0 is invalid)."
BlobFlag = IntFlag("BlobFlag", _consts("VIRTIO_GPU_BLOB_FLAG_"), module=__name__)
BlobFlag.__doc__ = "resource_create_blob.blob_flags (VIRTIO_GPU_BLOB_FLAG_*)."
MapCache = IntEnum("MapCache", {k: v for k, v in _consts("VIRTIO_GPU_MAP_CACHE_").items()
                                if k != "MASK"}, module=__name__)
MapCache.__doc__ = "resp_map_info.map_info & VIRTIO_GPU_MAP_CACHE_MASK."
Format = IntEnum("Format", _consts("VIRTIO_GPU_FORMAT_"), module=__name__)
Format.__doc__ = "enum virtio_gpu_formats."
ShmId = IntEnum("ShmId", _consts("VIRTIO_GPU_SHM_ID_"), module=__name__)
ShmId.__doc__ = "enum virtio_gpu_shm_id (the host-visible shared memory region of MAP_BLOB)."

MAP_CACHE_MASK: int = ABI["VIRTIO_GPU_MAP_CACHE_MASK"]
MAX_SCANOUTS: int = ABI["VIRTIO_GPU_MAX_SCANOUTS"]
RESOURCE_FLAG_Y_0_TOP: int = ABI["VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP"]
CONTEXT_INIT_CAPSET_ID_MASK: int = ABI["VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK"]
EVENT_DISPLAY: int = ABI["VIRTIO_GPU_EVENT_DISPLAY"]


class Column(IntEnum):
    """Columns of a batch row (ROW_WIDTH uint64 per message); FIELDS is the first scalar field."""
    TYPE = 0
    FLAGS = 1
    FENCE_ID = 2
    CTX_ID = 3
    RING_IDX = 4
    TAIL_OFF = 5
    TAIL_LEN = 6
    FIELDS = _protocol.FIRST_FIELD_COLUMN


@dataclass(frozen=True)
class Layout:
    """The wire layout of one control type, as compiled into gpuhil._protocol.

    ``fields`` are the scalar fields in row order (uapi member designators such as "r.x" or
    "strides[2]"); ``tail`` names the variable part: bytes inside the struct ("inline":
    debug_name, edid, uuid, pmodes) or after it ("trailing": entries, command_stream,
    capset_data), whose element count is the field ``count`` times ``unit`` bytes.
    """
    type: CtrlType
    struct: str
    size: int
    fields: tuple[str, ...]
    tail_kind: str | None
    tail: str | None
    tail_offset: int
    tail_max: int
    count: str | None
    unit: int


_TAIL_KINDS = {_protocol.TAIL_NONE: None, _protocol.TAIL_INLINE: "inline",
               _protocol.TAIL_TRAILING: "trailing"}
_LAYOUTS: dict[int, Layout] = {
    t: Layout(CtrlType(t), s, size, tuple(f[0] for f in fields), _TAIL_KINDS[kind], tail,
              toff, tmax, count, unit)
    for t, (s, size, fields, kind, tail, toff, tmax, count, unit) in _protocol.LAYOUTS.items()}


def layout(type: int) -> Layout:
    """The :class:`Layout` of a control type; ProtocolError for an unknown one."""
    try:
        return _LAYOUTS[type]
    except KeyError:
        raise ProtocolError(f"unknown virtio-gpu control type {type:#06x}", type=type) from None


def bytes_view(buf) -> memoryview:
    """buf as a flat unsigned-byte memoryview (what the C core takes)."""
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")
