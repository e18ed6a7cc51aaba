"""Ioctl-path benchmark: gpuhil vs C vs fcntl.ioctl+struct (GETPARAM loop, 64 KiB blob cycle).

It needs a virtio-gpu render node, so it runs where one exists: in a lab guest
(``guest.call(bench.ioctl_payload.run)`` returns an :class:`~bench.ioctl_payload.IoctlBench`)
or directly on a machine that has the node.  ``main()`` runs it locally when a node is present;
otherwise it prepares a static reference binary for guests without a compiler and says so.
"""
from __future__ import annotations

import sys

from bench import ioctl_payload
from gpuhil.virtgpu import find_render_nodes


def main(argv: list[str] | None = None) -> int:
    """Run locally if a render node exists, print the ratios; else explain and skip."""
    if not find_render_nodes():
        try:
            built = ioctl_payload.build_reference(ioctl_payload.PREBUILT, static=True)
        except Exception as exc:                       # a missing static libc is not fatal
            built = None
            print(f"bench_ioctl: could not prebuild the static C reference: {exc}")
        print("bench_ioctl: skipped: no render node on this machine; run it in a lab guest with "
              "guest.call(bench.ioctl_payload.run) and print result.report()"
              + (f" (static C reference prebuilt at {built})" if built else ""))
        return 0
    result = ioctl_payload.run()
    print(f"bench_ioctl on {result.node} (C reference: {result.c_binary or 'unavailable'})")
    print(result.report())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
