"""``tapeflow live``: run the Bytewax market flow (``flows.market``) on a live feed or a capture.

``tapeflow`` may not import ``flows`` (the layers go the other way), so this command runs
``python -m bytewax.run "flows.market:flow_from_env()"`` with the ``TAPEFLOW_LIVE_*`` variables that
say what to run and ends with a summary. One local process (the usual case) runs it in this
process, through ``bytewax.run``'s own command line: no second interpreter to start and no second
import of the modules the settings check already loaded (a first output about a second sooner).
Several local processes, or one process of a cluster (``-i/-a``), are spawned and their output
streamed. Each flow worker prints one ``live-summary {json}`` line on stdout when it finishes;
they are added up here.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import runpy
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tapeflow.errors import ConfigError
from tapeflow.live import failure
from tapeflow.live.shutdown import DEFAULT_GRACE_S, SignalStop
from tapeflow.options import LIVE_FORMAT
from tapeflow.settings import CLOCKS, LiveSettings, Settings
from tapeflow.timeutil import parse_duration_ns
from tapeflow.wire.registry import get_format, live_venues

SUMMARY_PREFIX = "live-summary "
FLOW = "flows.market:flow_from_env()"


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``tapeflow live`` to the ``tapeflow`` sub-commands."""
    p = sub.add_parser("live", help="run the live Bytewax flow on a venue feed or a capture",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("what to run")
    src.add_argument("--venue", help="venue connector: a format with a live client (tapeflow formats)")
    src.add_argument("--symbols", help="instruments as the venue spells them, comma separated")
    src.add_argument("--endpoint", help="websocket URL (default: the venue's; a replay server's ws_url)")
    src.add_argument("--rest-endpoint", help="REST base URL for snapshots")
    src.add_argument("--capture", nargs="+", type=Path, metavar="FILE",
                     help="replay capture/journal/simulator files instead of connecting")
    src.add_argument("--format", dest="format_name", help="format of --capture files (default: --venue)")
    src.add_argument("--options", action="store_true",
                     help="run the options flow (IVs, surfaces) on Deribit option tickers: with --venue "
                          "deribit --symbols BTC,BTC-30APR21-60000-C,... over the websocket, or on --capture "
                          "files (same as --format deribit-options; docs/options.md)")
    src.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="connector keyword argument, e.g. market=spot (binance), depth=100 (kraken)")
    src.add_argument("--poll", metavar="VENUE:SYMBOLS[;...]",
                     help="also poll derivatives REST endpoints (funding, mark, index, open interest, "
                          "insurance fund; venues binance_usdm, binance_coinm, bybit, okx), e.g. "
                          "binance_usdm:BTCUSDT,ETHUSDT;okx:BTC-USDT-SWAP")
    src.add_argument("--failover", type=Path, metavar="CONFIG",
                     help="run every source of a failover config (instead of --venue): per instrument the "
                          "best healthy source's rows, source_switch rows (docs/failover.md)")
    src.add_argument("--poll-url", help="base URL for every polled venue (a replay server's REST URL)")
    src.add_argument("--derivatives", action="store_true",
                     help="also subscribe the venue's derivatives websocket channels (funding, mark, index, "
                          "open interest, liquidations; binance, bybit, okx) on a second connection, with "
                          "their basis and open-interest change (docs/derivatives.md)")
    src.add_argument("--derivatives-only", action="store_true",
                     help="the derivatives channels without the book feed")
    src.add_argument("--derivatives-option", action="append", default=[], metavar="KEY=VALUE",
                     help="derivatives connector keyword argument, e.g. market=coinm (binance COIN-M, "
                          "dstream; default usdm), liquidations=all (bybit), all_liquidations=true (binance)")
    src.add_argument("--stream-silence", metavar="DURATION",
                     help="with --derivatives and --poll: the channels' silence (event time) that hands "
                          "an instrument's derived rows to the polls, e.g. 5s (default 10s; "
                          "docs/derivatives.md)")
    src.add_argument("--duration", help="stop a live feed after this long, e.g. 30s, 5m")
    src.add_argument("--idle-exit", help="stop a live feed after this long without data, e.g. 5s")
    src.add_argument("--clock", choices=CLOCKS, default="auto",
                     help="how the health stage judges latency: wall (against today's clock; live feeds), "
                          "relative (against the feed's own recent level; replays of old captures), none "
                          "(feed latency only; capture files); auto: wall for a feed, none for files")
    run = p.add_argument_group("how to run")
    run.add_argument("-w", "--workers", type=int, default=1, help="Bytewax workers per process")
    run.add_argument("--processes", type=int, default=1,
                     help="start this many local processes (each with -w workers) as one cluster")
    run.add_argument("-i", "--process-id", type=int, help="this process's id in a multi-host cluster")
    run.add_argument("-a", "--addresses", help="host:port of every process, ';' separated (with -i)")
    run.add_argument("--recovery", type=Path, metavar="DIR",
                     help="Bytewax recovery store (created on first use); a rerun resumes from it")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve Prometheus metrics at 127.0.0.1:PORT/metrics (--processes: PORT+i)")
    run.add_argument("--snapshot-every", default="10s", help="recovery snapshot interval (whole seconds)")
    out = p.add_argument_group("outputs")
    out.add_argument("--lake", type=Path, help="lake root (default $TAPEFLOW_LAKE or ./lake)")
    out.add_argument("--clickhouse", help="DSN: chdb:DIR (embedded) or http(s)://host:8123")
    out.add_argument("--no-lake", action="store_true", help="do not write Parquet")
    out.add_argument("--no-clickhouse", action="store_true", help="do not load the warehouse")
    out.add_argument("--journal", type=Path, help="journal root for live frames (default ./journal)")
    book = p.add_argument_group("book, bars, metrics")
    book.add_argument("--levels", type=int, default=10, help="book snapshot depth per side")
    book.add_argument("--interval", default="1s", help="snapshot (and metric) grid, e.g. 1s")
    book.add_argument("--bars", help="bar intervals, comma separated (default the 15 standard ones)")
    from tapeflow.settings import DEFAULT_BATCH_EVENTS

    book.add_argument("--batch-events", type=int,
                      help=f"rows per micro-batch of a capture (default {DEFAULT_BATCH_EVENTS})")
    book.add_argument("--bbo-as-quote", action="store_true", help="store the rebuilt BBO as quote rows")
    book.add_argument("--no-raw", action="store_true",
                      help="store only what the flow derives (snapshots, bars, metrics, dead letters, "
                           "status), not the decoded input records")
    book.add_argument("--signals", action="store_true",
                      help="run the signal detectors (whale, withdrawal) after the metrics; "
                           "off by default: ~0.5 CPU s per micro-batch today (docs/live.md)")
    book.add_argument("--alerts", type=Path, metavar="CONFIG",
                      help="alert on signal and feed-status rows with the rules and channels of this file "
                           "(default: TAPEFLOW_ALERTS_CONFIG; docs/alerts.md)")
    out.add_argument("--bus", metavar="URL",
                     help="also publish the rows to Redis Streams at this redis://host:port URL "
                          "(default: TAPEFLOW_BUS; docs/bus.md)")
    out.add_argument("--kafka", metavar="HOST:PORT,...",
                     help="also publish the rows to Kafka (topics per kind, keyed by instrument) through "
                          "these brokers (default: TAPEFLOW_KAFKA_BROKERS; docs/bus.md#kafka)")
    out.add_argument("--publish", metavar="HOST:PORT",
                     help="publish the outputs on this loopback address for `tapeflow serve --live` "
                          "(docs/dashboard.md)")
    p.set_defaults(func=run_live)


