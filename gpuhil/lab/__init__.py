"""The virtual lab: a Debian sid tree that is both the host-side QEMU stack (run through a chroot)
and the guest's root, the guest kernel and initramfs taken from it, and the QEMU guests booted
on them.  ``gpuhil.lab.assets.ensure_assets`` builds or finds the cached assets."""
