"""The ``gpuhil`` command: ``gpuhil lab build|boot|run|info``, ``gpuhil report`` and
``gpuhil capabilities [--guest CONF]``.

``lab build`` builds (or finds) the lab's assets and the guest's extensions, with progress.
``lab boot`` boots a guest with a shell on the serial console, attached to this terminal
(Ctrl-] ends it).  ``lab run MODULE:FUNC [ARG...]`` boots a guest, calls the function there and
prints its result.  ``lab info`` shows the stack's versions, the accelerator and the cache.
``report`` renders Allure results into the HTML report under ``reports/`` (see
:mod:`gpuhil.report.render`).  ``capabilities`` lists every name ``requires`` accepts with its
meaning; with ``--guest CONF`` it boots that configuration and prints each probed value.
"""
from __future__ import annotations

import argparse
import ast
import os
import select
import signal
import sys
import termios
import time
import tty
from typing import Any, Sequence

from gpuhil.lab.configurations import CONFIGURATIONS, GPUS, IOMMUS, VFIO_DEVICES
from gpuhil.lab.spec import GuestSpec
ESCAPE = b"\x1d"  # Ctrl-]


class _Progress:
    """Prints long steps with the time elapsed since the command started."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, line: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {line}", file=sys.stderr, flush=True)


def _spec(args: argparse.Namespace, kernel_args: Sequence[str] = ()) -> GuestSpec:
    iommu = IOMMUS[args.vfio] if args.vfio else None
    devices = VFIO_DEVICES if iommu else ()
    return GuestSpec(gpu=GPUS[args.gpu], iommu=iommu, devices=devices, cpus=args.cpus,
                     memory_mib=args.memory, kernel_args=tuple(kernel_args))


def _setup(progress: _Progress):
    from gpuhil.lab.setup import LabSetup

    return LabSetup.default(progress=progress)


def cmd_build(args: argparse.Namespace) -> int:
    progress = _Progress()
    if args.suite:  # a host-side tree of another Debian suite, for a config's host_suite
        from gpuhil.lab.assets import ensure_assets
        from gpuhil.lab.packages import check_suite_exists

        try:
            check_suite_exists(args.suite)
        except ValueError as exc:
            print(f"gpuhil: {exc}", file=sys.stderr)
            return 2
        assets = ensure_assets(progress=progress, suite=args.suite)
        progress(f"{args.suite} tree ready: {assets.root}")
        print(assets.manifest.summary())
        return 0
    setup = _setup(progress)
    progress("lab ready")
    if setup.assets is not None:
        print(setup.assets.manifest.summary())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from gpuhil.lab import accel
    from gpuhil.lab.cache import cache_dir

    progress = _Progress()
    setup = _setup(progress)
    choice = accel.probe(cache_dir() / "accel.json")
    print(f"{'cache:':<16}{cache_dir()}")
    if setup.assets is not None:
        m = setup.assets.manifest
        print(f"{'assets:':<16}{setup.assets.root.parent} (key {setup.assets.key})")
        for name, version in (("QEMU", m.qemu), ("virglrenderer", m.virglrenderer),
                              ("Mesa", m.mesa), ("kernel", f"{m.kernel} ({setup.assets.kernel_release})"),
                              ("Python", m.python), ("linux-libc-dev", m.linux_libc_dev)):
            print(f"{name + ':':<16}{version}")
    else:
        print(f"QEMU:        {setup.qemu} (lab machine)\nkernel:      {setup.kernel}")
    print(f"{'accelerator:':<16}{choice.accel.value} ({choice.reason})")
    return 0


def _boot(args: argparse.Namespace, progress: _Progress, kernel_args: Sequence[str] = (),
          echo: Any = None):
    from gpuhil.lab.guest import Guest

    setup = _setup(progress)
    spec = _spec(args, kernel_args)
    progress(f"booting: {' '.join(a for a in (spec.gpu.device_arg() if spec.gpu else 'no GPU', spec.iommu and spec.iommu.value) if a)}")
    guest = Guest(spec, setup=setup, boot_timeout=args.timeout, console_echo=echo, name="cli")
    guest.start()
    progress(f"agent ready after {guest.boot_seconds:.1f} s ({guest.accel.accel.value}: "
             f"{guest.accel.reason}; guest Python {guest.info.python}, kernel {guest.info.kernel})")
    return guest


def _load_gpu_driver(guest: Any, progress: _Progress) -> None:
    from gpuhil.bringup import prepare_gpu

    node = prepare_gpu(guest, 120)
    progress(f"virtio_gpu loaded, {node} present")


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _check_target(target: str) -> None:
    """``MODULE:FUNC`` must name an importable module and a callable in it (before a boot)."""
    import importlib

    from gpuhil.errors import GpuhilError

    module_name, colon, func_name = target.partition(":")
    if not colon or not module_name or not func_name:
        raise GpuhilError(f"lab run {target!r}: expected MODULE:FUNC (e.g. os:getpid)")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the import raised is the message
        raise GpuhilError(f"lab run {target!r}: module {module_name!r} cannot be imported "
                          f"({type(exc).__name__}: {exc})") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        what = "has no" if func is None else f"has a non-callable {type(func).__name__}"
        raise GpuhilError(f"lab run {target!r}: module {module_name!r} {what} {func_name!r}")


def cmd_run(args: argparse.Namespace) -> int:
    _check_target(args.target)
    progress = _Progress()
    guest = _boot(args, progress)
    try:
        if args.gpu != "none":
            _load_gpu_driver(guest, progress)
        try:
            result = guest.call(args.target, *[_parse_value(a) for a in args.args])
        except Exception as exc:
            traceback_text = getattr(exc, "guest_traceback", None)
            if traceback_text:
                print(traceback_text, end="", file=sys.stderr)
            else:
                print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(repr(result))
        return 0
    finally:
        guest.close()


def cmd_boot(args: argparse.Namespace) -> int:
    progress = _Progress()
    out = sys.stdout.buffer

    def echo(data: bytes) -> None:
        out.write(data)
        out.flush()

    guest = _boot(args, progress, kernel_args=("gpuhil.shell=1",), echo=echo)
    if args.gpu != "none":
        _load_gpu_driver(guest, progress)
    progress("console attached; Ctrl-] ends the guest")
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        watched = [stdin]
        while guest.returncode is None:
            ready, _, _ = select.select(watched, [], [], 0.2)
            if not ready:
                continue
            data = os.read(stdin, 1024)
            if ESCAPE in data:
                break
            if not data:  # stdin ended (not a terminal): wait for the guest to power off
                watched = []
                continue
            guest.send_console(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        guest.close()
    print(file=sys.stderr)
    progress(f"guest ended ({guest.qemu_status()})")
    return 0


def _add_guest_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", choices=sorted(GPUS), default="venus",
                        help="venus: virtio-gpu-gl-pci,blob=on,hostmem=256M,venus=on (default); "
                             "virgl: virtio-gpu-gl-pci; none: no GPU")
    parser.add_argument("--vfio", choices=sorted(IOMMUS),
                        help="add an emulated IOMMU plus ivshmem-plain and edu for VFIO work")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=2048, help="guest memory in MiB")
    parser.add_argument("--timeout", type=float, default=180.0, help="boot timeout in seconds")


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gpuhil`` command."""
    top = argparse.ArgumentParser(prog="gpuhil", description=__doc__.split("\n\n")[0])
    sub = top.add_subparsers(dest="area", required=True)
    lab = sub.add_parser("lab", help="the virtual GPU lab (QEMU guests)")
    cmds = lab.add_subparsers(dest="command", required=True)
    build = cmds.add_parser("build", help="build the lab's assets and the guest's extensions")
    build.add_argument("--suite", help="instead: a host-side tree of this Debian suite (stable, "
                                       "testing, trixie-backports...) for a config's host_suite")
    build.set_defaults(func=cmd_build)
    cmds.add_parser("info", help="versions, accelerator and cache").set_defaults(func=cmd_info)
    boot = cmds.add_parser("boot", help="boot a guest with its console on this terminal")
    _add_guest_options(boot)
    boot.set_defaults(func=cmd_boot)
    run = cmds.add_parser("run", help="boot a guest, call MODULE:FUNC there, print the result")
    _add_guest_options(run)
    run.add_argument("target", metavar="MODULE:FUNC")
    run.add_argument("args", nargs="*", metavar="ARG", help="arguments (Python literals, else strings)")
    run.set_defaults(func=cmd_run)
    report = sub.add_parser("report", help="render Allure results into the HTML report (with history)")
    report.add_argument("--results", action="append", help="allure-pytest's --alluredir, "
                        "repeatable: machines' runs merged (default: reports/allure-results)")
    report.add_argument("--output", default="reports/html", help="report directory (default: %(default)s)")
    report.add_argument("--no-history", action="store_true",
                        help="do not carry the previous report's history (trends) over")
    report.set_defaults(func=cmd_report)
    from gpuhil.fuzz_command import add_commands as add_fuzz
    from gpuhil.report.compare import add_commands

    add_commands(sub)
    add_fuzz(sub)
    caps = sub.add_parser("capabilities", help="every capability name @pytest.mark.requires "
                                               "accepts, with its meaning (and --guest: its value)")
    caps.add_argument("--guest", metavar="CONF", choices=sorted(CONFIGURATIONS),
                      help="boot this configuration and print each name's probed value "
                           f"({', '.join(sorted(CONFIGURATIONS))})")
    caps.add_argument("--timeout", type=float, default=180.0,
                      help="boot (and GPU bring-up) timeout in seconds")
    caps.set_defaults(func=cmd_capabilities)
    return top


