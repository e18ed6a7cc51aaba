"""HOST3D blobs through the raw driver: a virgl context, the inline virgl resource a HOST3D
blob is made from, the blob, and its mapping into the host-visible window.

The kernel driver makes a HOST3D blob in two steps; these helpers do the same on a
:class:`~gpuhil.raw.rawgpu.RawGpu`: a virgl context (VIRGL2 through context_init when the
device has CONTEXT_INIT), a SUBMIT_3D carrying PIPE_RESOURCE_CREATE for the blob id, then
RESOURCE_CREATE_BLOB with blob_mem HOST3D.  :func:`expect` submits a command that prepares
state and raises :class:`CommandRefused` unless it gets the wanted response.
"""
from __future__ import annotations

from gpuhil.devices.virtgpu import virgl_pipe_resource_create
from gpuhil.errors import GpuhilError
from gpuhil.protocol import (BlobFlag, BlobMem, Capset, CtrlHdr, CtrlType, CtxCreate, Feature,
                             Message, ResourceCreateBlob, ResourceMapBlob, Submit3D, ctrl_name)

__all__ = ["CommandRefused", "expect", "host3d_blob", "map_blob", "virgl_context"]

#: flags of a blob the host-visible window can map and other devices can import
MAPPABLE_SHAREABLE = int(BlobFlag.MAPPABLE | BlobFlag.SHAREABLE)


class CommandRefused(GpuhilError):
    """A command that prepares state got another response than the one it needs."""

    def __init__(self, command: str, response: str, expected: str) -> None:
        super().__init__(f"{command} got {response}, wanted {expected}")
        self.command = command
        self.response = response
        self.expected = expected

    def __reduce__(self):
        return (CommandRefused, (self.command, self.response, self.expected))


def expect(gpu, command: Message, expected: int = CtrlType.RESP_OK_NODATA) -> Message:
    """Submit ``command``; its response, or CommandRefused unless it is ``expected``."""
    response = gpu.submit(command)
    if response.type != expected:
        raise CommandRefused(type(command).__name__, ctrl_name(response), ctrl_name(expected))
    return response


def virgl_context(gpu, ctx: int, debug_name: bytes = b"gpuhil-raw") -> int:
    """Create virgl context ``ctx`` (VIRGL2 through context_init when the device negotiated
    CONTEXT_INIT, as the kernel driver does for blobs); the context_init used."""
    init = int(Capset.VIRGL2) if gpu.features.has(Feature.CONTEXT_INIT) else 0
    expect(gpu, CtxCreate(debug_name, init, hdr=CtrlHdr(ctx_id=ctx)))
    return init


def host3d_blob(gpu, resource_id: int, ctx: int, blob_id: int, size: int,
                flags: int = MAPPABLE_SHAREABLE) -> Message:
    """A HOST3D blob of ``size`` bytes in context ``ctx``: an inline virgl
    PIPE_RESOURCE_CREATE for ``blob_id`` (CommandRefused if refused), then
    RESOURCE_CREATE_BLOB; the CREATE_BLOB response (RESP_OK_NODATA when it worked)."""
    hdr = CtrlHdr(ctx_id=ctx)
    expect(gpu, Submit3D(virgl_pipe_resource_create(size, blob_id), hdr=hdr))
    return gpu.submit(ResourceCreateBlob(resource_id, BlobMem.HOST3D, int(flags), blob_id, size,
                                         hdr=hdr))


def map_blob(gpu, resource_id: int, offset: int) -> Message:
    """RESOURCE_MAP_BLOB at ``offset`` of the host-visible window; the response
    (RESP_OK_MAP_INFO when mapped: ``gpu.hostmem[offset:]`` then holds the blob)."""
    return gpu.submit(ResourceMapBlob(resource_id, offset))
