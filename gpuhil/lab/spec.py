"""The typed description of a lab guest and its translation into a QEMU argv list.

:class:`GuestSpec` says what the guest is (machine, accelerator, CPUs, memory, GPU, display,
vIOMMU, extra PCI devices, extra arguments); :class:`Placement` says where QEMU finds its files
(binary, kernel, initramfs, exported directories) and :class:`Channels` which inherited file
descriptors carry QMP, the serial console and the agent.  :func:`qemu_argv` combines the three
into the argument list; it never builds a shell string and does no I/O, so it is unit tested alone.
"""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace

MiB = 1 << 20

#: 9p mount tags the initramfs mounts (see gpuhil/lab/initramfs).
TAG_ROOT = "gpuhil.root"
TAG_SRC = "gpuhil.src"
TAG_RUN = "gpuhil.run"
#: The virtio-serial port name the guest agent opens.
AGENT_PORT = "gpuhil.agent"

#: Kernel arguments of every lab boot (LAB.md §2: quiet serial console, panic stops the guest,
#: and the options that shave TCG boot time).
BASE_KERNEL_ARGS = (
    "console=ttyS0", "panic=-1", "quiet", "mitigations=off", "tsc=reliable", "no_timer_check",
    "i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd", "8250.nr_uarts=1",
    "cryptomgr.notests",  # the crypto self-tests cost boot time under TCG and test nothing of ours
)

_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")


class SpecError(ValueError):
    """A guest specification that QEMU would reject or that cannot work."""


class Accel(str, enum.Enum):
    """The accelerator: ``AUTO`` means probe (KVM only when it really works, else TCG)."""

    KVM = "kvm"
    TCG = "tcg"
    AUTO = "auto"


class GpuModel(str, enum.Enum):
    """The virtio-gpu PCI device models: 2-D, or 3-D through virglrenderer."""

    VIRTIO_GPU = "virtio-gpu-pci"
    VIRTIO_GPU_GL = "virtio-gpu-gl-pci"


class Iommu(str, enum.Enum):
    """The emulated IOMMU placed in front of the guest's PCI devices (for VFIO in the guest)."""

    INTEL = "intel-iommu"
    VIRTIO = "virtio-iommu-pci"


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _size(value: int) -> str:
    return f"{value // MiB}M" if value % MiB == 0 else str(value)


@dataclass(frozen=True)
class GpuSpec:
    """A virtio-gpu device and its properties (``None`` leaves QEMU's default)."""

    model: GpuModel = GpuModel.VIRTIO_GPU_GL
    blob: bool = False
    hostmem: int = 0
    venus: bool = False
    drm_native_context: bool = False
    max_outputs: int | None = None
    edid: bool | None = None
    iommu_platform: bool | None = None

    def __post_init__(self) -> None:
        gl = self.model is GpuModel.VIRTIO_GPU_GL
        if (self.venus or self.drm_native_context) and not gl:
            raise SpecError(f"venus and drm_native_context need {GpuModel.VIRTIO_GPU_GL.value}")
        if self.venus and not (self.blob and self.hostmem):
            raise SpecError("venus requires blob=on and a hostmem window")
        if self.drm_native_context and not (self.blob and self.hostmem):
            raise SpecError("drm_native_context requires blob=on and a hostmem window")
        if self.hostmem < 0 or (self.hostmem & (self.hostmem - 1)):
            # QEMU asserts on a BAR that is not a power of two instead of reporting an error.
            raise SpecError(f"hostmem must be a power of two, not {self.hostmem}")
        if self.max_outputs is not None and not 1 <= self.max_outputs <= 16:
            raise SpecError(f"max_outputs must be 1..16, not {self.max_outputs}")

    @property
    def needs_gl(self) -> bool:
        """Whether the device needs an OpenGL display backend."""
        return self.model is GpuModel.VIRTIO_GPU_GL

    def properties(self) -> tuple[str, ...]:
        """The device properties :meth:`device_arg` sets (what the QEMU must have)."""
        return tuple(part.split("=", 1)[0] for part in self.device_arg().split(",")[1:])

    def device_arg(self) -> str:
        """The ``-device`` value, e.g. ``virtio-gpu-gl-pci,blob=on,hostmem=256M,venus=on``."""
        parts = [self.model.value]
        if self.blob:
            parts.append("blob=on")
        if self.hostmem:
            parts.append(f"hostmem={_size(self.hostmem)}")
        if self.venus:
            parts.append("venus=on")
        if self.drm_native_context:
            parts.append("drm_native_context=on")
        if self.max_outputs is not None:
            parts.append(f"max_outputs={self.max_outputs}")
        if self.edid is not None:
            parts.append(f"edid={_on_off(self.edid)}")
        if self.iommu_platform is not None:
            parts.append(f"iommu_platform={_on_off(self.iommu_platform)}")
        return ",".join(parts)


