"""Root conftest: loads the gpuhil pytest plugin (fixtures lab/guest/virtgpu/udmabuf/vfio_device/
host_gpu, the ``requires`` and ``guest`` markers, the --gpuhil-* options) for suites/ and tests/.

Once the package registers its ``pytest11`` entry point (named ``gpuhil.pytestplugin.lab``) this line is a
no-op: pytest sees the module is already registered under that name.
"""
pytest_plugins = ["gpuhil.pytestplugin.lab"]
