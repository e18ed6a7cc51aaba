"""Where the lab's QEMU, kernel, initramfs and guest root are (:class:`LabSetup`), the run
directories guests get under it, and the KVM smoke test the accelerator probe boots."""
from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import gpuhil
from gpuhil.lab.errors import LabError, MissingQemuFeature, QemuLaunchError
from gpuhil.lab.qemu import QemuProcess
from gpuhil.lab.spec import Accel, Placement, smoke_argv
from gpuhil.pids import pid_alive

if TYPE_CHECKING:
    from gpuhil.lab.assets import LabAssets

PROJECT_ROOT = Path(gpuhil.__file__).resolve().parent.parent
Progress = Callable[[str], None]

# Inside the chroot: where the project tree, the run directory and the boot files appear.
_IN_SRC, _IN_RUN = "/gpuhil/src", "/gpuhil/run"
_IN_KERNEL, _IN_INITRAMFS = "/run/gpuhil/vmlinux", "/run/gpuhil/initramfs.cpio"
_IN_GUESTROOT = "/srv/guestroot"


def cache_dir_of() -> Path:
    """The lab cache directory (imported late: the cache module reads the environment)."""
    from gpuhil.lab.cache import cache_dir

    return cache_dir()


@dataclass(frozen=True)
class LabSetup:
    """Where the lab's QEMU, kernel, initramfs and guest root are.

    ``chroot`` set: the QEMU stack runs inside that tree and ``qemu`` is a path inside it (the
    built sid tree is both, and also the guest root; another tree, e.g. one built from Debian
    stable, can run QEMU for the same guest root).  ``chroot`` None: a lab machine's own QEMU,
    kernel and guest root on the host.  :meth:`check` says which of them is missing.
    """

    qemu: str
    kernel: Path
    initramfs: Path
    guest_root: Path
    chroot: Path | None
    project_root: Path = PROJECT_ROOT
    runs_dir: Path | None = None
    assets: "LabAssets | None" = None  # the built assets, when the lab uses them
    #: A QEMU built and installed outside /usr: its module and data directories (as QEMU sees
    #: them, i.e. inside the chroot when there is one).
    qemu_module_dir: str | None = None
    qemu_data_dir: str | None = None
    #: Versions a lab config states (``[platform]``): they win over what is probed.
    stated_versions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def default(cls, progress: Progress | None = None) -> "LabSetup":
        """The lab from the environment: ``GPUHIL_QEMU``/``GPUHIL_KERNEL``/``GPUHIL_INITRAMFS``/
        ``GPUHIL_GUEST_ROOT`` name a lab machine's own files; otherwise the built assets (built
        first if missing, with the guest's extensions)."""
        env = os.environ
        if env.get("GPUHIL_QEMU"):
            missing = [v for v in ("GPUHIL_KERNEL", "GPUHIL_INITRAMFS", "GPUHIL_GUEST_ROOT")
                       if not env.get(v)]
            if missing:
                raise LabError(f"GPUHIL_QEMU is set, so {', '.join(missing)} must be set too")
            return cls(qemu=env["GPUHIL_QEMU"], kernel=Path(env["GPUHIL_KERNEL"]),
                       initramfs=Path(env["GPUHIL_INITRAMFS"]),
                       guest_root=Path(env["GPUHIL_GUEST_ROOT"]), chroot=None)
        from gpuhil.lab.assets import ensure_assets

        from gpuhil.lab.guest_build import ensure_guest_extensions

        assets = ensure_assets(progress=progress)
        ensure_guest_extensions(assets, PROJECT_ROOT, progress)
        return cls(qemu="/usr/bin/qemu-system-x86_64", kernel=assets.kernel,
                   initramfs=assets.initramfs, guest_root=assets.root, chroot=assets.root,
                   assets=assets)

    def placement(self, run_dir: Path) -> Placement:
        """Paths as QEMU sees them for a guest whose host run directory is ``run_dir``."""
        qmp_object = self.qemu_has_object("monitor-qmp")
        if self.chroot is None:
            return Placement(self.qemu, str(self.kernel), str(self.initramfs),
                             str(self.guest_root), str(self.project_root), str(run_dir),
                             self.qemu_data_dir, qmp_object)
        return Placement(self.qemu, _IN_KERNEL, _IN_INITRAMFS, _IN_GUESTROOT, _IN_SRC, _IN_RUN,
                         self.qemu_data_dir, qmp_object)

    def qemu_has_object(self, type_name: str) -> bool:
        """Whether this QEMU lists ``type_name`` in ``-object help`` (a QEMU that cannot even
        say is treated as lacking it)."""
        return type_name in {line.strip() for line in self.qemu_output("-object", "help").splitlines()}

    def qemu_device_properties(self, type_name: str) -> frozenset[str]:
        """The properties ``-device TYPE,help`` lists (empty: QEMU has no such device type)."""
        out = self.qemu_output("-device", f"{type_name},help")
        return frozenset(m.group(1) for m in re.finditer(r"^\s+([\w-]+)=", out, re.MULTILINE))

    def check_device(self, type_name: str, properties: "tuple[str, ...]") -> None:
        """Raise MissingQemuFeature naming the device type or the properties this QEMU lacks
        (nothing when the QEMU cannot list its devices at all: that is for its boot to report)."""
        listing = self.qemu_output("-device", "help")
        if not listing.strip():
            return  # a QEMU that cannot even list its devices: its boot says what is wrong
        if f'name "{type_name}"' not in listing:
            raise MissingQemuFeature(f"QEMU {self.qemu} has no device {type_name} (not in "
                                     f"-device help)", ["qemu.device"])
        have = self.qemu_device_properties(type_name)
        missing = [p for p in properties if p not in have]
        if missing:
            raise MissingQemuFeature(
                f"QEMU {self.qemu} lacks {', '.join(missing)} of {type_name} (not in -device "
                f"{type_name},help)", [f"qemu.{p}" for p in missing])

    def check_qtest(self) -> None:
        """Raise MissingQemuFeature when this QEMU has no qtest accelerator (Debian 13's QEMU
        10.0 is built without it: ``invalid accelerator qtest``).  Probed with a machine that
        stops at once on a device type that does not exist, after the accelerator is chosen."""
        said = self.qemu_output("-M", "none", "-accel", "qtest", "-display", "none",
                                "-nodefaults", "-device", "gpuhil-probe-no-such-device",
                                stream="stderr")
        if "invalid accelerator" in said or "accelerator not" in said:
            line = next(x for x in said.splitlines() if "accelerator" in x)
            raise MissingQemuFeature(f"QEMU {self.qemu} has no qtest accelerator, so no device "
                                     f"tier ({line.strip()})", ["qemu.qtest"])

    def qemu_output(self, *args: str, stream: str = "stdout") -> str:
        """What this QEMU prints on ``stream`` for ``args`` (asked once per QEMU and process;
        "" if it cannot run)."""
        key = (str(self.chroot), self.qemu, self.qemu_module_dir, args, stream)
        if key not in _ANSWERS:
            with tempfile.TemporaryDirectory(prefix="gpuhil-probe-") as run_dir:
                argv = self.wrapper(Path(run_dir))([self.qemu, *args])
                try:
                    done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                          stdin=subprocess.DEVNULL)
                    _ANSWERS[key] = done.stderr if stream == "stderr" else done.stdout
                except (OSError, subprocess.TimeoutExpired):
                    _ANSWERS[key] = ""
        return _ANSWERS[key]

    def wrapper(self, run_dir: Path) -> Callable[[list[str]], list[str]]:
        """Turns QEMU's argv into the command that runs it (the chroot helper, or nothing; with
        ``env QEMU_MODULE_DIR=...`` in front for a QEMU whose modules are elsewhere)."""
        env = ["env", f"QEMU_MODULE_DIR={self.qemu_module_dir}"] if self.qemu_module_dir else []
        if self.chroot is None:
            return lambda argv: [*env, *argv]
        from gpuhil.lab.chroot import chroot_argv

        root = self.chroot
        binds = {_IN_SRC: self.project_root, _IN_RUN: run_dir}
        readonly = {_IN_KERNEL: self.kernel, _IN_INITRAMFS: self.initramfs}
        if Path(self.guest_root).resolve() == Path(root).resolve():
            return lambda argv: chroot_argv(root, [*env, *argv], binds, readonly_binds=readonly,
                                            export_root_at=_IN_GUESTROOT)
        readonly[_IN_GUESTROOT] = self.guest_root  # QEMU from one tree, the guest from another
        return lambda argv: chroot_argv(root, [*env, *argv], binds, readonly_binds=readonly,
                                        export_root_at=None)

    def check(self) -> None:
        """Raise LabError naming the setting (``qemu``, ``kernel``, ``initramfs``,
        ``guest_root``, ``chroot``) whose file is missing, before any guest boots."""
        for key in ("kernel", "initramfs", "guest_root", "chroot"):
            value = getattr(self, key)
            if value is not None and not Path(value).exists():
                raise LabError(f"{key} = {str(value)!r}: no such file or directory")
        if self.chroot is not None:
            inside = Path(self.chroot) / self.qemu.lstrip("/")
            if not os.access(inside, os.X_OK):
                raise LabError(f"qemu = {self.qemu!r}: not an executable in the chroot tree "
                               f"{self.chroot} (with chroot set, qemu is the path inside it: "
                               f"{inside} was looked for)")
        elif not os.access(self.qemu, os.X_OK) and shutil.which(self.qemu) is None:
            raise LabError(f"qemu = {self.qemu!r}: no such executable")
        for key in ("qemu_module_dir", "qemu_data_dir"):
            value = getattr(self, key)
            if value is None:
                continue
            where = Path(self.chroot) / value.lstrip("/") if self.chroot is not None else Path(value)
            if not where.is_dir():
                raise LabError(f"{key} = {value!r}: no such directory"
                               + (f" in the chroot tree {self.chroot}" if self.chroot else ""))

    def runs(self) -> Path:
        """The directory holding the guests' run directories."""
        return self.runs_dir or cache_dir_of() / "run"


