"""struct virtio_gpu_config, the device configuration space of virtio-gpu.  Import
:class:`VirtioGpuConfig` from :mod:`gpuhil.protocol`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from gpuhil import _protocol
from gpuhil.protocol.constants import ABI, ProtocolError, bytes_view

__all__ = ["VirtioGpuConfig"]


@dataclass
class VirtioGpuConfig:
    """struct virtio_gpu_config (device config space, 20 bytes with blob_alignment)."""
    events_read: int = 0
    events_clear: int = 0
    num_scanouts: int = 0
    num_capsets: int = 0
    blob_alignment: int = 0

    SIZE: ClassVar[int] = ABI["sizeof(struct virtio_gpu_config)"]

    def encode_into(self, buf, offset: int = 0) -> int:
        """Write the 20 bytes at buf[offset:]; return 20."""
        try:
            return _protocol.encode_config(bytes_view(buf), offset, *dataclasses.astuple(self))
        except OverflowError as e:
            raise ProtocolError(f"virtio_gpu_config: a value does not fit its field ({e})") \
                from None

    def encode(self) -> bytes:
        """The 20 little-endian bytes."""
        buf = bytearray(self.SIZE)
        self.encode_into(buf)
        return bytes(buf)

    @classmethod
    def decode(cls, buf, offset: int = 0, *, strict: bool = True) -> VirtioGpuConfig:
        """Read it from buf[offset:]; strict: exactly 20 bytes must be there."""
        return cls(*_protocol.decode_config(bytes_view(buf), offset, strict))
