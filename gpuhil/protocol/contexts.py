"""The 3D control commands of virtio-gpu: contexts, 3D resources, 3D transfers and command
submission.  Import them from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

from gpuhil.protocol.constants import CtrlType
from gpuhil.protocol.layouts import Box, nested
from gpuhil.protocol.message import Message, message

__all__ = ["CtxAttachResource", "CtxCreate", "CtxDestroy", "CtxDetachResource",
           "ResourceCreate3D", "Submit3D", "TransferFromHost3D", "TransferToHost3D"]


@message
class CtxCreate(Message):
    """VIRTIO_GPU_CMD_CTX_CREATE; context_init's low 8 bits are the capset id.

    nlen None means len(debug_name) (at most 64 bytes); set it to lie about the length.
    """
    TYPE = CtrlType.CMD_CTX_CREATE
    debug_name: bytes = b""
    context_init: int = 0
    nlen: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        nlen = len(self.debug_name) if self.nlen is None else self.nlen
        return (nlen, self.context_init), bytes(self.debug_name)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        nlen, context_init = fields
        name = bytes(tail[:min(nlen, len(tail))])
        return cls(name, context_init, None if nlen == len(name) else nlen, hdr=hdr)


@message
class CtxDestroy(Message):
    """VIRTIO_GPU_CMD_CTX_DESTROY (header only; hdr.ctx_id names the context)."""
    TYPE = CtrlType.CMD_CTX_DESTROY


@message
class CtxAttachResource(Message):
    """VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE."""
    TYPE = CtrlType.CMD_CTX_ATTACH_RESOURCE
    resource_id: int = 0


@message
class CtxDetachResource(Message):
    """VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE."""
    TYPE = CtrlType.CMD_CTX_DETACH_RESOURCE
    resource_id: int = 0


@message
class ResourceCreate3D(Message):
    """VIRTIO_GPU_CMD_RESOURCE_CREATE_3D (flags: VIRTIO_GPU_RESOURCE_FLAG_Y_0_TOP)."""
    TYPE = CtrlType.CMD_RESOURCE_CREATE_3D
    resource_id: int = 0
    target: int = 0
    format: int = 0
    bind: int = 0
    width: int = 0
    height: int = 0
    depth: int = 0
    array_size: int = 0
    last_level: int = 0
    nr_samples: int = 0
    flags: int = 0


@message
class TransferToHost3D(Message):
    """VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D (struct virtio_gpu_transfer_host_3d)."""
    TYPE = CtrlType.CMD_TRANSFER_TO_HOST_3D
    box: Box = nested(Box)
    offset: int = 0
    resource_id: int = 0
    level: int = 0
    stride: int = 0
    layer_stride: int = 0


@message
class TransferFromHost3D(TransferToHost3D):
    """VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D (struct virtio_gpu_transfer_host_3d)."""
    TYPE = CtrlType.CMD_TRANSFER_FROM_HOST_3D


@message
class Submit3D(Message):
    """VIRTIO_GPU_CMD_SUBMIT_3D followed by its command stream.

    size None means len(command_stream); set it to lie about the length.
    """
    TYPE = CtrlType.CMD_SUBMIT_3D
    command_stream: bytes = b""
    size: int | None = None

    def wire(self) -> tuple[tuple[int, ...], bytes]:
        size = len(self.command_stream) if self.size is None else self.size
        return (size,), bytes(self.command_stream)

    @classmethod
    def from_wire(cls, hdr, fields, tail):
        stream = bytes(tail)
        return cls(stream, None if fields[0] == len(stream) else fields[0], hdr=hdr)
