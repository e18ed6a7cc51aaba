"""The device with no guest: QEMU's qtest line protocol (:mod:`.client`), PCI enumeration and
BAR assignment done by gpuhil because no firmware runs (:mod:`.pci`), and guest RAM as a
shared file gpuhil maps (:mod:`.ram`).  The QEMU itself is started by
:mod:`gpuhil.lab.qtest_machine`."""
