"""The process that holds a labgrid place for one pytest session (``python -m
gpuhil.host.place_keeper``), started by :class:`gpuhil.host.labgrid_place.PlaceHold`.

labgrid's acquisitions never expire and are per host and user, not per process, so a session
that dies holding a place would keep it forever, and two sessions of one user would share it.
The keeper therefore, in its own process group (a Ctrl-C to the terminal does not reach it):

1. takes the host-wide gpuhil lease ``labgrid-place-<name>`` (:mod:`gpuhil.host.lease`), so two
   sessions on this host never hold one place; the busy policy applies to it;
2. acquires the place on the coordinator if it is free (it is then gpuhil's, released at the
   end); a place this host's user acquired beforehand is used and left acquired; a place someone
   else holds is busy: ``wait`` polls until it is free, ``skip``/``fail`` report the holder;
   ``+TOKEN`` (or ``+`` with ``LG_TOKEN``) waits for the reservation's allocation first and
   keeps polling it, which is what keeps a labgrid reservation from expiring;
3. prints one JSON line (the place, its tags and its ``GpuhilGpu`` resources, or ``error``);
4. lives as long as its parent and releases what it acquired when the parent is gone or it is
   told to stop (SIGTERM, SIGINT, SIGHUP).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

from gpuhil.host.lease import LeaseBusy, acquire

RESOURCE_CLASS = "GpuhilGpu"
REFRESH_SECONDS = 20.0  # reservations expire after about a minute without a poll


_REPORT = sys.stdout  # the JSON report; main() sends everything else on fd 1 to stderr


def _say(**message: object) -> None:
    _REPORT.write(json.dumps(message) + "\n")
    _REPORT.flush()


class _Stop(Exception):
    pass


def _stop(signum: int, frame: object) -> None:
    raise _Stop()


def _pause(session, seconds: float) -> None:
    """Sleep with the session's event loop running (its stream keeps places up to date)."""
    session.loop.run_until_complete(asyncio.sleep(seconds))


def _poll_reservation(session, token: str):
    from labgrid.remote.common import Reservation
    from labgrid.remote.generated import labgrid_coordinator_pb2

    request = labgrid_coordinator_pb2.PollReservationRequest(token=token)
    response = session.loop.run_until_complete(session.stub.PollReservation(request))
    return Reservation.from_pb2(response.reservation)


def _place_of(session, pattern: str, token: str, deadline: float):
    """The place a name (or the reservation ``token``, waited for until ``deadline``)
    designates; None when the reservation is still waiting then."""
    from labgrid.remote.common import ReservationState

    if token:
        while _poll_reservation(session, token).state is ReservationState.waiting:
            if time.monotonic() >= deadline:
                return None
            _pause(session, 1.0)
        session.loop.run_until_complete(session.sync_with_coordinator())
    return session.get_place(f"+{token}" if token else pattern)


def _gpus(session, place) -> list[dict]:
    gpus = []
    for (name, cls), resource in sorted(session.get_target_resources(place).items()):
        if cls == RESOURCE_CLASS:
            params = {k: v for k, v in resource.args.items() if k != "extra"}
            gpus.append({"name": name, **params})
    return gpus


def keep(address: str, pattern: str, parent: int, lease_dir: Path, busy: str,
         timeout: float) -> int:
    try:
        from labgrid.remote.client import Error as LabgridError
        from labgrid.remote.client import start_session
    except ImportError as exc:
        _say(error=f"labgrid is not installed (pip install 'gpuhil[labgrid]'): {exc}")
        return 2

    token = pattern[1:] or os.environ.get("LG_TOKEN", "") if pattern.startswith("+") else ""
    try:
        session = start_session(address, extra={"args": argparse.Namespace(
            place=None, allow_unmatched=True, kick=False)})
    except Exception as exc:  # grpc's connection errors have no common public base
        _say(error=f"labgrid coordinator {address}: cannot connect "
                   f"({str(exc).removeprefix('Error: ')})")
        return 2
    lease = ours = place = None
    try:
        deadline = time.monotonic() + (float("inf") if busy == "wait" else timeout)
        try:
            place = _place_of(session, pattern, token, deadline)
            if place is None:
                _say(error=f"reservation {token} is still waiting for a place after "
                           f"{timeout:g} s", busy=True)
                return 3
            lease = acquire(f"labgrid-place-{place.name}", lease_dir,
                            float("inf") if busy == "wait" else timeout,
                            holder=f"pytest pid {parent}")
        except LeaseBusy as exc:
            _say(error=f"place {place.name}: another gpuhil session on this host holds it: "
                       f"{exc}", busy=True)
            return 3
        me = f"{session.gethostname()}/{session.getuser()}"
        while True:
            place = session.places[place.name]
            if place.acquired is None:
                session.args.place = place.name
                session.loop.run_until_complete(session.acquire())
                ours = place.name
                break
            if place.acquired == me:
                break
            if time.monotonic() >= deadline:
                _say(error=f"place {place.name} is acquired by {place.acquired}", busy=True)
                return 3
            _pause(session, 1.0)
        place = session.places[place.name]
        _say(place=place.name, acquired=place.acquired, ours=bool(ours), tags=dict(place.tags),
             gpus=_gpus(session, place), coordinator=address)
        refreshed = time.monotonic()
        while os.getppid() == parent:
            _pause(session, 0.5)
            if token and time.monotonic() - refreshed > REFRESH_SECONDS:
                _poll_reservation(session, token)
                refreshed = time.monotonic()
        return 0
    except _Stop:
        return 0
    except LabgridError as exc:
        _say(error=f"labgrid coordinator {address}: {str(exc).removeprefix('Error: ')}")
        return 2
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second stop must not cut the release
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if ours:
            session.args.place = ours
            session.loop.run_until_complete(session.release())
        session.loop.run_until_complete(session.stop())
        if lease is not None:
            lease.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpuhil.host.place_keeper")
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--place", required=True, help="name, alias, +TOKEN or + (LG_TOKEN)")
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--lease-dir", type=Path, required=True)
    parser.add_argument("--busy", choices=("skip", "wait", "fail"), default="fail")
    parser.add_argument("--timeout", type=float, default=0.0)
    args = parser.parse_args(argv)
    global _REPORT
    _REPORT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # labgrid's client prints its progress ("acquired place ...") on stdout
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
    return keep(args.coordinator, args.place, args.parent, args.lease_dir, args.busy,
                 args.timeout)


if __name__ == "__main__":
    sys.exit(main())