def live_env(args: argparse.Namespace, settings: Settings) -> dict[str, str]:
    """The environment of the flow process for these arguments.

    Raises:
        ConfigError: neither a capture nor a venue with symbols, or a bad duration.
    """
    failover = getattr(args, "failover", None)
    if not args.capture and not (args.venue and args.symbols) and not getattr(args, "poll", None) \
            and failover is None:
        raise ConfigError("tapeflow live needs --venue and --symbols (a live feed), --capture FILE... "
                          "--poll VENUE:SYMBOLS (derivatives polls) or --failover CONFIG")
    for name in ("duration", "idle_exit", "interval", "snapshot_every"):
        value = getattr(args, name)
        if value:
            parse_duration_ns(value)
    env = {
        "TAPEFLOW_LIVE_VENUE": args.venue or "",
        "TAPEFLOW_LIVE_FORMAT": live_format(args),
        "TAPEFLOW_LIVE_SYMBOLS": args.symbols or "",
        "TAPEFLOW_LIVE_ENDPOINT": args.endpoint or "",
        "TAPEFLOW_LIVE_REST_ENDPOINT": args.rest_endpoint or "",
        "TAPEFLOW_LIVE_CAPTURE": os.pathsep.join(str(p.resolve()) for p in args.capture or ()),
        "TAPEFLOW_LIVE_DURATION": args.duration or "",
        "TAPEFLOW_LIVE_IDLE_EXIT": args.idle_exit or "",
        "TAPEFLOW_LIVE_CLOCK": args.clock,
        "TAPEFLOW_LIVE_LEVELS": str(args.levels),
        "TAPEFLOW_LIVE_INTERVAL": args.interval,
        "TAPEFLOW_LIVE_BBO_AS_QUOTE": "1" if args.bbo_as_quote else "0",
        "TAPEFLOW_LIVE_RAW": "0" if args.no_raw else "1",
        "TAPEFLOW_LIVE_SIGNALS": "1" if args.signals else "0",
        "TAPEFLOW_LAKE": str(args.lake or settings.lake_dir),
        "TAPEFLOW_CLICKHOUSE": args.clickhouse or settings.clickhouse_dsn,
    }
    env["TAPEFLOW_LIVE_CLIENT_OPTIONS"] = json.dumps(client_options(args.option))
    outputs = [o for o, off in (("lake", args.no_lake), ("clickhouse", args.no_clickhouse)) if not off]
    env["TAPEFLOW_LIVE_OUTPUTS"] = ",".join(outputs) or "none"
    if args.journal:
        env["TAPEFLOW_LIVE_JOURNAL"] = str(args.journal)
    if getattr(args, "alerts", None):
        env["TAPEFLOW_ALERTS_CONFIG"] = str(args.alerts.resolve())
    if failover is not None:
        env["TAPEFLOW_LIVE_FAILOVER"] = str(failover.resolve())
    if getattr(args, "poll", None):
        env["TAPEFLOW_LIVE_POLL"] = args.poll
    if getattr(args, "poll_url", None):
        env["TAPEFLOW_LIVE_POLL_URL"] = args.poll_url
    if getattr(args, "derivatives", False) or getattr(args, "derivatives_only", False):
        from tapeflow.derivatives.clients import client_class

        if not (args.venue and args.symbols) or args.capture:
            raise ConfigError("--derivatives takes a live feed: --venue and --symbols (no --capture)")
        client_class(args.venue)  # a venue without derivatives channels fails here
        env["TAPEFLOW_LIVE_DERIVATIVES"] = "only" if args.derivatives_only else "with"
        env["TAPEFLOW_LIVE_DERIVATIVES_OPTIONS"] = json.dumps(client_options(args.derivatives_option))
    if getattr(args, "stream_silence", None):
        try:
            parse_duration_ns(args.stream_silence)
        except ConfigError as exc:
            raise ConfigError(f"--stream-silence: {exc}") from exc
        env["TAPEFLOW_LIVE_STREAM_SILENCE"] = args.stream_silence
    if getattr(args, "publish", None):
        from tapeflow.serve.settings import check_publish

        env["TAPEFLOW_LIVE_PUBLISH"] = check_publish(args.publish)
    if args.bars:
        env["TAPEFLOW_LIVE_BARS"] = args.bars
    if args.batch_events:
        env["TAPEFLOW_LIVE_BATCH_EVENTS"] = str(args.batch_events)
    if getattr(args, "metrics_port", None) is not None:
        if not 0 <= args.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port must be a TCP port (0-65535), got {args.metrics_port}")
        env["TAPEFLOW_LIVE_METRICS_PORT"] = str(args.metrics_port)
    if getattr(args, "bus", None):
        env["TAPEFLOW_BUS"] = args.bus
    if getattr(args, "kafka", None):
        env["TAPEFLOW_KAFKA_BROKERS"] = args.kafka
    from tapeflow.bus.settings import BusSettings

    BusSettings.from_env(Path(env["TAPEFLOW_LAKE"]), os.environ | env)  # a bad TAPEFLOW_BUS* fails here too
    LiveSettings.from_env(env)  # what the flow process will read: a bad value fails here, before it starts
    return env


