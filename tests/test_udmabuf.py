"""udmabuf error paths reachable without /dev/udmabuf, and the module-parameter reader."""
import errno

import pytest

from gpuhil.errors import ClosedError, IoctlError, Unsupported
from gpuhil.devices.memfd import Memfd, Seal
from gpuhil.devices.udmabuf import Udmabuf, UdmabufLimits, UdmabufRange, limits


def test_missing_device_is_a_clear_error_naming_the_path(tmp_path):
    path = str(tmp_path / "udmabuf")
    with pytest.raises(IoctlError) as exc:
        Udmabuf(path)
    assert exc.value.errno == errno.ENOENT
    assert exc.value.op == "open"
    assert path in str(exc.value)


@pytest.fixture
def not_udmabuf():
    with Udmabuf("/dev/null") as dev:
        yield dev


@pytest.fixture
def sealed_memfd():
    with Memfd.create("udmabuf-src", 2 * 4096) as m:
        m.add_seals(Seal.SHRINK)
        yield m


def test_create_on_a_device_that_is_not_udmabuf_names_the_call(not_udmabuf, sealed_memfd):
    with pytest.raises(Unsupported) as exc:
        not_udmabuf.create(sealed_memfd, 0, 4096)
    assert exc.value.errno == errno.ENOTTY
    assert exc.value.op == "UDMABUF_CREATE"
    assert str(exc.value).startswith(
        f"UDMABUF_CREATE(memfd={sealed_memfd.fd}, offset=0, size=4096, flags=CLOEXEC)")


def test_create_list_on_a_device_that_is_not_udmabuf_names_the_call(not_udmabuf, sealed_memfd):
    with pytest.raises(Unsupported) as exc:
        not_udmabuf.create_list([UdmabufRange(sealed_memfd, 0, 4096), (sealed_memfd, 4096, 4096)],
                                cloexec=False)
    assert exc.value.op == "UDMABUF_CREATE_LIST"
    assert exc.value.args_["count"] == 2
    assert exc.value.args_["items"] == [(sealed_memfd.fd, 0, 4096), (sealed_memfd.fd, 4096, 4096)]
    assert exc.value.args_["flags"] == 0


def test_create_defaults_to_the_rest_of_the_memfd(not_udmabuf, sealed_memfd):
    with pytest.raises(Unsupported) as exc:
        not_udmabuf.create(sealed_memfd, offset=4096)
    assert exc.value.args_["size"] == 4096


def test_closed_device_raises_closed(sealed_memfd):
    dev = Udmabuf("/dev/null")
    dev.close()
    dev.close()
    with pytest.raises(ClosedError):
        dev.create(sealed_memfd)


def test_closed_memfd_cannot_be_passed(not_udmabuf):
    memfd = Memfd.create("gone", 4096)
    memfd.close()
    with pytest.raises(ClosedError):
        not_udmabuf.create(memfd)


def test_limits_are_read_from_module_parameters(tmp_path):
    (tmp_path / "size_limit_mb").write_text("64\n")
    (tmp_path / "list_limit").write_text("1024\n")
    assert limits(tmp_path) == UdmabufLimits(size_limit_mb=64, list_limit=1024)


def test_limits_missing_parameters_are_none(tmp_path):
    (tmp_path / "size_limit_mb").write_text("32\n")
    assert limits(tmp_path) == UdmabufLimits(size_limit_mb=32, list_limit=None)
    assert limits(tmp_path / "absent") == UdmabufLimits(None, None)
