"""The device interfaces, run where the device is (a lab guest or a lab machine): the render
node, dma-buf, memfd, udmabuf, VFIO, PCI and the kernel log."""