def live_format(args: argparse.Namespace) -> str:
    """The flow's format: ``deribit-options`` with ``--options``, else ``--format`` or the venue.

    Raises:
        ConfigError: ``--options`` with another venue or format.
    """
    if not getattr(args, "options", False):
        return args.format_name or args.venue or ""
    if args.venue not in (None, "deribit") or args.format_name not in (None, LIVE_FORMAT):
        raise ConfigError("--options reads Deribit option tickers: --venue deribit (or no --venue with "
                          f"--capture), not --venue {args.venue} --format {args.format_name}")
    return LIVE_FORMAT


def client_options(pairs: Sequence[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs as connector keyword arguments (a JSON value where it parses, else text).

    Raises:
        ConfigError: a pair without ``=``.
    """
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option takes KEY=VALUE, got {pair!r}")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def flow_commands(args: argparse.Namespace) -> list[list[str]]:
    """One ``python -m bytewax.run`` command line per local process."""
    if args.workers < 1 or args.processes < 1:
        raise ConfigError(f"--workers ({args.workers}) and --processes ({args.processes}) must be >= 1")
    base = [sys.executable, "-m", "bytewax.run", FLOW, "-w", str(args.workers)]
    if args.recovery is not None:
        seconds = max(1, parse_duration_ns(args.snapshot_every) // 1_000_000_000)
        base += ["-r", str(args.recovery), "-s", str(seconds), "-b", "0"]
    if args.process_id is not None or args.addresses:
        if args.process_id is None or not args.addresses or args.processes != 1:
            raise ConfigError("a multi-host cluster needs both -i and -a (and no --processes)")
        return [base + ["-i", str(args.process_id), "-a", args.addresses]]
    if args.processes == 1:
        return [base]
    addresses = ";".join(f"localhost:{port}" for port in _free_ports(args.processes))
    return [base + ["-i", str(i), "-a", addresses] for i in range(args.processes)]


def _free_ports(n: int) -> list[int]:
    # let the OS pick: fixed ports collide with any other cluster (or test run) on the host
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _init_recovery(directory: Path, partitions: int) -> None:
    # bytewax.run resumes from an initialised store; a new directory gets one partition per worker
    if directory.exists() and any(directory.glob("part-*.sqlite3")):
        return
    directory.mkdir(parents=True, exist_ok=True)
    from bytewax.recovery import init_db_dir  # what `python -m bytewax.recovery DIR N` runs

    init_db_dir(directory, partitions)


def run_live(args: argparse.Namespace, settings: Settings, *, out: IO[str] | None = None) -> int:
    """Run the flow (in this process, or in child processes whose output is streamed), print a
    summary; returns the exit code (docs/reliability.md: 2 an error, 70 a bug, 130 after SIGINT,
    143 after SIGTERM)."""
    out = out or sys.stdout
    env = os.environ | live_env(args, settings)
    check_source(args)
    commands = flow_commands(args)
    if "clickhouse" in env["TAPEFLOW_LIVE_OUTPUTS"].split(","):
        failure.check_warehouse(env["TAPEFLOW_CLICKHOUSE"])
    if args.recovery is not None:
        _init_recovery(args.recovery, args.workers * args.processes)
    what = (f"capture {', '.join(str(p) for p in args.capture)}" if args.capture
            else f"{args.venue} {args.symbols}" if args.venue
            else f"failover {args.failover}" if getattr(args, "failover", None) else "no venue feed")
    if getattr(args, "poll", None):
        what += f", derivatives polls {args.poll}"
    if env.get("TAPEFLOW_LIVE_DERIVATIVES"):
        what += f", derivatives channels ({env['TAPEFLOW_LIVE_DERIVATIVES']} the book feed)"
    print(f"live: {what}; {len(commands)} process(es) x {args.workers} worker(s)", file=out, flush=True)
    started = time.monotonic()
    here = len(commands) == 1 and args.process_id is None
    # children get their own grace first; the parent kills what is left after it
    with SignalStop(grace_s=DEFAULT_GRACE_S if here else DEFAULT_GRACE_S + 5,
                    clean=args.recovery is None) as stop:
        if here:
            code, summaries = run_in_process(commands[0], env, out)
            codes = [code]
        else:
            codes, summaries = _run_processes(commands, env, out, stop)
    rows = add_summaries(summaries)
    elapsed = time.monotonic() - started
    detail = ", ".join(f"{k}={v:,}" for k, v in sorted(rows.items())) or "no rows"
    if stop.exit_code is not None:
        how = "aborted" if stop.aborted else "stopped"
        name = "SIGINT" if stop.exit_code == failure.EXIT_INTERRUPTED else "SIGTERM"
        print(f"live: {how} by {name} after {elapsed:.1f} s: {sum(rows.values()):,} rows ({detail})",
              file=out, flush=True)
        return stop.exit_code
    failed = [c for c in codes if c != 0]
    outcome = "failed" if failed else "done"
    print(f"live: {outcome} in {elapsed:.1f} s: {sum(rows.values()):,} rows ({detail})", file=out, flush=True)
    if failed:
        return failed[0]
    return 0


def run_in_process(command: list[str], env: dict[str, str], out: IO[str]) -> tuple[int, list[str]]:
    """Run a ``python -m bytewax.run ...`` command line (from :func:`flow_commands`) in this process.

    ``bytewax.run`` parses the same arguments (workers, recovery flags) as in a child; the flow
    reads ``env`` from the environment, which is restored afterwards. Its stdout goes to ``out``
    but for the ``live-summary`` lines, which are returned.

    Returns:
        the exit code (:func:`tapeflow.live.failure.report`'s after an exception: one line on
        stderr, no traceback), and the summary lines.
    """
    saved_env, saved_argv, saved_stdout = dict(os.environ), sys.argv, sys.stdout
    lines = _SummaryLines(out)
    os.environ.update(env)
    sys.argv = ["bytewax.run", *command[3:]]
    sys.stdout = lines
    code = 0
    try:
        with warnings.catch_warnings(), failure.PanicFilter():
            # bytewax.testing imports bytewax.run: running it as __main__ again is intended here
            warnings.filterwarnings("ignore", "'bytewax.run' found in sys.modules", RuntimeWarning)
            runpy.run_module("bytewax.run", run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # bytewax.run's own argument errors
        code = exc.code if isinstance(exc.code, int) else 1
    except (Exception, KeyboardInterrupt) as exc:
        code = failure.report(exc)
    finally:
        sys.stdout, sys.argv = saved_stdout, saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
        lines.close_line()
    return code, lines.summaries


class _SummaryLines:
    """A stdout that passes lines on to ``out`` and keeps the ``live-summary`` ones."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.summaries: list[str] = []
        self._partial = ""

    def write(self, text: str) -> int:
        *whole, self._partial = (self._partial + text).split("\n")
        for line in whole:
            self._line(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def close_line(self) -> None:
        if self._partial:
            self._line(self._partial)
            self._partial = ""

    def _line(self, line: str) -> None:
        if line.startswith(SUMMARY_PREFIX):
            self.summaries.append(line)
        else:
            self.out.write(line)


def _run_processes(commands: list[list[str]], env: dict[str, str], out: IO[str], stop: SignalStop
                   ) -> tuple[list[int], list[str]]:
    """Run each command line in a child process, stream their output; returns exit codes and summaries.

    ``stop`` forwards SIGINT/SIGTERM to the children and kills those still alive after its grace.
    """
    # each child runs bytewax.run as a one-process command does: clean stops, one-line failures.
    # Own sessions: Ctrl-C in a terminal signals its whole process group, and a child that got it
    # from there and again from this process would take the second as "abort now"
    procs = [subprocess.Popen([cmd[0], "-m", "tapeflow.live.child", *cmd[3:]], env=_process_env(env, i),
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
             for i, cmd in enumerate(commands)]
    stop.children.extend(procs)
    lines: queue.Queue[str | None] = queue.Queue()
    # one reader per process: a cluster's processes wait on each other, so no pipe may fill up
    readers = [threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True) for proc in procs]
    for reader in readers:
        reader.start()
    summaries: list[str] = []
    try:
        open_pipes = len(procs)
        while open_pipes:
            line = lines.get()
            if line is None:
                open_pipes -= 1
            elif line.startswith(SUMMARY_PREFIX):
                summaries.append(line)
            else:
                out.write(line)
                out.flush()
        codes = [proc.wait() for proc in procs]
    except BaseException:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
        raise
    return codes, summaries


def _process_env(env: dict[str, str], index: int) -> dict[str, str]:
    # local processes share a host, so each serves its metrics on its own port (0 stays "any free")
    port = env.get("TAPEFLOW_LIVE_METRICS_PORT")
    if not port or index == 0 or int(port) == 0:
        return env
    return env | {"TAPEFLOW_LIVE_METRICS_PORT": str(int(port) + index)}


def _pump(pipe: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    if pipe is not None:
        for line in pipe:
            lines.put(line)
    lines.put(None)


def check_source(args: argparse.Namespace) -> None:
    """Refuse, before any process starts, what the flow could only refuse with a traceback.

    Raises:
        ConfigError: an unknown format, a missing capture file or a venue without a connector.
    """
    if args.capture:
        if live_format(args) != LIVE_FORMAT:  # the options flow reads Deribit tickers
            get_format(args.format_name or args.venue or "")
        missing = [str(p) for p in args.capture if not p.is_file()]
        if missing:
            raise ConfigError(f"capture files not found: {', '.join(missing)}")
        return
    if not args.venue and getattr(args, "failover", None):
        from tapeflow.live.failover_config import load_failover

        config = load_failover(args.failover)
        for spec in config.sources:
            if spec.venue not in live_venues():
                raise ConfigError(f"{args.failover}: source {spec.name}: no live connector for venue "
                                  f"{spec.venue!r}; venues with one: {', '.join(live_venues())}")
        return
    if not args.venue and getattr(args, "poll", None):
        return  # derivatives polls alone (their spec was checked with the settings)
    if args.venue not in live_venues():
        known = ", ".join(live_venues())
        raise ConfigError(f"no live connector for venue {args.venue!r}; venues with one: {known}")


def add_summaries(lines: Sequence[str]) -> dict[str, int]:
    """Rows per table over the ``live-summary`` lines of every worker (other lines are ignored)."""
    total: dict[str, int] = {}
    for line in lines:
        if line.startswith(SUMMARY_PREFIX):
            for name, n in json.loads(line[len(SUMMARY_PREFIX):])["rows"].items():
                total[name] = total.get(name, 0) + int(n)
    return total
