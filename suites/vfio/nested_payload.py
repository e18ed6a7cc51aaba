"""Payload of the nested cases: QEMU run under qtest inside this guest as the VFIO user of one
of its vfio-pci functions (:class:`gpuhil.nested.inner_qemu.InnerQemu`).  Imports only the
standard library and gpuhil."""
from __future__ import annotations

import errno
import os
import re
import subprocess

#: the trace events of QEMU's VFIO region set-up the cases ask for (when the QEMU has them)
TRACES = ("vfio_region_dmabuf", "vfio_region_mmap")
_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)")


def qemu_version(qemu: str = "qemu-system-x86_64") -> tuple[int, int] | None:
    """(major, minor) of the QEMU in this guest, None when it prints no version."""
    out = subprocess.run([qemu, "-version"], capture_output=True, text=True, timeout=120)
    found = _VERSION.search(out.stdout)
    return (int(found[1]), int(found[2])) if found else None


def _group_free(address: str) -> str:
    """Whether this process can open the function's VFIO group now ("free", or the errno)."""
    group = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{address}/iommu_group"))
    try:
        os.close(os.open(f"/dev/vfio/{group}", os.O_RDWR))
        return "free"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))


def vfio_user(address: str) -> dict:
    """Inner QEMU with ``-device vfio-pci,host=<address>`` (and the TRACES it knows): the
    dma-bufs it holds once up (size and exporter, from its fdinfo), its stderr lines about
    dma-bufs and the traced regions; after it is killed: whether its process and run
    directory are gone and the VFIO group can be opened again.  ``unavailable``: why no inner
    QEMU could run (no qtest accelerator)."""
    from gpuhil.nested.inner_qemu import InnerQemu, InnerQemuUnavailable, dma_bufs, trace_events

    out: dict = {"qemu_version": qemu_version()}
    known = trace_events()
    out["traces"] = [event for event in TRACES if event in known]
    try:
        inner = InnerQemu([f"vfio-pci,host={address}"], traces=out["traces"])
    except InnerQemuUnavailable as exc:
        out["unavailable"] = str(exc)
        return out
    try:
        out["start_seconds"] = inner.start_seconds
        out["dma_bufs"] = [{"size": b["size"], "exp_name": b["exp_name"]}
                           for b in dma_bufs(inner.pid)]
        out["group_while_running"] = _group_free(address)
    finally:
        pid, run_dir = inner.pid, inner.run_dir
        stderr = inner.close()
    lines = stderr.splitlines()
    out["dma_buf_lines"] = [line for line in lines if "dma-buf" in line or "dmabuf" in line]
    out["reset_lines"] = [line for line in lines if "Cannot reset device" in line]
    out["process_gone"] = not os.path.exists(f"/proc/{pid}")
    out["run_dir_gone"] = not os.path.exists(run_dir)
    out["group_after"] = _group_free(address)
    return out
