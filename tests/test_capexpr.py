"""The ``requires`` expression language: parsing, evaluation, and its error messages."""
from __future__ import annotations

import pytest

from gpuhil.gating.capexpr import ABSENT, CapExprError, Version, parse

SNAPSHOT = {
    "capset.virgl": True, "capset.virgl.max_version": 1,
    "capset.venus": True, "capset.venus.max_version": 0,
    "param.3d_features": 1, "param.host_visible": 1, "param.cross_device": 0,
    "kernel.guest": "7.2.13+deb14-amd64", "device.name": "virtio-gpu-gl-pci",
    "udmabuf.size_limit_mb": 64,
}


@pytest.mark.parametrize("expression, expected", [
    ("capset.venus and param.host_visible", True),
    ("capset.drm", False),
    ("not capset.drm", True),
    ("capset.drm or capset.venus", True),
    ("param.cross_device", False),
    ("param.3d_features == 1", True),
    ("capset.venus.max_version >= 0 and capset.venus.max_version < 1", True),
    ("capset.virgl.max_version != 2", True),
    ("kernel.guest >= 6.14", True),
    ("kernel.guest >= 7.2.13", True),
    ("kernel.guest > 7.2.13", False),
    ("kernel.guest < 8", True),
    ("device.name == 'virtio-gpu-gl-pci'", True),
    ('device.name != "virtio-gpu-pci"', True),
    ("udmabuf.size_limit_mb >= 0x40", True),
    ("not (capset.venus and capset.drm) and (param.3d_features or capset.drm)", True),
    ("not not capset.virgl", True),
    ("capset.drm.max_version >= 0", False),  # comparisons with an absent name are false
    ("capset.drm.max_version != 0", False),
    ("a or b and c", False),
])
def test_evaluation(expression, expected):
    assert parse(expression).evaluate(SNAPSHOT) is expected


def test_and_binds_tighter_than_or():
    assert parse("x or y and z").evaluate({"x": 1, "y": 0, "z": 0}) is True
    assert parse("(x or y) and z").evaluate({"x": 1, "y": 0, "z": 0}) is False


def test_names_in_order_without_duplicates():
    expr = parse("capset.venus and (param.host_visible or capset.venus) and kernel.guest >= 6.1")
    assert expr.names == ("capset.venus", "param.host_visible", "kernel.guest")


def test_version_literals_and_text():
    assert Version.from_text("7.2.13+deb14-amd64") == Version((7, 2, 13))
    assert Version.from_text("none") is None
    assert parse("v >= 6.14").evaluate({"v": Version((6, 14))})
    assert not parse("v >= 6.14").evaluate({"v": "6.9.1"})


def test_absent_is_false_and_named():
    assert not ABSENT
    assert repr(ABSENT) == "absent"


@pytest.mark.parametrize("expression, position, problem", [
    ("capset.venus and", 16, "expected a name"),
    ("", 0, "empty expression"),
    ("(capset.venus", 13, "expected ')'"),
    ("capset.venus )", 13, "unexpected ')'"),
    ("param.x = 1", 8, "unexpected character '='"),
    ("a < b < c", 6, "chained comparisons"),
    ("__import__('os').system('x')", 16, "unexpected character '.'"),
    ("a and or b", 6, "found 'or'"),
])
def test_errors_name_expression_and_position(expression, position, problem):
    with pytest.raises(CapExprError) as info:
        parse(expression)
    assert info.value.position == position
    assert problem in str(info.value)
    assert repr(expression) in str(info.value)
    assert f"position {position}" in str(info.value)


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse(3)  # type: ignore[arg-type]
