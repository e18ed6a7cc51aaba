"""Valid virtio-gpu device options: QEMU starts, the guest boots, virtio_gpu loads, the render
node appears, and what the guest sees (GETPARAM, capsets, connectors, the host-visible window)
is what the options asked for.

The plugin's named configurations are reused (they boot once per worker for every suite); the
only extra boots are the 2-D device at the max_outputs limit, the 2-D blob device (only where
the host has udmabuf) and the GL device without outputs.  ``drm`` is left to suites/contexts:
on a host whose renderer lacks DRM native contexts it is a capability gap, not an option error.
"""
from __future__ import annotations

import pytest

from gpuhil.lab.errors import QemuLaunchError
from gpuhil.lab.guest import Guest
from gpuhil.lab.spec import GpuModel, GpuSpec, GuestSpec
from gpuhil.lab.configurations import CONFIGURATIONS
from gpuhil.bringup import prepare_gpu
from suites.config import payloads
from suites.config.devices import DeviceOptions, host_udmabuf, memfd_ram_args

CAPSET_VIRGL, CAPSET_VIRGL2, CAPSET_VENUS, CAPSET_DRM = 1, 2, 4, 6

TWO_D_16_OUTPUTS = GuestSpec(gpu=GpuSpec(GpuModel.VIRTIO_GPU, max_outputs=16))
TWO_D_BLOB = GuestSpec(gpu=GpuSpec(GpuModel.VIRTIO_GPU, blob=True),
                       extra_args=memfd_ram_args(GuestSpec()))


def _named(name: str):
    return pytest.param(CONFIGURATIONS[name], False, id=name, marks=pytest.mark.guest(name))


def _custom(label: str, spec: GuestSpec, needs_udmabuf: bool = False):
    return pytest.param(spec, needs_udmabuf, id=label, marks=pytest.mark.guest(spec=spec))


@pytest.mark.parametrize("spec, needs_udmabuf", [
    _named("virgl"), _named("venus"), _named("blob2d"),
    _custom("2d_max_outputs_16", TWO_D_16_OUTPUTS),
    _custom("2d_blob_memfd_ram", TWO_D_BLOB, needs_udmabuf=True),
])
def test_valid_options_bring_the_device_up(request, spec, needs_udmabuf):
    """The guest's driver reports exactly the device the options describe: 3-D and context
    init on the GL device only, blob as asked, a host-visible window of the hostmem size, one
    connector per output and only the capsets that were enabled, so the options really reach
    the guest and nothing is silently dropped."""
    if needs_udmabuf:
        missing = host_udmabuf()
        if missing is not None:
            pytest.skip(f"2-D blobs need the host's udmabuf; probed: {missing} "
                        f"(test_refused covers the refusal)")
    virtgpu = request.getfixturevalue("virtgpu")
    view = virtgpu.call(payloads.device_view)
    gpu, gl = spec.gpu, spec.gpu.needs_gl
    assert view.driver == "virtio_gpu"
    wanted = {"FEATURES_3D": int(gl), "CONTEXT_INIT": int(gl), "RESOURCE_BLOB": int(gpu.blob),
              "HOST_VISIBLE": int(gpu.hostmem > 0), "CAPSET_QUERY_FIX": 1}
    assert {name: view.params[name] for name in wanted} == wanted, view.params
    assert view.host_visible_region == gpu.hostmem
    assert view.connectors == (gpu.max_outputs or 1)
    mask = view.params["SUPPORTED_CAPSET_IDS"]
    capsets = {i for i in range(32) if mask >> i & 1}
    if gl:
        assert {CAPSET_VIRGL, CAPSET_VIRGL2} <= capsets, f"capsets {sorted(capsets)}"
        assert (CAPSET_VENUS in capsets) == gpu.venus, f"capsets {sorted(capsets)}"
        assert (CAPSET_DRM in capsets) == gpu.drm_native_context, f"capsets {sorted(capsets)}"
    else:
        assert capsets == set()


def test_gl_device_without_outputs_is_refused_or_works(lab):
    """virtio-gpu-gl-pci with max_outputs=0 is either refused at startup (exit code 1, an
    error against the device) or gives the guest a render-only device (3-D, no connectors), as
    the 2-D device does; QEMU must not crash when the guest driver loads."""
    if not lab.target.boots_guests:
        pytest.skip(f"QEMU option validation needs a lab target, not {lab.target.describe()}")
    device = DeviceOptions("virtio-gpu-gl-pci,max_outputs=0", gl_display=True)
    settings = lab.session.settings
    guest = Guest(GuestSpec(gpu=device), setup=lab.setup, name="config-outputs0",
                  boot_timeout=settings.boot_timeout)
    try:
        try:
            guest.start()
        except QemuLaunchError as exc:
            assert exc.returncode == 1 and f": -device {device.value}: " in exc.stderr, str(exc)
            return
        node = prepare_gpu(guest, settings.device_timeout)
        view = guest.call(payloads.device_view, node)
    finally:
        guest.close()
    assert view.params["FEATURES_3D"] == 1 and view.connectors == 0, view
