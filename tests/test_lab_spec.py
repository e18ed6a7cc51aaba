"""GuestSpec validation and its QEMU argv (pure logic, no QEMU)."""
import dataclasses

import pytest

from gpuhil.lab.spec import (
    MiB, TAG_ROOT, TAG_RUN, TAG_SRC, VENUS_GPU, Accel, Channels, Display, Edu, GpuModel, GpuSpec,
    GuestSpec, Iommu, Ivshmem, Placement, SpecError, qemu_argv,
)

WHERE = Placement(qemu="/usr/bin/qemu-system-x86_64", kernel="/gpuhil/run/boot/vmlinux",
                  initramfs="/gpuhil/run/boot/initramfs.cpio", guest_root="/srv/guestroot",
                  project_root="/gpuhil/src", run_dir="/gpuhil/run")
FDS = Channels(qmp_fd=5, console_fd=6, agent_fd=7)


def argv_of(spec: GuestSpec) -> list[str]:
    return qemu_argv(spec.with_accel(Accel.TCG) if spec.accel is Accel.AUTO else spec, WHERE, FDS)


def values(argv: list[str], option: str) -> list[str]:
    """Every value given to ``option`` in ``argv``."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == option]


def test_base_flags_follow_lab_md():
    """The default spec boots the PVH vmlinux under TCG with the measured fast flags."""
    argv = argv_of(GuestSpec())
    assert argv[0] == WHERE.qemu
    for flag in ("-nodefaults", "-no-user-config", "-no-reboot"):
        assert flag in argv
    assert values(argv, "-machine") == ["q35,accel=tcg"]
    assert values(argv, "-cpu") == ["max"]
    assert values(argv, "-smp") == ["2"] and values(argv, "-m") == ["2048M"]
    assert values(argv, "-kernel") == [WHERE.kernel]
    assert values(argv, "-initrd") == [WHERE.initramfs]
    cmdline = values(argv, "-append")[0].split()
    for word in ("console=ttyS0", "panic=-1", "quiet", "mitigations=off", "tsc=reliable",
                 "no_timer_check"):
        assert word in cmdline
    assert values(argv, "-display") == ["none"]


def test_every_9p_export_remaps_devices_and_only_root_is_readonly():
    argv = argv_of(GuestSpec())
    fsdevs = values(argv, "-fsdev")
    assert len(fsdevs) == 3 and all("multidevs=remap" in f for f in fsdevs)
    by_path = {f.split("path=")[1].split(",")[0]: f for f in fsdevs}
    assert "readonly=on" in by_path["/srv/guestroot"]
    assert "readonly=on" not in by_path["/gpuhil/run"]
    tags = [d.split("mount_tag=")[1] for d in values(argv, "-device") if d.startswith("virtio-9p-pci")]
    assert tags == [TAG_ROOT, TAG_SRC, TAG_RUN]


def test_channels_are_inherited_socket_fds():
    chardevs = values(argv_of(GuestSpec()), "-chardev")
    assert "socket,id=qmp,fd=5" in chardevs
    assert "socket,id=con,fd=6" in chardevs
    assert "socket,id=agent,fd=7" in chardevs
    devices = values(argv_of(GuestSpec()), "-device")
    assert "virtserialport,bus=vser.0,chardev=agent,name=gpuhil.agent" in devices


def test_qmp_monitor_follows_what_the_qemu_has():
    """QMP is ``-object monitor-qmp`` where the QEMU has it (11.x deprecates ``-mon``) and
    ``-mon chardev=qmp,mode=control`` where it does not (QEMU 10.0)."""
    new = qemu_argv(GuestSpec(accel=Accel.TCG), WHERE, FDS)
    assert values(new, "-object") == ["monitor-qmp,id=qmpmon,chardev=qmp"] and "-mon" not in new
    old = qemu_argv(GuestSpec(accel=Accel.TCG), dataclasses.replace(WHERE, qmp_object=False), FDS)
    assert values(old, "-mon") == ["chardev=qmp,mode=control"]
    assert not any("monitor-qmp" in a for a in old)


def test_qtest_machine_follows_the_qemu_s_qmp_kind_and_data_dir():
    """The qtest tier's QEMU line uses the same QMP choice and ``-L`` as a guest's (a QEMU 10.0
    has no ``-object monitor-qmp``; a relocated QEMU needs its data directory)."""
    from gpuhil.lab.qtest_spec import qtest_argv

    old = dataclasses.replace(WHERE, qmp_object=False, data_dir="/opt/qemu/share/qemu")
    argv = qtest_argv(old, FDS, gpu=None, ram_mib=64, display=Display())
    assert values(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert not any("monitor-qmp" in a for a in argv)
    assert values(argv, "-L") == ["/opt/qemu/share/qemu"]
    new = qtest_argv(WHERE, FDS, gpu=None, ram_mib=64, display=Display())
    assert "monitor-qmp,id=qmpmon,chardev=qmp" in values(new, "-object") and "-L" not in new


def test_venus_gpu_uses_egl_headless_on_the_render_node():
    argv = argv_of(GuestSpec(gpu=VENUS_GPU, display=Display("/dev/dri/renderD129")))
    assert "virtio-gpu-gl-pci,blob=on,hostmem=256M,venus=on" in values(argv, "-device")
    assert values(argv, "-display") == ["egl-headless,rendernode=/dev/dri/renderD129"]


def test_default_display_is_the_software_fallback():
    argv = argv_of(GuestSpec(gpu=VENUS_GPU))
    assert values(argv, "-display") == ["egl-headless,rendernode=/dev/null"]


def test_gpu_options_render_in_qemu_syntax():
    gpu = GpuSpec(GpuModel.VIRTIO_GPU_GL, blob=True, hostmem=64 * MiB, drm_native_context=True,
                  max_outputs=2, edid=False, iommu_platform=True)
    assert gpu.device_arg() == ("virtio-gpu-gl-pci,blob=on,hostmem=64M,drm_native_context=on,"
                                "max_outputs=2,edid=off,iommu_platform=on")
    assert GpuSpec(GpuModel.VIRTIO_GPU).device_arg() == "virtio-gpu-pci"


@pytest.mark.parametrize("kwargs, message", [
    (dict(venus=True), "venus requires blob"),
    (dict(venus=True, blob=True), "venus requires blob"),
    (dict(drm_native_context=True, blob=True), "drm_native_context requires"),
    (dict(model=GpuModel.VIRTIO_GPU, venus=True, blob=True, hostmem=MiB), "need virtio-gpu-gl-pci"),
    (dict(blob=True, hostmem=3 * MiB), "power of two"),
    (dict(max_outputs=17), "1..16"),
    (dict(max_outputs=0), "1..16"),
])
def test_gpu_specs_qemu_would_reject_are_refused(kwargs, message):
    with pytest.raises(SpecError, match=message):
        GpuSpec(**kwargs)


def test_vtd_adds_split_irqchip_iommu_first_and_guest_intel_iommu():
    argv = argv_of(GuestSpec(iommu=Iommu.INTEL, devices=(Ivshmem(), Edu())))
    assert values(argv, "-machine") == ["q35,accel=tcg,kernel-irqchip=split"]
    devices = values(argv, "-device")
    assert devices[0] == "intel-iommu,intremap=on,caching-mode=on"
    assert "intel_iommu=on" in values(argv, "-append")[0].split()
    assert "memory-backend-memfd,id=ivmem,size=16M,share=on" in values(argv, "-object")
    assert devices[-2:] == ["ivshmem-plain,memdev=ivmem", "edu"]


def test_virtio_iommu_needs_no_guest_option():
    argv = argv_of(GuestSpec(iommu=Iommu.VIRTIO))
    assert values(argv, "-device")[0] == "virtio-iommu-pci"
    assert values(argv, "-machine") == ["q35,accel=tcg"]
    assert "intel_iommu=on" not in values(argv, "-append")[0]


def test_kvm_uses_the_host_cpu():
    argv = argv_of(GuestSpec(accel=Accel.KVM))
    assert values(argv, "-machine") == ["q35,accel=kvm"] and values(argv, "-cpu") == ["host"]


def test_auto_accelerator_must_be_resolved_first():
    with pytest.raises(SpecError, match="resolve the accelerator"):
        qemu_argv(GuestSpec(), WHERE, FDS)


def test_extra_and_kernel_args_are_kept_as_separate_words():
    spec = GuestSpec(kernel_args=("loglevel=7",), extra_args=("-device", "edu,id=x y"))
    argv = argv_of(spec)
    assert argv[-2:] == ["-device", "edu,id=x y"]
    assert values(argv, "-append")[0].endswith(" loglevel=7")


@pytest.mark.parametrize("kwargs", [
    dict(cpus=0), dict(memory_mib=64), dict(machine="q35; rm -rf /"),
    dict(kernel_args=("two words",)), dict(iommu=Iommu.INTEL, machine="pc"),
    dict(devices=(Ivshmem(), Ivshmem())),
])
def test_invalid_guest_specs_are_refused(kwargs):
    with pytest.raises(SpecError):
        GuestSpec(**kwargs)


def test_ivshmem_size_and_rendernode_are_checked():
    with pytest.raises(SpecError):
        Ivshmem(size=3 * MiB)
    with pytest.raises(SpecError):
        Display("renderD128")


def test_smoke_boot_has_no_initramfs_and_cannot_find_a_root():
    from gpuhil.lab.spec import smoke_argv

    argv = smoke_argv(Accel.KVM, WHERE, FDS)
    assert "-initrd" not in argv and values(argv, "-machine") == ["q35,accel=kvm"]
    assert "rdinit=/nonexistent" in values(argv, "-append")[0]
