"""The session's labgrid place (``--gpuhil-place``, ``LG_PLACE``, ``LG_TOKEN``): held for the
whole session by the controller (a run without xdist holds it itself), shared with the xdist
workers through the environment, given back when the session ends, however it ends
(:class:`gpuhil.host.labgrid_place.PlaceHold`).

The place's ``GpuhilGpu`` resources become the session's GPU selection (their ``pci`` or
``render_node``), and their ``target`` the session's target unless ``--gpuhil-target`` (or the
ini key) names one.  A place that stays busy for ``--gpuhil-lease-timeout`` seconds ends the
session at once with the holder named (``--gpuhil-lease-busy=wait`` waits instead): a session
without its place has nothing to run on.
"""
from __future__ import annotations

import dataclasses
import os

import pytest

from gpuhil.host.inventory import SelectorError, parse_selector
from gpuhil.host.labgrid_place import PlaceError, PlaceHold, PlaceInfo
from gpuhil.lab.targets import TargetError, parse_target
from gpuhil.pytestplugin.keys import PLACE_KEY

__all__ = ["PLACE_ENV", "hold_place", "release_place"]

#: The place the controller holds, for its xdist workers (JSON of PlaceInfo).
PLACE_ENV = "GPUHIL_PLACE_HELD"
_HOLD_KEY = pytest.StashKey[PlaceHold]()


def hold_place(config: pytest.Config, settings):
    """``settings`` on the session's place (unchanged without one); UsageError naming the place
    and the reason when it cannot be had."""
    if settings.place is None:
        return settings
    pattern, coordinator = settings.place
    held = os.environ.get(PLACE_ENV)
    if hasattr(config, "workerinput") and held:
        info = PlaceInfo.from_json(held)
    else:
        try:
            hold = PlaceHold.start(pattern, coordinator, settings.lease_dir, settings.lease_busy,
                                   settings.lease_timeout)
        except PlaceError as exc:
            raise pytest.UsageError(str(exc)) from None
        config.stash[_HOLD_KEY] = hold
        info = hold.info
        os.environ[PLACE_ENV] = info.to_json()
    config.stash[PLACE_KEY] = info  # the results plugin names the run after it
    try:
        return _on_place(config, settings, info)
    except pytest.UsageError:
        release_place(config)
        raise


def _on_place(config: pytest.Config, settings, info: PlaceInfo):
    if not info.gpus:
        raise pytest.UsageError(f"--gpuhil-place {info.place}: the place has no GpuhilGpu "
                                f"resource (add-match an exporter's GPU group)")
    selectors = []
    for gpu in info.gpus:
        selector = gpu.get("pci") or gpu.get("render_node")
        if selector:
            try:
                parse_selector(str(selector))
            except SelectorError as exc:
                raise pytest.UsageError(f"--gpuhil-place {info.place}: {gpu['name']}: {exc}") from None
            selectors.append(str(selector))
    target = settings.target
    named = {str(g["target"]) for g in info.gpus if g.get("target")}
    explicit = config.option.gpuhil_target is not None or "gpuhil_target" in config.inicfg
    if len(named) > 1:
        raise pytest.UsageError(f"--gpuhil-place {info.place}: its GPUs name different targets "
                                f"({', '.join(sorted(named))})")
    if named and not explicit:
        try:
            target = parse_target(named.pop(), f"--gpuhil-place {info.place}: target")
        except TargetError as exc:
            raise pytest.UsageError(str(exc)) from None
    return dataclasses.replace(settings, target=target,
                               gpu_selectors=tuple(dict.fromkeys(settings.gpu_selectors + tuple(selectors))))


def release_place(config: pytest.Config) -> None:
    """Give the place back (what gpuhil acquired is released; a place the user had acquired
    stays theirs)."""
    hold = config.stash.get(_HOLD_KEY, None)
    if hold is not None:
        del config.stash[_HOLD_KEY]
        hold.release()
        os.environ.pop(PLACE_ENV, None)