#: The configuration of the gl_guest fixture and of `gpuhil lab boot --gpu venus`.
VENUS_GPU = GpuSpec(GpuModel.VIRTIO_GPU_GL, blob=True, hostmem=256 * MiB, venus=True)
#: OpenGL only (virgl), no blob.
VIRGL_GPU = GpuSpec(GpuModel.VIRTIO_GPU_GL)


@dataclass(frozen=True)
class Display:
    """egl-headless on a host render node; ``/dev/null`` makes Mesa fall back to llvmpipe."""

    rendernode: str = "/dev/null"

    def __post_init__(self) -> None:
        if not self.rendernode.startswith("/") or "," in self.rendernode:
            raise SpecError(f"rendernode must be an absolute path without commas: {self.rendernode!r}")


@dataclass(frozen=True)
class Ivshmem:
    """ivshmem-plain backed by a shared memfd: a PCI device with a RAM BAR for VFIO tests."""

    size: int = 16 * MiB
    id: str = "ivmem"

    def __post_init__(self) -> None:
        if self.size <= 0 or (self.size & (self.size - 1)):
            raise SpecError(f"ivshmem size must be a power of two, not {self.size}")
        if not _ID.match(self.id):
            raise SpecError(f"bad ivshmem id {self.id!r}")

    def args(self) -> list[str]:
        return ["-object", f"memory-backend-memfd,id={self.id},size={_size(self.size)},share=on",
                "-device", f"ivshmem-plain,memdev={self.id}"]


@dataclass(frozen=True)
class Edu:
    """QEMU's educational PCI device (1 MiB MMIO BAR, DMA engine): a second VFIO target."""

    def args(self) -> list[str]:
        return ["-device", "edu"]


PciDevice = Ivshmem | Edu


@dataclass(frozen=True)
class GuestSpec:
    """What a lab guest is.  Validated on construction; see :func:`qemu_argv`."""

    machine: str = "q35"
    accel: Accel = Accel.AUTO
    cpus: int = 2
    memory_mib: int = 2048
    gpu: GpuSpec | None = None
    display: Display = field(default_factory=Display)
    iommu: Iommu | None = None
    devices: tuple[PciDevice, ...] = ()
    kernel_args: tuple[str, ...] = ()
    extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _ID.match(self.machine):
            raise SpecError(f"bad machine type {self.machine!r}")
        if self.cpus < 1:
            raise SpecError(f"cpus must be >= 1, not {self.cpus}")
        if self.memory_mib < 128:
            raise SpecError(f"memory_mib must be >= 128, not {self.memory_mib}")
        if self.iommu is Iommu.INTEL and not self.machine.startswith("q35"):
            raise SpecError("intel-iommu needs the q35 machine")
        ids = [d.id for d in self.devices if isinstance(d, Ivshmem)]
        if len(ids) != len(set(ids)):
            raise SpecError(f"duplicate ivshmem ids: {ids}")
        for arg in self.kernel_args:
            if not arg or any(c.isspace() for c in arg):
                raise SpecError(f"kernel argument {arg!r} must be one word")
        object.__setattr__(self, "devices", tuple(self.devices))
        object.__setattr__(self, "kernel_args", tuple(self.kernel_args))
        object.__setattr__(self, "extra_args", tuple(self.extra_args))

    def with_accel(self, accel: Accel) -> "GuestSpec":
        """A copy with the accelerator resolved (``qemu_argv`` refuses ``AUTO``)."""
        return replace(self, accel=accel)

    def kernel_cmdline(self) -> str:
        """The guest kernel command line."""
        args = list(BASE_KERNEL_ARGS)
        if self.iommu is Iommu.INTEL:
            args.append("intel_iommu=on")
        args.extend(self.kernel_args)
        return " ".join(args)


@dataclass(frozen=True)
class Placement:
    """Paths as QEMU sees them (inside the chroot when the lab's sid tree runs it)."""

    qemu: str
    kernel: str
    initramfs: str
    guest_root: str
    project_root: str
    run_dir: str
    data_dir: str | None = None  # QEMU's firmware and keymaps (-L), for a QEMU outside /usr
    qmp_object: bool = True      # the QEMU has -object monitor-qmp (11.x); else -mon


@dataclass(frozen=True)
class Channels:
    """Inherited socket file descriptors QEMU uses as its QMP, console and agent chardevs."""

    qmp_fd: int
    console_fd: int
    agent_fd: int


