"""gpuhil: hardware-in-the-loop tests for the virtio-gpu stack (QEMU, virglrenderer, guest driver, VFIO)."""
from gpuhil.errors import ClosedError, GpuhilError, IoctlError, Unsupported

__all__ = ["ClosedError", "GpuhilError", "IoctlError", "Unsupported"]
__version__ = "0.1.0"
