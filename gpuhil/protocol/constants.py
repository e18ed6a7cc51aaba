"""Constants, enums, the error type and the control-type name of the virtio-gpu protocol
(linux/virtio_gpu.h): the bottom of :mod:`gpuhil.protocol`, imported by every other module of it.

Every value comes from the ``ABI`` dict of the compiled C core (``gpuhil._protocol``), so the
Python names can never drift from what the encoder was built with.  The enums share their
names with the render-node layer (:mod:`gpuhil.devices.virtgpu`): ``Capset.VIRGL2``,
``BlobMem.HOST3D``, ``BlobFlag.MAPPABLE`` mean the same values on the wire and in the uapi.
Import them from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

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
Capset = IntEnum("Capset", _consts("VIRTIO_GPU_CAPSET_"), module=__name__)
Capset.__doc__ = "VIRTIO_GPU_CAPSET_* capability set ids (the render node's Capset names)."
BlobMem = IntEnum("BlobMem", _consts("VIRTIO_GPU_BLOB_MEM_"), module=__name__)
BlobMem.__doc__ = "resource_create_blob.blob_mem (VIRTIO_GPU_BLOB_MEM_*; 0 is invalid)."
BlobFlag = IntFlag("BlobFlag", {k.removeprefix("USE_"): v
                               for k, v in _consts("VIRTIO_GPU_BLOB_FLAG_").items()},
                   module=__name__)
BlobFlag.__doc__ = ("resource_create_blob.blob_flags (VIRTIO_GPU_BLOB_FLAG_USE_*, named as the "
                    "render node's BlobFlag: MAPPABLE, SHAREABLE, CROSS_DEVICE).")
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


def bytes_view(buf) -> memoryview:
    """buf as a flat unsigned-byte memoryview (what the C core takes)."""
    view = memoryview(buf)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def ctrl_name(value) -> str:
    """The one name of a control type: ``CMD_GET_CAPSET_INFO``, ``RESP_OK_NODATA``, or
    ``0x01ff`` for a type the protocol does not know.  ``value`` is the type (an int), a
    message (anything with ``.type``) or wire bytes (their first u32; ``<1-byte message>``
    when shorter than that)."""
    if isinstance(value, int):
        ctrl = value
    elif isinstance(value, (bytes, bytearray, memoryview)):
        if len(value) < 4:
            return f"<{len(value)}-byte message>"
        ctrl = int.from_bytes(bytes(value[:4]), "little")
    else:
        ctrl = value.type
    try:
        return CtrlType(ctrl).name
    except ValueError:
        return f"{ctrl:#06x}"


def capset_name(capset_id: int) -> str:
    """The one name of a capset id in capability names: ``virgl2``, ``venus``, or ``id7`` for
    an id the protocol does not know (the same on the render node and on the wire)."""
    try:
        return Capset(capset_id).name.lower()
    except ValueError:
        return f"id{capset_id}"
