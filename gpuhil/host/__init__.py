"""The host's own resources: GPUs found with pyudev and the leases that share them."""
