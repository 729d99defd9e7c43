"""``tapeflow replay-server``: serve a capture on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.errors import ConfigError
from tapeflow.timeutil import parse_duration_ns
from tapeflow.wire.registry import replayable

if TYPE_CHECKING:
    from tapeflow.replay.server import ReplayServer


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``replay-server`` subcommand on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser(
        "replay-server", help="serve a capture on a local websocket, as the venue would",
        description="Serve a recorded capture with the venue's subscription handshake and REST snapshot "
                    "so the real connectors run unchanged against it. Put the capture paths before --fault. "
                    "See docs/replay.md.")
    p.add_argument("--format", required=True, choices=replayable())
    p.add_argument("paths", nargs="+", type=Path, help="capture files (sim: or a folder)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="TCP port (0: pick a free one, printed at start)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="x recorded time (default 1.0: real time)")
    pace.add_argument("--as-fast-as-possible", action="store_true", help="no pacing: as fast as clients read")
    p.add_argument("--fault", nargs="+", action="extend", default=[], metavar="SPEC",
                   help="drop@N dup@N reorder@N disconnect@N stall@N:2s (N: frames queued, in tape order)")
    p.add_argument("--random-faults", default=None, metavar="KIND=P,...", help="e.g. drop=0.001,dup=0.001")
    p.add_argument("--seed", type=int, default=0, help="seed of --random-faults")
    p.add_argument("--rest-limit", default=None, metavar="N/WINDOW",
                   help="answer HTTP 429 + Retry-After beyond N REST requests per WINDOW (e.g. 10/1s)")
    p.add_argument("--settle", default="200ms",
                   help="quiet time after the last subscribe before the tape starts or resumes (e.g. 500ms)")
    p.add_argument("--compress", action="store_true",
                   help="negotiate permessage-deflate with clients that offer it (default: plain frames)")
    p.add_argument("--ping-interval", default=None, metavar="DURATION",
                   help="websocket ping period (default: the venue's, e.g. Binance spot 20s)")
    p.add_argument("--pong-timeout", default=None, metavar="DURATION",
                   help="cut a connection that has not answered a ping this long (default: the venue's)")
    p.add_argument("--no-heartbeat-after-end", action="store_true",
                   help="send no venue heartbeats once the tape has ended (default: send them)")
    p.add_argument("--progress-every", default="5s", help="status line period (e.g. 5s, 500ms)")
    p.add_argument("--rest-body", action="append", default=[], metavar="PATH=FILE",
                   help="also answer GET PATH with FILE's bytes (recorded REST answers, e.g. "
                        "/fapi/v1/premiumIndex=premium.json; the same PATH again: served in order, "
                        "the last one repeated)")
    p.set_defaults(func=_cmd_replay_server)
    return p


def parse_rest_limit(text: str) -> tuple[int, float]:
    """``10/1s`` -> ``(10, 1.0)``.

    Raises:
        ConfigError: not ``N/DURATION`` with N >= 1.
    """
    count, _, window = text.partition("/")
    if not count.isdigit() or int(count) < 1 or not window:
        raise ConfigError(f"--rest-limit {text!r}: expected N/WINDOW such as 10/1s")
    return int(count), parse_duration_ns(window) / 1e9


def parse_rest_bodies(pairs: list[str]) -> dict[str, list[bytes]]:
    """``PATH=FILE`` pairs -> the recorded bodies per path, in the order given.

    Raises:
        ConfigError: a pair without ``=``, a path without a leading ``/``, or an unreadable file.
    """
    bodies: dict[str, list[bytes]] = {}
    for pair in pairs:
        path, sep, file = pair.partition("=")
        if not sep or not path.startswith("/") or not file:
            raise ConfigError(f"--rest-body {pair!r}: expected /PATH=FILE")
        try:
            bodies.setdefault(path, []).append(Path(file).read_bytes())
        except OSError as exc:
            raise ConfigError(f"--rest-body {pair!r}: cannot read {file}: {exc.strerror or exc}") from None
    return bodies


def _seconds(text: str | None) -> float | None:
    """``--ping-interval``/``--pong-timeout``: a positive duration, or None (the venue's own)."""
    return None if text is None else parse_duration_ns(text) / 1e9  # it refuses 0 and negatives


def _cmd_replay_server(args: argparse.Namespace, settings: object) -> int:
    from tapeflow.replay.lines import run_line_server, serves_lines
    from tapeflow.replay.server import ReplayServer

    if serves_lines(args.format):  # a TCP line protocol (IQConnect), not a websocket
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _interrupt)
        return run_line_server(args)

    srv = ReplayServer(args.format, args.paths, host=args.host, port=args.port,
                       speed=None if args.as_fast_as_possible else args.speed, faults=args.fault,
                       random_faults=args.random_faults, seed=args.seed,
                       rest_limit=parse_rest_limit(args.rest_limit) if args.rest_limit else None,
                       settle_s=parse_duration_ns(args.settle) / 1e9, compress=args.compress,
                       ping_interval_s=_seconds(args.ping_interval),
                       pong_timeout_s=_seconds(args.pong_timeout),
                       heartbeat_after_end=not args.no_heartbeat_after_end,
                       rest_bodies=parse_rest_bodies(args.rest_body))
    every_s = parse_duration_ns(args.progress_every) / 1e9
    started = time.monotonic()
    # Ctrl-C and SIGTERM both stop cleanly with the summary, also when a non-interactive shell
    # started us in the background with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(_serve(srv, every_s))
    except KeyboardInterrupt:
        pass
    elapsed = time.monotonic() - started
    print(f"replay-server: stopped after {elapsed:.1f}s: {srv.frames_served:,} frames served, tape at "
          f"{srv.position:,}/{len(srv.tape):,}, {len(srv.injected)} faults injected, {srv.bad_lines} bad "
          f"capture lines skipped", flush=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


async def _serve(srv: ReplayServer, every_s: float) -> None:
    async with srv:
        pace = "as fast as possible" if srv.speed is None else f"{srv.speed:g}x recorded time"
        print(f"replay-server: {srv.format}: {len(srv.tape):,} frames from {len(srv.paths)} file(s), {pace}, "
              f"{srv.bad_lines} bad capture lines skipped", flush=True)
        print(f"replay-server: websocket {srv.ws_url}  REST {srv.rest_url}  "
              f"status {srv.rest_url}/_replay/status", flush=True)
        last_served, last_t, last_line = 0, time.monotonic(), ""
        while True:
            await asyncio.sleep(every_s)
            now = time.monotonic()
            rate = (srv.frames_served - last_served) / max(now - last_t, 1e-9)
            last_served, last_t = srv.frames_served, now
            status = srv.status()
            line = (f"{'finished' if srv.finished else 'serving'}: {srv.frames_served:,} frames served, tape "
                    f"{srv.position:,}/{len(srv.tape):,}, {len(status['injected'])} faults, "
                    f"{status['connections']} connections")
            if line != last_line:  # an idle server stays quiet
                print(f"replay-server: {line} ({rate:,.0f} frames/s)", file=sys.stdout, flush=True)
                last_line = line
