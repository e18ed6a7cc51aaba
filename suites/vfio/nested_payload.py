"""Payload of the nested cases: QEMU run under qtest inside this guest as the VFIO user of one
of its vfio-pci functions (:class:`gpuhil.nested.inner_qemu.InnerQemu`).  Imports only the
standard library and gpuhil."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import tempfile

#: the trace events of QEMU's VFIO region set-up the cases ask for (when the QEMU has them)
TRACES = ("vfio_region_dmabuf", "vfio_region_mmap")
_VERSION = re.compile(r"QEMU emulator version (\d+)\.(\d+)")


def qemu_version(qemu: str = "qemu-system-x86_64") -> tuple[int, int] | None:
    """(major, minor) of the QEMU in this guest, None when it prints no version."""
    out = subprocess.run([qemu, "-version"], capture_output=True, text=True, timeout=120)
    found = _VERSION.search(out.stdout)
    return (int(found[1]), int(found[2])) if found else None


def _known_traces() -> list[str]:
    """The TRACES this guest's QEMU has."""
    from gpuhil.nested.inner_qemu import trace_events

    known = trace_events()
    return [event for event in TRACES if event in known]


def _dma_buf_lines(lines: list[str]) -> list[str]:
    """The inner QEMU's stderr lines about dma-bufs."""
    return [line for line in lines if "dma-buf" in line or "dmabuf" in line]


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
    from gpuhil.nested.inner_qemu import InnerQemu, InnerQemuUnavailable, dma_bufs

    out: dict = {"qemu_version": qemu_version(), "traces": _known_traces()}
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
    out["dma_buf_lines"] = _dma_buf_lines(lines)
    out["reset_lines"] = [line for line in lines if "Cannot reset device" in line]
    out["process_gone"] = not os.path.exists(f"/proc/{pid}")
    out["run_dir_gone"] = not os.path.exists(run_dir)
    out["group_after"] = _group_free(address)
    return out


def without_dma_buf(address: str, bar: int, withhold: bool) -> dict:
    """Inner QEMU with ``-device vfio-pci,host=<address>`` on a kernel without VFIO dma-buf:
    this one's answer to VFIO_DEVICE_FEATURE withheld (``withhold``: ENOTTY, as kernels before
    the feature answer; gpuhil.nested.seccomp), else the kernel as it is.  Its dma-bufs, its
    dma-buf lines, the traced mmaps; the BAR ``bar`` written and read back through the inner
    machine's bus (the device still works); its process and group after it is killed.  Only
    ``qemu_version`` for a QEMU older than 11.0; ``unavailable``: why no inner QEMU could run."""
    from gpuhil import _vfio
    from gpuhil.devices.pci import PciDevice
    from gpuhil.nested.inner_qemu import InnerQemu, InnerQemuUnavailable, dma_bufs

    denied = {_vfio.ABI["VFIO_DEVICE_FEATURE"]: errno.ENOTTY} if withhold else None
    out: dict = {"qemu_version": qemu_version(), "traces": _known_traces()}
    if out["qemu_version"] is None or out["qemu_version"] < (11, 0):
        return out  # a QEMU that tries no dma-buf per BAR (since 11.0): nothing to see
    host = PciDevice(address)
    try:
        inner = InnerQemu([f"vfio-pci,host={address}"], traces=out["traces"],
                          denied_ioctls=denied)
    except InnerQemuUnavailable as exc:
        out["unavailable"] = str(exc)
        return out
    try:
        out["dma_bufs"] = dma_bufs(inner.pid)
        ids = (host.vendor, host.device)
        function = next(f for f in inner.functions() if (f.vendor, f.device) == ids)
        window = function.mmap(bar, 0, 4096)
        pattern = bytes(range(256)) * 16
        window.write(pattern)
        out["readback_equal"] = window.read(0, len(pattern)) == pattern
    finally:
        pid = inner.pid
        stderr = inner.close()
    lines = stderr.splitlines()
    out["dma_buf_lines"] = _dma_buf_lines(lines)
    out["mmap_lines"] = [line for line in lines if "vfio_region_mmap" in line]
    out["process_gone"] = not os.path.exists(f"/proc/{pid}")
    out["group_after"] = _group_free(address)
    return out


def has_device(driver: str, qemu: str = "qemu-system-x86_64") -> bool:
    """Whether this guest's QEMU lists ``driver`` in ``-device help``."""
    out = subprocess.run([qemu, "-device", "help"], capture_output=True, text=True, timeout=120)
    return f'name "{driver}"' in out.stdout


