"""A labgrid place for a pytest session: chosen by name or reservation, held by a keeper
process (:mod:`gpuhil.host.place_keeper`), its GPUs read from its ``GpuhilGpu`` resources.

labgrid is an optional extra (``pip install 'gpuhil[labgrid]'``): this module imports nothing of
it; the keeper does, in its own process.  A lab host exports its GPUs with an exporter
configuration such as::

    gpu0:                          # resource group
      location: rack 3, host gpu-a
      GpuhilGpu:                   # a class labgrid does not know: exported as given
        render_node: /dev/dri/renderD128
        pci: "0000:03:00.0"
        vendor_device: "1002:73bf"
        driver: amdgpu
        target: local              # the gpuhil target that reaches it (lab, local, a lab config)
        qemu: "11.1.3"             # the stack's versions, for the report and for filters

and a place matches it (``labgrid-client -p gpu-a create``, ``add-match 'gpu-a/gpu0/GpuhilGpu'``,
``set-tags qemu=11.1.3 gpu=navi21``).  ``pytest --gpuhil-place gpu-a`` (or ``LG_PLACE``,
``--gpuhil-place +TOKEN`` / ``LG_TOKEN`` for a reservation) then runs on that place's GPUs.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from gpuhil.errors import GpuhilError

__all__ = ["DEFAULT_COORDINATOR", "PlaceError", "PlaceHold", "PlaceInfo", "place_request"]

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default


class PlaceError(GpuhilError):
    """The place could not be had: labgrid missing, coordinator unreachable, no such place, or
    busy (:attr:`busy`, the message names the holder)."""

    def __init__(self, message: str, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy


@dataclass(frozen=True)
class PlaceInfo:
    """What the keeper reported: the place, who holds it, its tags and GPUs."""

    place: str
    acquired: str
    ours: bool  # acquired by gpuhil for this session (released at its end)
    coordinator: str
    tags: dict[str, str] = field(default_factory=dict)
    gpus: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_json(cls, text: str) -> "PlaceInfo":
        data = json.loads(text)
        return cls(data["place"], data["acquired"], bool(data["ours"]), data["coordinator"],
                   dict(data.get("tags", {})), tuple(data.get("gpus", ())))

    def gpu_summary(self) -> str:
        """``vendor:device@pci`` (or the render node, or the resource name) of each GPU, as
        :func:`gpuhil.report.environment.host_gpu_pci_ids` names a host's; "none" without."""
        return " ".join(f"{g.get('vendor_device', '')}@"
                        f"{g.get('pci') or g.get('render_node') or g['name']}"
                        for g in self.gpus) or "none"

    def to_json(self) -> str:
        return json.dumps({"place": self.place, "acquired": self.acquired, "ours": self.ours,
                           "coordinator": self.coordinator, "tags": self.tags,
                           "gpus": list(self.gpus)})


def place_request(option: str | None, coordinator: str | None,
                  environ: Mapping[str, str] = os.environ) -> tuple[str, str] | None:
    """(place pattern, coordinator address) from the options, else labgrid's environment
    (``LG_PLACE``, ``LG_TOKEN``, ``LG_COORDINATOR``); None when no place is asked for."""
    pattern = option or environ.get("LG_PLACE", "") or ("+" if environ.get("LG_TOKEN") else "")
    if not pattern:
        return None
    return pattern, coordinator or environ.get("LG_COORDINATOR", "") or DEFAULT_COORDINATOR


class PlaceHold:
    """The place held for this session by a keeper process; :meth:`release` (or the end of
    this process, whatever its cause) gives back what gpuhil acquired."""

    def __init__(self, info: PlaceInfo, keeper: subprocess.Popen) -> None:
        self.info = info
        self._keeper: subprocess.Popen | None = keeper

    @classmethod
    def start(cls, pattern: str, coordinator: str, lease_dir: Path, busy: str,
              timeout: float) -> "PlaceHold":
        """Start the keeper and wait for its report (with ``busy="wait"``, as long as the place
        stays busy); :class:`PlaceError` with the keeper's one-line reason otherwise."""
        try:
            found = importlib.util.find_spec("labgrid") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise PlaceError(f"--gpuhil-place {pattern}: labgrid is not installed "
                             f"(pip install 'gpuhil[labgrid]')")
        keeper = subprocess.Popen(
            [sys.executable, "-m", "gpuhil.host.place_keeper", "--coordinator", coordinator,
             "--place", pattern, "--parent", str(os.getpid()), "--lease-dir", str(lease_dir),
             "--busy", busy, "--timeout", str(timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            line = keeper.stdout.readline() if keeper.stdout else ""
        except BaseException:  # Ctrl-C while waiting for a busy place
            cls._stop(keeper)
            raise
        try:
            data = json.loads(line) if line.strip() else {}
        except ValueError:
            data = {}
        if "place" not in data:
            cls._stop(keeper, close=False)
            stderr = (keeper.stderr.read() if keeper.stderr else "").strip().splitlines()
            cls._stop(keeper)
            reason = data.get("error") or (stderr[-1] if stderr else f"exit {keeper.returncode}")
            raise PlaceError(f"--gpuhil-place {pattern}: {reason}", busy=bool(data.get("busy")))
        return cls(PlaceInfo.from_json(line), keeper)

    @staticmethod
    def _stop(keeper: subprocess.Popen, grace: float = 30.0, close: bool = True) -> None:
        if keeper.poll() is None:
            keeper.terminate()
            try:
                keeper.wait(grace)
            except subprocess.TimeoutExpired:
                keeper.kill()
                keeper.wait()
        for stream in (keeper.stdout, keeper.stderr) if close else ():
            if stream is not None:
                stream.close()

    def release(self) -> None:
        """Stop the keeper, which releases the place if gpuhil acquired it; idempotent."""
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            self._stop(keeper)

    def __repr__(self) -> str:
        return f"<PlaceHold {self.info.place} {'held' if self._keeper else 'released'}>"
