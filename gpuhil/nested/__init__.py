"""The nested vantage point: QEMU run inside a lab guest (guest side)."""
