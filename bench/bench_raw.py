"""Raw-path benchmark: commands per second and round-trip latency through gpuhil.raw.rawgpu (the
device on vfio-pci) vs the same operation through the kernel's virtio_gpu ioctls, on the same
device in the same guest boot (raw first, then the device is rebound to virtio-pci).

Ratios are kernel time / raw time (above 1: the raw path is faster).  Caveats the report prints:
the kernel answers GET_CAPS from its capset cache after the first query (no device round trip),
and its blob create and GEM_CLOSE queue their commands without waiting for the response, while
every raw submission waits for its completion.
"""
from __future__ import annotations

import sys

from bench import Result
from bench import raw_payload
from bench.raw_payload import PathTimings


def _results(raw: PathTimings, kernel: PathTimings) -> list[Result]:
    out = []
    for label, r, k in (("capset query (info+get vs GET_CAPS)", raw.capset, kernel.capset),
                        ("4 KiB blob create+unref", raw.blob, kernel.blob)):
        out.append(Result("raw", f"{label} best", r.best * 1e-9, k.best * 1e-9, "kernel ioctl"))
        out.append(Result("raw", f"{label} median", r.median * 1e-9, k.median * 1e-9,
                          "kernel ioctl"))
    return out


def report(raw: PathTimings, kernel: PathTimings) -> str:
    """Latency per operation, device commands per second and the ratios."""
    lines = []
    for label, r, k, rc in (("capset query", raw.capset, kernel.capset, raw.capset_commands),
                            ("blob create+unref", raw.blob, kernel.blob, raw.blob_commands)):
        lines.append(f"{label}: raw {r.best / 1e3:.1f} us/op ({rc * 1e9 / r.best:.0f} commands/s, "
                     f"median {r.median / 1e3:.1f} us), kernel {k.best / 1e3:.1f} us/op "
                     f"(median {k.median / 1e3:.1f} us); kernel/raw {k.best / r.best:.2f}x "
                     f"(median {k.median / r.median:.2f}x)")
    if raw.batched_ns_per_command:
        lines.append(f"raw batch of {raw_payload.BATCH} GET_CAPSET_INFO: "
                     f"{raw.batched_ns_per_command / 1e3:.1f} us/command ({1e9 / raw.batched_ns_per_command:.0f} commands/s)")
    lines.append("note: the kernel serves GET_CAPS from its cache after the first query and "
                 "does not wait for CREATE_BLOB/UNREF responses; raw waits for every response")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Result]:
    """Boot the lab's "raw" configuration, time the raw path, rebind, time the kernel path."""
    from gpuhil.lab.guest import Guest
    from gpuhil.lab.setup import LabSetup
    from gpuhil.devices.vfio_binding import bind_vfio, restore_driver
    from gpuhil.lab.configurations import CONFIGURATIONS
    from gpuhil.devices.pci_ids import VIRTIO_GPU

    setup = LabSetup.default(progress=lambda line: print(f"  {line}", file=sys.stderr))
    print("bench_raw: booting the lab's raw configuration (virtio-gpu-gl behind intel-iommu)",
          flush=True)
    with Guest(CONFIGURATIONS["raw"], setup=setup, boot_timeout=300) as guest:
        address, _group, original = guest.call(bind_vfio, *VIRTIO_GPU)
        raw = guest.call(raw_payload.run_raw, address)
        guest.call(restore_driver, address, original)
        node = guest.call(raw_payload.load_virtio_gpu)
        kernel = guest.call(raw_payload.run_kernel, node)
    print(f"bench_raw on {address} (render node {node} after rebinding)")
    print(report(raw, kernel))
    return _results(raw, kernel)


if __name__ == "__main__":
    for result in main(sys.argv[1:]):
        print(result.line())