def cmd_capabilities(args: argparse.Namespace) -> int:
    """Every name ``requires`` accepts with its meaning; with --guest, booted and probed."""
    from gpuhil.gating.catalogue import catalogue

    names = catalogue()
    if args.guest is None:
        width = max(map(len, names))
        for name, meaning in names.items():
            print(f"{name:<{width}}  {meaning}")
        return 0
    from gpuhil.gating.capabilities import DeviceInitError
    from gpuhil.gating.snapshot import snapshot
    from gpuhil.lab.configurations import CONFIGURATIONS, is_raw_spec
    from gpuhil.lab.guest import Guest
    from gpuhil.bringup import prepare_gpu

    progress = _Progress()
    spec = CONFIGURATIONS[args.guest]
    guest = Guest(spec, setup=_setup(progress), boot_timeout=args.timeout, name="cli")
    guest.start()
    try:
        progress(f"[{args.guest}] booted; probing")
        node, error = None, None
        if spec.gpu is not None and not is_raw_spec(spec):
            try:
                node = prepare_gpu(guest, args.timeout)
            except DeviceInitError as exc:
                error = str(exc)
        vfio = spec.iommu is not None and bool(spec.devices)
        values = snapshot(guest, args.guest, render_node=node, vfio=vfio, raw=is_raw_spec(spec),
                          device_error=error).as_dict()
    finally:
        guest.close()
    rows = [(n, repr(values[n]) if n in values else "absent", m) for n, m in names.items()]
    rows += [(n, repr(v), "(not in the catalogue)") for n, v in values.items() if n not in names]
    widths = [max(len(r[i]) for r in rows) for i in (0, 1)]
    for name, value, meaning in rows:
        print(f"{name:<{widths[0]}}  {value:<{widths[1]}}  {meaning}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from gpuhil.report.render import render

    summary = render(args.results or ["reports/allure-results"], args.output, not args.no_history)
    print(f"{args.output}/index.html: {summary.total} tests, {summary.passed} passed, "
          f"{summary.failed} failed, {summary.broken} broken, {summary.skipped} skipped")
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuhil`` command."""
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # so that teardown runs on SIGTERM too
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from gpuhil.errors import GpuhilError

        if isinstance(exc, GpuhilError) or type(exc).__name__ in ("AssetError", "GuestBuildError"):
            print(f"gpuhil: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
