"""Ioctl-path benchmark: gpuhil vs C vs fcntl.ioctl+struct (GETPARAM loop, 64 KiB blob cycle).

It needs a virtio-gpu render node, so it runs where one exists: in a lab guest
(``guest.call(bench.ioctl_payload.run)`` returns an :class:`~bench.ioctl_payload.IoctlBench`)
or directly on a machine that has the node.  ``main()`` runs it locally when a node is present;
otherwise it prepares a static reference binary for guests without a compiler and says so.
"""
from __future__ import annotations

import sys

from bench import ioctl_payload
from gpuhil.devices.virtgpu import find_render_nodes


def main(argv: list[str] | None = None) -> int:
    """Run where a render node exists; otherwise boot a lab guest with a 3-D virtio-gpu and
    run the payload there.  Prints the ratios."""
    if find_render_nodes():
        result = ioctl_payload.run()
    else:
        from gpuhil.bringup import prepare_gpu
        from gpuhil.lab.guest import Guest
        from gpuhil.lab.setup import LabSetup
        from gpuhil.lab.spec import VENUS_GPU, GuestSpec

        print("bench_ioctl: no render node here; booting a lab guest (virtio-gpu-gl, venus)",
              flush=True)
        setup = LabSetup.default(progress=lambda line: print(f"  {line}", file=sys.stderr))
        with Guest(GuestSpec(gpu=VENUS_GPU), setup=setup, boot_timeout=300) as guest:
            prepare_gpu(guest, 60)
            result = guest.call(ioctl_payload.run_when_ready)
    print(f"bench_ioctl on {result.node} (C reference: {result.c_binary or 'unavailable'})")
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