def _fsdev(fsid: str, path: str, tag: str, readonly: bool) -> list[str]:
    if "," in path:
        raise SpecError(f"9p export path must not contain a comma: {path!r}")
    opts = f"local,id={fsid},path={path},security_model=passthrough,multidevs=remap"
    if readonly:
        opts += ",readonly=on"
    return ["-fsdev", opts, "-device", f"virtio-9p-pci,fsdev={fsid},mount_tag={tag}"]


def qmp_args(channels: Channels, where: Placement) -> list[str]:
    """The QMP monitor on the inherited socket: ``-object monitor-qmp`` where the QEMU has it
    (11.x, which deprecates ``-mon``), else ``-mon mode=control`` (every older release)."""
    chardev = ["-chardev", f"socket,id=qmp,fd={channels.qmp_fd}"]
    if where.qmp_object:
        return chardev + ["-object", "monitor-qmp,id=qmpmon,chardev=qmp"]
    return chardev + ["-mon", "chardev=qmp,mode=control"]


def data_dir_args(where: Placement) -> list[str]:
    """``-L DIR`` for a QEMU whose data directory is not the one it was built for."""
    return ["-L", where.data_dir] if where.data_dir else []


def smoke_argv(accel: Accel, where: Placement, channels: Channels) -> list[str]:
    """A kernel-only boot that ends in a panic once the kernel has run all of its init (no
    initramfs, no root): reaching that panic proves the accelerator can run a stock kernel."""
    return [
        where.qemu, "-nodefaults", "-no-user-config", "-no-reboot",
        "-machine", f"q35,accel={accel.value}", "-cpu", "host" if accel is Accel.KVM else "max",
        *data_dir_args(where), "-m", "256M", "-kernel", where.kernel,
        "-append", "console=ttyS0 panic=-1 rdinit=/nonexistent root=/dev/nonexistent",
        *qmp_args(channels, where),
        "-chardev", f"socket,id=con,fd={channels.console_fd}", "-serial", "chardev:con",
        "-monitor", "none", "-display", "none",
    ]


#: what QEMU logs to its stderr beside errors: its complaints about what the guest's driver
#: did ("command size incorrect", "resource does not exist"), for the per-test stderr slice
LOG_ARGS = ("-d", "guest_errors")


def qemu_argv(spec: GuestSpec, where: Placement, channels: Channels) -> list[str]:
    """The full QEMU command line for ``spec`` (the accelerator must already be resolved)."""
    if spec.accel is Accel.AUTO:
        raise SpecError("resolve the accelerator first (GuestSpec.with_accel)")
    machine = f"{spec.machine},accel={spec.accel.value}"
    if spec.iommu is Iommu.INTEL:
        machine += ",kernel-irqchip=split"
    argv = [
        where.qemu, "-nodefaults", "-no-user-config", "-no-reboot",
        "-machine", machine, "-cpu", "host" if spec.accel is Accel.KVM else "max",
        *data_dir_args(where), "-smp", str(spec.cpus), "-m", f"{spec.memory_mib}M",
        "-kernel", where.kernel, "-initrd", where.initramfs, "-append", spec.kernel_cmdline(),
        *qmp_args(channels, where),
        "-chardev", f"socket,id=con,fd={channels.console_fd}", "-serial", "chardev:con",
        "-monitor", "none", *LOG_ARGS,
    ]
    # The IOMMU goes first so that every device behind it is created after it.
    if spec.iommu is Iommu.INTEL:
        argv += ["-device", "intel-iommu,intremap=on,caching-mode=on"]
    elif spec.iommu is Iommu.VIRTIO:
        argv += ["-device", "virtio-iommu-pci"]
    argv += _fsdev("fsroot", where.guest_root, TAG_ROOT, readonly=True)
    argv += _fsdev("fssrc", where.project_root, TAG_SRC, readonly=False)
    argv += _fsdev("fsrun", where.run_dir, TAG_RUN, readonly=False)
    argv += [
        "-device", "virtio-serial-pci,id=vser",
        "-chardev", f"socket,id=agent,fd={channels.agent_fd}",
        "-device", f"virtserialport,bus=vser.0,chardev=agent,name={AGENT_PORT}",
    ]
    if spec.gpu is not None and spec.gpu.needs_gl:
        argv += ["-display", f"egl-headless,rendernode={spec.display.rendernode}"]
    else:
        argv += ["-display", "none"]
    if spec.gpu is not None:
        argv += ["-device", spec.gpu.device_arg()]
    for device in spec.devices:
        argv += device.args()
    argv += list(spec.extra_args)
    return argv