def vfio_user_protocol() -> dict:
    """gpuhil's vfio-user server (:class:`gpuhil.nested.vfio_user_server.VfioUserServer`, a
    function with a memfd RAM BAR 0) on a thread here, then an inner QEMU with
    ``vfio-user-pci`` on its socket (and QEMU's vfio_user trace events): the dma-bufs the inner
    QEMU holds once up, whether it mmapped the BAR's memfd, its stderr lines about dma-bufs,
    the commands the server answered; after both are closed, whether the socket is gone."""
    import json

    from gpuhil.nested.inner_qemu import InnerQemu, dma_bufs, trace_events
    from gpuhil.nested.vfio_user_server import VfioUserServer

    traces = [event for event in ("vfio_user_recv_hdr",) if event in trace_events()]
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpuhil-vfio-user-") as run_dir:
        sock = os.path.join(run_dir, "server.sock")
        with VfioUserServer(sock) as server:
            device = json.dumps({"driver": "vfio-user-pci",
                                 "socket": {"type": "unix", "path": sock}})
            with InnerQemu([device], traces=traces) as inner:
                out["dma_bufs"] = dma_bufs(inner.pid)
                with open(f"/proc/{inner.pid}/maps") as maps:
                    out["bar_mapped"] = server.memfd_name in maps.read()
                stderr = inner.stderr()
            out["commands"] = sorted(set(server.commands))
            out["server_error"] = repr(server.error) if server.error else None
        out["socket_gone"] = not os.path.exists(sock)
    lines = stderr.splitlines()
    out["dma_buf_lines"] = _dma_buf_lines(lines)
    out["traced"] = sum("vfio_user_recv_hdr" in line for line in lines) if traces else None
    return out


#: bus 0 device of the root port the unplug case puts the vfio-pci function behind
ROOT_PORT_DEV = 4


def _vfio_fds(pid: int) -> list[str]:
    """What the process holds open under /dev/vfio (its group, the container)."""
    fd_dir = f"/proc/{pid}/fd"
    targets = []
    for name in os.listdir(fd_dir):
        try:
            targets.append(os.readlink(os.path.join(fd_dir, name)))
        except OSError:
            continue
    return sorted(t for t in targets if t.startswith("/dev/vfio/"))


def device_del(address: str, timeout: float = 30.0, release_wait: float = 5.0) -> dict:
    """Inner QEMU with the function as ``vfio-pci`` behind a PCIe root port (native hotplug),
    then ``device_del`` and the slot powered off as a guest would: its dma-bufs, VFIO fds and
    the group's state before and after (dma-bufs waited for up to ``release_wait`` seconds:
    ``dma_buf_seconds``, ``dma_buf_fdinfo``), the slot status between, whether ``info qtree``
    still shows it, and the function's driver afterwards, all while the inner QEMU runs on."""
    import time

    from gpuhil.nested.hotplug import NATIVE_HOTPLUG, power_off_slot, slot_status
    from gpuhil.nested.inner_qemu import InnerQemu, dma_bufs

    port = f"pcie-root-port,id=rp0,chassis=1,slot=1,bus=pcie.0,addr={ROOT_PORT_DEV:#x}"
    out: dict = {}
    with InnerQemu([port, f"vfio-pci,host={address},bus=rp0,id=vf0"], options=NATIVE_HOTPLUG,
                   monitor=True) as inner:
        pid = inner.pid
        out["before"] = {"dma_bufs": len(dma_bufs(pid)), "vfio_fds": len(_vfio_fds(pid)),
                         "group": _group_free(address)}
        out["device_del"] = inner.monitor.command("device_del vf0")
        out["slot_status"] = slot_status(inner.qtest, ROOT_PORT_DEV)
        power_off_slot(inner.qtest, ROOT_PORT_DEV)
        deadline = time.monotonic() + timeout
        while True:
            out["in_qtree"] = "vfio-pci" in inner.monitor.command("info qtree")
            if not out["in_qtree"] or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        unplugged = time.monotonic()
        while True:
            left = dma_bufs(pid)
            if not left or time.monotonic() >= unplugged + release_wait:
                break
            time.sleep(0.1)  # memory regions are finalized after an RCU grace period
        out["dma_buf_seconds"] = round(time.monotonic() - unplugged, 2)
        out["dma_buf_fdinfo"] = left
        out["after"] = {"dma_bufs": len(left), "vfio_fds": len(_vfio_fds(pid)),
                        "group": _group_free(address)}
        out["alive"] = inner.alive
    out["driver"] = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{address}/driver"))
    return out
