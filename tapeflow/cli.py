"""The ``tapeflow`` command: every subcommand, with its one-line help, is listed by ``tapeflow --help``."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from tapeflow.alerts import cli as alerts_cli
from tapeflow.backtest import cli as backtest_cli
from tapeflow.backtest import paper_cli
from tapeflow.batch import bars_cli
from tapeflow.derivatives import cli as derivatives_cli
from tapeflow.errors import TapeflowError
from tapeflow.live import cli as live_cli
from tapeflow.ml import cli as ml_cli
from tapeflow.options import cli as options_cli
from tapeflow.replay import cli as replay_cli
from tapeflow.serve import cli as serve_cli
from tapeflow.settings import Settings
from tapeflow.signals import cli as signals_cli
from tapeflow.timeutil import parse_duration_ns
from tapeflow.venues.databento import cli as databento_cli
from tapeflow.wire.inputs import check_inputs, diagnose
from tapeflow.wire.registry import format_names, formats, get_format
from tapeflow.wire.rejects import IGNORED_BY_RULE, tally
from tapeflow.wire.sniff import check_format

DESCRIPTION = ("Market microstructure data: decode venue and vendor files, check them against their "
               "oracles, store them in a Parquet lake and ClickHouse, rebuild order books, and run the "
               "live Bytewax flow on a venue feed, a replay server or a capture.")
EPILOG = ("Run `tapeflow COMMAND --help` for a command's options. Configuration comes from TAPEFLOW_LAKE, "
          "TAPEFLOW_CLICKHOUSE and TAPEFLOW_LIVE_* (see README.md); `make demo` shows every command at work.")


# exit codes (docs/cli.md, docs/reliability.md)
EXIT_OK = 0  # everything normalized (or ignored by rule), the oracle passed
EXIT_VERIFY_FAILED = 1  # verify: the data disagree with their oracle
EXIT_ERROR = 2  # a usage error or an input that cannot be decoded at all (file-level damage, wrong format)
EXIT_REJECTED = 3  # ingest/verify: input units were dead-lettered (and --allow-rejects was not given)
EXIT_INTERNAL = 70  # a bug in tapeflow (sysexits' EX_SOFTWARE), never bad input
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tapeflow`` console script; returns the exit code (``EXIT_*``)."""
    try:
        parser = _parser()  # the --format choices ask the registry, which names a broken venue folder
    except TapeflowError as exc:
        print(f"tapeflow: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    settings = Settings.from_env()
    try:
        return int(args.func(args, settings) or 0)
    except TapeflowError as exc:
        print(f"tapeflow: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except FileNotFoundError as exc:
        print(f"tapeflow: error: no such file: {exc.filename}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("tapeflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last net: a damaged file a decoder let through, else a bug
        return _unexpected(exc, getattr(args, "paths", []))


def _unexpected(exc: Exception, paths: Sequence[Path]) -> int:
    damage = diagnose([p for p in paths if p.is_file()])
    if damage is not None:
        print(f"tapeflow: error: {damage}", file=sys.stderr)
        return EXIT_ERROR
    if os.environ.get("TAPEFLOW_TRACEBACK"):
        traceback.print_exc()
    print(f"tapeflow: internal error: {type(exc).__name__}: {exc}\n"
          "  this is a bug in tapeflow, not in the input: please report it with the command line "
          "(TAPEFLOW_TRACEBACK=1 prints where it happened)", file=sys.stderr)
    return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tapeflow", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=_OneLineHelp)
    sub = p.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    names = format_names()  # every venue folder's FORMAT: adding a folder adds a choice

    f = sub.add_parser("formats", help="list the input formats and whether they have an oracle")
    f.set_defaults(func=_cmd_formats)

    ver = sub.add_parser("verify", help="check files against their own oracle")
    ver.add_argument("format", choices=names)
    ver.add_argument("paths", nargs="+", type=Path)
    ver.add_argument("--allow-rejects", action="store_true",
                     help="exit 0 even when input units were dead-lettered (default: exit 3)")
    ver.set_defaults(func=_cmd_verify)

    ing = sub.add_parser("ingest", help="decode files into lake partitions and warehouse rows")
    ing.add_argument("--format", required=True, choices=names)
    ing.add_argument("paths", nargs="+", type=Path)
    ing.add_argument("--lake", type=Path, help="lake root (default $TAPEFLOW_LAKE or ./lake)")
    ing.add_argument("--clickhouse", help="DSN: chdb:///DIR (embedded) or http(s)://host:8123")
    ing.add_argument("--no-lake", action="store_true", help="do not write Parquet")
    ing.add_argument("--no-clickhouse", action="store_true", help="do not load the warehouse")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    ing.add_argument("--allow-rejects", action="store_true",
                     help="exit 0 even when input units were dead-lettered (default: exit 3)")
    ing.set_defaults(func=_cmd_ingest)

    book = sub.add_parser("book", help="rebuild books and write top-N snapshots")
    book.add_argument("--format", required=True, choices=names)
    book.add_argument("paths", nargs="+", type=Path)
    book.add_argument("--levels", type=int, default=10)
    book.add_argument("--interval", default="1s",
                      help="snapshot grid (e.g. 1s, 100ms); 'event' for one after every event")
    book.add_argument("--out", type=Path, required=True, help="output .parquet file")
    book.add_argument("--quiet", action="store_true", help="no progress bar")
    book.set_defaults(func=_cmd_book)

    sim = sub.add_parser("simulate", help="write a deterministic simulated market")
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--instruments", type=int, default=2)
    sim.add_argument("--duration", default="10m", help="simulated time per instrument (e.g. 10m, 1h)")
    sim.add_argument("--preset", choices=("crypto", "equity"), default="crypto")
    sim.add_argument("--out", type=Path, required=True)
    sim.add_argument("--overlap", action="store_true",
                     help="plant episodes that coincide with each other and with busy periods "
                          "(default: disjoint slots)")
    sim.add_argument("--options", action="store_true",
                     help="an option chain on one underlying instead (docs/options.md \"Simulated chains\")")
    sim.set_defaults(func=_cmd_simulate)

    q = sub.add_parser("query", help="run SQL against the warehouse and print the result")
    q.add_argument("sql")
    q.add_argument("--clickhouse", help="DSN (default $TAPEFLOW_CLICKHOUSE or chdb:///warehouse)")
    q.set_defaults(func=_cmd_query)

    replay_cli.add_parser(sub)
    live_cli.add_parser(sub)
    signals_cli.add_parser(sub)
    options_cli.add_parser(sub)
    derivatives_cli.add_parser(sub)
    alerts_cli.add_parser(sub)
    databento_cli.add_parser(sub)
    bars_cli.add_parser(sub)
    ml_cli.add_parser(sub)
    serve_cli.add_parser(sub)
    backtest_cli.add_parser(sub)
    paper_cli.add_parser(sub)
    return p


class _OneLineHelp(argparse.HelpFormatter):
    """Each command's help on the line of its name.

    argparse measures command names at the indent of their group but prints them one step deeper,
    so the longest name (``replay-server``) overflowed and its help went to the next line.
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if action.nargs == argparse.PARSER and action.choices:
            deepest = self._current_indent + self._indent_increment
            longest = max(len(name) for name in action.choices) + deepest
            self._action_max_length = max(self._action_max_length, longest)


def _cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.storage.ingest import ingest

    lake = None if args.no_lake else (args.lake or settings.lake_dir)
    dsn = None if args.no_clickhouse else (args.clickhouse or settings.clickhouse_dsn)
    fmt = get_format(args.format)
    paths = check_inputs(args.paths)
    check_format(fmt, paths)  # a wrong --format is refused before anything is written
    summary = ingest(fmt, paths, lake=lake, clickhouse=dsn, progress=not args.quiet and sys.stderr.isatty())
    print(summary.render())
    return _rejects_exit(summary.rejected, args.allow_rejects, "stored in the `rejected` table")


def _cmd_book(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.progress import progress_bar
    from tapeflow.venues.base import Decoded

    interval_ns = None if args.interval == "event" else parse_duration_ns(args.interval)
    if args.levels < 1:
        raise TapeflowError(f"--levels must be at least 1, was {args.levels}")
    paths = check_inputs(args.paths)
    check_format(get_format(args.format), paths)
    if args.format == "lobster":  # the vendor's orderbook file seeds the L3 book: never rebuild without it
        from tapeflow.venues.lobster.parse import with_orderbooks

        pairs = with_orderbooks(paths)
        paths = [f for pair in pairs for f in (pair.message, pair.orderbook) if f is not None]
    started = time.perf_counter()
    decoded = 0
    with progress_bar(sum(p.stat().st_size for p in paths), f"book {args.format}",
                      enabled=not args.quiet and sys.stderr.isatty()) as bar:

        def advance(chunk: Decoded) -> None:
            nonlocal decoded
            decoded += sum(chunk.counts().values())
            bar.update(max(0, min(chunk.bytes_read, bar.total - bar.n)))
            bar.set_postfix(events=f"{decoded:,}", refresh=False)

        table, events = snapshots_for_format(args.format, paths, levels=args.levels, interval_ns=interval_ns,
                                             on_chunk=advance)
        bar.update(bar.total - bar.n)
    from tapeflow.storage.lake import write_parquet_atomic

    nbytes = write_parquet_atomic(table, args.out)
    elapsed = time.perf_counter() - started
    symbols = sorted(set(table.column("symbol").to_pylist())) if table.num_rows else []
    plural = "s" if len(symbols) != 1 else ""
    print(f"book: {events:,} events -> {table.num_rows:,} snapshots of {args.levels} levels "
          f"({len(symbols)} instrument{plural}) in {elapsed:.1f} s")
    print(f"wrote {args.out} ({nbytes:,} bytes)")
    return 0


def _cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    fmt = get_format(args.format)
    if not fmt.has_verify:
        raise TapeflowError(f"format {args.format!r} has no oracle to verify against")
    paths = check_inputs(args.paths)
    check_format(fmt, paths)
    with tally() as rejected:
        reports = fmt.verify(paths)  # type: ignore[misc]
    if not reports:
        also = f" ({sum(rejected.values()):,} input units rejected: {_reasons(rejected)})" if rejected else ""
        raise TapeflowError(f"no checkable content found in {', '.join(map(str, args.paths))}{also}")
    passed = True
    for report in reports:
        for failure in report.failures[:10]:
            print(f"  FAIL {failure}")
        if len(report.failures) > 10:
            print(f"  ... and {len(report.failures) - 10} more failures")
        passed &= report.passed
    for report in reports:
        print(report.line())
    if not passed:
        if rejected:
            print(f"  and {sum(rejected.values()):,} input units rejected ({_reasons(rejected)})")
        return EXIT_VERIFY_FAILED
    return _rejects_exit(rejected, args.allow_rejects, "ingest stores them in the `rejected` table")


def _reasons(rejected: dict[str, int]) -> str:
    ordered = sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{reason} {n:,}" for reason, n in ordered)


def _rejects_exit(rejected: dict[str, int], allowed: bool, where: str) -> int:
    """``EXIT_REJECTED`` (saying so on stderr) when units were dead-lettered and that was not allowed;
    units ignored by rule (:data:`~tapeflow.wire.rejects.IGNORED_BY_RULE`) are counted, never fail."""
    ignored = {r: n for r, n in rejected.items() if r in IGNORED_BY_RULE}
    if ignored:
        print(f"ignored by rule: {sum(ignored.values()):,} input units ({_reasons(ignored)})")
    rejected = {r: n for r, n in rejected.items() if r not in IGNORED_BY_RULE}
    if not rejected or allowed:
        return EXIT_OK
    total = sum(rejected.values())
    plural = "s" if total != 1 else ""
    print(f"tapeflow: {total:,} input unit{plural} rejected ({_reasons(rejected)}); {where}. "
          "Exit code 3; pass --allow-rejects to accept them", file=sys.stderr)
    return EXIT_REJECTED


def _cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.simulator import simulate

    if args.instruments < 1:
        raise TapeflowError(f"--instruments must be at least 1, was {args.instruments}")
    if args.options:
        from tapeflow.simulator.options_demo import run_cli

        return run_cli(args.seed, parse_duration_ns(args.duration), args.out, overlap=args.overlap)
    started = time.perf_counter()
    summary = simulate(args.seed, args.instruments, parse_duration_ns(args.duration), args.out,
                       preset=args.preset, overlap=args.overlap)
    plural = "s" if args.instruments != 1 else ""
    print(f"simulate: {args.instruments} instrument{plural}, {args.duration} each ({summary.preset} preset, "
          f"seed {summary.seed}) in {time.perf_counter() - started:.1f} s")
    for path in summary.files:
        print(f"  {path}  ({summary.events.get(path.parent.name, 0):,} messages for {path.parent.name})")
    layout = "overlapping" if summary.overlap else "disjoint"
    print(f"  {summary.episodes_path}  ({summary.episodes} planted episodes, {layout})")
    return 0


def _cmd_query(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.storage.warehouse import Warehouse

    with Warehouse(args.clickhouse or settings.clickhouse_dsn) as wh:
        table = wh.query(args.sql)
    print(table.to_pandas().to_string(index=False, max_rows=50))
    return 0


def _cmd_formats(args: argparse.Namespace, settings: Settings) -> int:
    for name, fmt in sorted(formats().items()):
        oracle = "verify" if fmt.has_verify else "      "
        print(f"{name:10s} {oracle}  {fmt.description}")
    return 0




if __name__ == "__main__":
    raise SystemExit(main())
