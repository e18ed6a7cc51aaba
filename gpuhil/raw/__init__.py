"""The raw path: gpuhil's own virtio-gpu driver (virtio 1.x PCI transport, split virtqueues,
:class:`~gpuhil.raw.rawgpu.RawGpu`)."""
