"""The cursor-queue commands of virtio-gpu (no response).  Import them from
:mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from gpuhil.protocol.constants import CtrlType
from gpuhil.protocol.layouts import CursorPos, nested
from gpuhil.protocol.message import Message, message

__all__ = ["MoveCursor", "UpdateCursor"]


@message
class UpdateCursor(Message):
    """VIRTIO_GPU_CMD_UPDATE_CURSOR (cursorq, struct virtio_gpu_update_cursor)."""
    TYPE = CtrlType.CMD_UPDATE_CURSOR
    pos: CursorPos = nested(CursorPos)
    resource_id: int = 0
    hot_x: int = 0
    hot_y: int = 0


@message
class MoveCursor(UpdateCursor):
    """VIRTIO_GPU_CMD_MOVE_CURSOR (cursorq; only pos matters to the device)."""
    TYPE = CtrlType.CMD_MOVE_CURSOR
