"""The virtio-gpu protocol suite: raw commands on the device's virtqueues (gpuhil.raw.rawgpu)."""