_counter = itertools.count()
#: What each QEMU printed for the help arguments asked in this process.
_ANSWERS: dict[tuple[str, str, str | None, tuple[str, ...], str], str] = {}


def next_run_id() -> int:
    """A number unique in this process, for run directory names."""
    return next(_counter)


def kvm_smoke_test(setup: LabSetup, timeout: float = 15.0) -> str | None:
    """Boot the kernel alone under KVM: None if it ran to its final "no root" panic, else why not.

    Used by the accelerator probe (LAB.md §9: a PVM or otherwise broken KVM fails here).
    """
    runs = setup.runs()
    runs.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{next_run_id()}-kvmsmoke-", dir=runs))
    try:
        where = setup.placement(run_dir)
        process = QemuProcess(lambda ch: smoke_argv(Accel.KVM, where, ch), run_dir, "kvm-smoke",
                              wrap=setup.wrapper(run_dir))
        try:
            process.launch(qmp_timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and process.console.fatal is None:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
            if process.console.fatal is not None and process.console.fatal.kind == "panic":
                return None
            if process.poll() is not None:
                return f"QEMU {process.status()}: {process.stderr_text().strip()[-300:]}"
            return f"no kernel panic line within {timeout:g} s (console: {process.console.tail(3)!r})"
        except QemuLaunchError as exc:
            return f"QEMU did not start: {exc.stderr.strip()[-300:]}"
        finally:
            process.stop(grace=0)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def sweep_stale_runs(runs: Path) -> None:
    """Remove run directories whose owning process is gone (it was killed outright)."""
    if not runs.is_dir():
        return
    for entry in runs.iterdir():
        owner = entry.name.split("-", 1)[0]
        if owner.isdigit() and not pid_alive(int(owner)):
            shutil.rmtree(entry, ignore_errors=True)
