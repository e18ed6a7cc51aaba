"""Invalid virtio-gpu device options: QEMU refuses them at startup with its exact error and exit
code 1, and the refused start leaves nothing behind (no QEMU, no run directory, no open fds).

No guest boots here: QEMU is started from the lab's argv with the device options as given
(:mod:`suites.config.devices`) and ends during device realize, well under a second.  The
messages are those of QEMU 11.1 (``hw/display/virtio-gpu.c``, ``virtio-gpu-base.c``,
``virtio-gpu-gl.c``, ``virtio-gpu-virgl.c``, QEMU.md §3.1); where another QEMU words one
differently, :data:`REFUSALS` is the one place to change.  A case whose properties the target's
QEMU does not have (``-device TYPE,help``) is skipped with them named.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpuhil.lab.setup import LabSetup
from gpuhil.lab.spec import GuestSpec
from suites.config.devices import DeviceOptions, Launch, host_udmabuf, launch, memfd_ram_args

GL = "virtio-gpu-gl-pci"
PCI = "virtio-gpu-pci"

VENUS_NEEDS = "venus requires enabled blob and hostmem options"
DRM_NEEDS = "drm requires enabled blob and hostmem options"
BLOB_NEEDS = "need rutabaga or udmabuf for blob resources"
MAX_OUTPUTS = "invalid max_outputs > 16"
NO_GL_DISPLAY = "The display backend does not have OpenGL support enabled"
NO_GL_DISPLAY_HINT = ("It can be enabled with '-display BACKEND,gl=on' where BACKEND is the name "
                      "of the display backend to use.")
SECOND_GL_DEVICE = "at most one virtio-gpu-gl-device device is permitted"
NOT_MIGRATABLE = ("disallowing migration blocker (--only-migratable) for: "
                  "virgl is not yet migratable")
HOSTMEM_UNMAPPABLE = "virgl hostmem region could not be initialized: Cannot allocate memory"


@dataclass(frozen=True)
class Refusal:
    """An invalid configuration and the exact error QEMU gives for it.

    ``hint`` is the line QEMU prints right after the error (if any); ``blamed`` is the
    ``-device`` value the error names when it is not the GPU's own (a second device in
    ``extra_args``).
    """

    device: DeviceOptions
    message: str
    hint: str = ""
    extra_args: tuple[str, ...] = ()
    blamed: str | None = None
    needs: tuple[str, ...] | None = None  # properties the QEMU must have; None: those it sets

    def needed(self) -> tuple[str, ...]:
        return self.device.properties() if self.needs is None else self.needs


def _gl(options: str = "") -> DeviceOptions:
    return DeviceOptions(f"{GL},{options}".rstrip(","), gl_display=True)


def _pci(options: str = "", gl_display: bool = False) -> DeviceOptions:
    return DeviceOptions(f"{PCI},{options}".rstrip(","), gl_display=gl_display)


SECOND = f"{GL},id=gpuhil-second"

REFUSALS: dict[str, Refusal] = {
    # hw/display/virtio-gpu.c, virtio_gpu_device_realize
    "venus_without_blob_and_hostmem": Refusal(_gl("venus=on"), VENUS_NEEDS),
    "venus_without_hostmem": Refusal(_gl("blob=on,venus=on"), VENUS_NEEDS),
    "venus_without_blob": Refusal(_gl("hostmem=256M,venus=on"), VENUS_NEEDS),
    "drm_without_blob_and_hostmem": Refusal(_gl("drm_native_context=on"), DRM_NEEDS),
    "drm_without_hostmem": Refusal(_gl("blob=on,drm_native_context=on"), DRM_NEEDS),
    "drm_without_blob": Refusal(_gl("hostmem=256M,drm_native_context=on"), DRM_NEEDS),
    # No memfd-backed RAM, so virtio_gpu_have_udmabuf() is false whatever the host has.
    "blob_2d_without_memfd_ram": Refusal(_pci("blob=on"), BLOB_NEEDS),
    # hw/display/virtio-gpu-base.c, virtio_gpu_base_device_realize
    "max_outputs_17_2d": Refusal(_pci("max_outputs=17"), MAX_OUTPUTS),
    "max_outputs_17_gl": Refusal(_gl("max_outputs=17"), MAX_OUTPUTS),
    "outputs_beyond_max_outputs": Refusal(
        DeviceOptions.from_json({"driver": PCI, "max_outputs": 2, "outputs": [
            {"name": "a"}, {"name": "b"}, {"name": "c"}]}, gl_display=False),
        "invalid outputs > 2"),
    "output_name_over_12_chars": Refusal(
        DeviceOptions.from_json({"driver": PCI, "outputs": [{"name": "gpuhil-output"}]},
                                gl_display=False),
        "invalid output name 'gpuhil-output' > 12"),
    "output_xres_without_yres": Refusal(
        DeviceOptions.from_json({"driver": PCI, "outputs": [{"name": "a", "xres": 1024}]},
                                gl_display=False),
        "must set both outputs[0].xres and outputs[0].yres"),
    "gl_device_only_migratable": Refusal(_gl(), NOT_MIGRATABLE, extra_args=("-only-migratable",)),
    # hw/display/virtio-gpu-gl.c, virtio_gpu_gl_device_realize
    "gl_device_without_gl_display": Refusal(DeviceOptions(GL, gl_display=False), NO_GL_DISPLAY,
                                            hint=NO_GL_DISPLAY_HINT),
    "second_gl_device": Refusal(_gl(), SECOND_GL_DEVICE, extra_args=("-device", SECOND),
                                blamed=SECOND),
    # The 4 EiB anonymous mapping behind the window cannot exist on x86-64 (47/57-bit VA).
    "hostmem_window_unmappable": Refusal(_gl("blob=on,hostmem=4E"), HOSTMEM_UNMAPPABLE),
    # The 3-D only properties do not exist on the 2-D device (QOM's own error).
    "venus_on_2d_device": Refusal(_pci("venus=on"), f"Property '{PCI}.venus' not found", needs=()),
    "drm_native_context_on_2d_device": Refusal(
        _pci("drm_native_context=on"), f"Property '{PCI}.drm_native_context' not found", needs=()),
}


@pytest.fixture
def setup(lab) -> LabSetup:
    """The lab QEMU runs from (tests of QEMU's startup need the virtual lab)."""
    if not lab.target.boots_guests:
        pytest.skip(f"QEMU option validation needs a lab target, not {lab.target.describe()}")
    return lab.setup


def assert_refused(result: Launch, blamed: str, message: str, hint: str = "") -> None:
    """QEMU exited with status 1 after exactly ``message`` against ``-device blamed`` (then
    ``hint``), and the attempt left nothing behind."""
    assert result.returncode == 1, f"QEMU {result.status}, not exit code 1; it printed:\n{result.output}"
    assert result.device_errors(blamed) == [message], result.output
    if hint:
        lines = result.lines
        assert lines[lines.index(result.error_line(blamed, message)) + 1] == hint, result.output
    assert result.leftovers == ()


@pytest.mark.parametrize("case", [pytest.param(c, id=name) for name, c in REFUSALS.items()])
def test_invalid_options_are_refused_at_startup(setup, case):
    """QEMU ends during device realize with the exact error for this invalid combination and
    exit code 1, and leaves no process, run directory or descriptor behind, so a wrong lab
    configuration is reported at once instead of surfacing as a broken guest."""
    have = setup.qemu_device_properties(case.device.driver)
    missing = [p for p in case.needed() if p not in have]
    if missing:  # e.g. QEMU 10.0 has no drm_native_context: nothing to refuse
        pytest.skip(f"QEMU {setup.qemu} lacks {', '.join(missing)} of {case.device.driver} "
                    f"(not in -device {case.device.driver},help)")
    result = launch(GuestSpec(gpu=case.device, extra_args=case.extra_args), setup)
    assert_refused(result, case.blamed or case.device.value, case.message, case.hint)


def test_2d_blob_with_memfd_ram_needs_host_udmabuf(setup):
    """With memfd-backed guest RAM but no usable /dev/udmabuf on the host, the 2-D device still
    refuses blob=on with the udmabuf error (QEMU needs both to back 2-D blobs)."""
    missing = host_udmabuf()
    if missing is None:
        pytest.skip("the host's /dev/udmabuf opens, so QEMU can back 2-D blobs "
                    "(test_valid covers that configuration); probed: open /dev/udmabuf: ok")
    device = _pci("blob=on")
    result = launch(GuestSpec(gpu=device, extra_args=memfd_ram_args(GuestSpec())), setup)
    assert_refused(result, device.value, BLOB_NEEDS)
    assert result.error_line(device.value, "warning: open /dev/udmabuf:") in result.output, \
        f"QEMU did not say why udmabuf is unusable ({missing}):\n{result.output}"


@pytest.mark.parametrize("device", [
    pytest.param(_pci("hostmem=3M"), id="2d_3M"),
    pytest.param(_gl("blob=on,hostmem=384M"), id="gl_384M"),
])
def test_hostmem_not_power_of_two_is_refused_cleanly(setup, device):
    """A hostmem window that is not a power of two (PCI BARs must be) is refused with an error
    naming hostmem and exit code 1, not by QEMU aborting on an assertion (a crash looks like a
    host problem, not a configuration error, and may leave a core dump)."""
    result = launch(GuestSpec(gpu=device), setup)
    assert result.leftovers == ()
    assert result.returncode == 1, f"QEMU {result.status}, not exit code 1; it printed:\n{result.output}"
    errors = result.device_errors(device.value)
    assert len(errors) == 1 and "hostmem" in errors[0], result.output
