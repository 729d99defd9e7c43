"""``make demo``: simulate a market, ingest it, rebuild books, score the signal detectors against
planted episodes, load the lake and the warehouse.

Everything lands under ``.demo/`` (or ``$TAPEFLOW_DEMO_DIR``), which is rebuilt on every run.

``make demo`` runs three acts (this one, ``python -m flows.demo``, ``python -m dagster_project.demo``)
with ``--defer-hints``: each writes its "Next, try" hints under ``.demo/next-steps/`` instead of
printing them, and ``python -m tapeflow.demo --hints`` prints them all at the end, where they do
not scroll away behind the later acts. Run alone, an act prints its own hints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tapeflow.errors import TapeflowError

SEED = 7
INSTRUMENTS = 2
DURATION_NS = 10 * 60 * 1_000_000_000
SNAPSHOTS = "book_snapshots_1s.parquet"
HINTS_DIR = "next-steps"
SIGNALS_MINUTES = 60


def run(root: Path) -> None:
    """Run the whole demo under ``root`` and print what it built."""
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.simulator import simulate
    from tapeflow.storage.ingest import ingest
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.storage.warehouse import Warehouse

    if root.exists():
        shutil.rmtree(root)
    sim_dir, lake, snaps = root / "sim", root / "lake", root / SNAPSHOTS
    dsn = f"chdb://{(root / 'warehouse').resolve()}"

    minutes = DURATION_NS // 60_000_000_000
    _step(f"1/4 simulate: seed {SEED}, {INSTRUMENTS} instruments, {minutes} min each (crypto preset)")
    t0 = time.perf_counter()
    summary = simulate(SEED, INSTRUMENTS, DURATION_NS, sim_dir, preset="crypto", progress=False)
    files = list(summary.files)
    for symbol, n in summary.events.items():
        print(f"   {symbol}: {n:,} venue messages")
    print(f"   {len(files)} feed files + {summary.episodes} planted episodes ({summary.episodes_path}) "
          f"in {time.perf_counter() - t0:.1f} s")

    _step("verify: the simulated feed against its own oracle (known orders, never crossed)")
    from tapeflow.venues import get_format

    for report in get_format("sim").verify(files):
        print(f"   {report.line()}")

    _step("2/4 ingest: sim -> Parquet lake + embedded ClickHouse")
    result = ingest("sim", files, lake=lake, clickhouse=dsn, progress=sys.stderr.isatty())
    print(result.render())

    _step("3/4 book: L3 rebuild, 10 levels every 1 s")
    t0 = time.perf_counter()
    table, events = snapshots_for_format("sim", files, levels=10, interval_ns=1_000_000_000)
    nbytes = write_parquet_atomic(table, snaps)
    print(f"   {events:,} events -> {table.num_rows:,} snapshots in {time.perf_counter() - t0:.1f} s; "
          f"wrote {snaps} ({nbytes:,} bytes)")
    last = table.slice(table.num_rows - 1, 1).to_pylist()[0]
    print(f"   last snapshot of {last['symbol']} (price x size, best first):")
    # lists hold only the levels that exist (BOOK_SNAPSHOT's shape): a thin side shows blanks
    for i in range(3):
        bid = _level(last["bid_price_nanos"], last["bid_size_nanos"], i)
        ask = _level(last["ask_price_nanos"], last["ask_size_nanos"], i)
        print(f"     bid {bid:>22}   ask {ask:>22}")

    signals_step(root)
    from tapeflow.simulator.options_demo import options_step

    options_step(root)
    from tapeflow.ml.demo import models_step

    models_step(root)

    _step("4/4 warehouse: what is in ClickHouse")
    sql = ("SELECT symbol, count() AS trades, min(price_nanos) / 1e9 AS low, max(price_nanos) / 1e9 AS high, "
           "sum(size_nanos) / 1e9 AS volume FROM trade GROUP BY symbol ORDER BY symbol")
    with Warehouse(dsn) as wh:
        print(wh.query(sql).to_pandas().to_string(index=False))


def signals_step(root: Path) -> None:
    """The detectors over a simulated equity market (the preset they are tuned for), beside the
    episodes planted in it, and their scores (docs/signals.md)."""
    import pyarrow.parquet as pq

    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import detect_format
    from tapeflow.signals.score import planted_kinds, read_truth, score
    from tapeflow.simulator import simulate

    _step(f"signals: every detector over {SIGNALS_MINUTES} simulated equity minutes, scored against the "
          "planted episodes")
    t0 = time.perf_counter()
    summary = simulate(SEED, 1, SIGNALS_MINUTES * 60_000_000_000, root / "sim-equity", preset="equity",
                       progress=False)
    alerts = detect_format("sim", list(summary.files), load(DEFAULT_PATH), preset="equity")
    pq.write_table(alerts, root / "signals.parquet")
    print(f"   {alerts.num_rows} signal rows in {time.perf_counter() - t0:.1f} s -> "
          f"{root / 'signals.parquet'}; planted: {summary.episodes_path}")
    truth = read_truth(Path(summary.episodes_path))
    report = score(truth, alerts, kinds=planted_kinds(truth))
    print("\n".join(f"   {line}" for line in report.render().splitlines()))
    kinds = alerts.column("kind").to_pylist()
    unscored = sorted(set(kinds) - set(planted_kinds(truth)))
    if unscored:
        print("   not scored (the simulator plants no truth for them): "
              + ", ".join(f"{k} {kinds.count(k)} alerts" for k in unscored))


def hints(root: Path) -> list[str]:
    """What to try after this act, as shell lines."""
    dsn = f"chdb://{(root / 'warehouse').resolve()}"
    return [
        f".venv/bin/tapeflow query --clickhouse {dsn} \\",
        "    \"SELECT symbol, toString(toStartOfMinute(fromUnixTimestamp64Nano(ts_event_ns))) AS minute, "
        "count() AS trades, sum(size_nanos) / 1e9 AS volume FROM trade "
        "GROUP BY symbol, minute ORDER BY symbol, minute LIMIT 10\"",
        f".venv/bin/python -c \"import polars as pl; print(pl.read_parquet('{root / SNAPSHOTS}').head())\"",
        f".venv/bin/tapeflow book --format sim {root}/sim/sim/*/*.events.csv.gz --levels 5 --interval 100ms "
        f"--out {root / 'book_100ms.parquet'}",
        f".venv/bin/tapeflow ml registry --lake {root / 'lake'}",
    ]


def finish(root: Path, act: str, title: str, lines: Sequence[str], *, defer: bool, out: IO[str] | None = None
           ) -> None:
    """End an act: keep its hints under ``root/next-steps/`` and print them unless ``defer``.

    Args:
        root: the demo folder.
        act: the file name, in act order (``1-batch``, ``2-live``, ``3-dagster``).
        title: the act, as a reader knows it (``python -m flows.demo: the live flow``).
        lines: shell lines to try.
        defer: True under ``make demo``: the last step prints every act's hints.
        out: where to print (default stdout).
    """
    folder = root / HINTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{act}.txt").write_text("\n".join([title, *lines]) + "\n")
    if not defer:
        print_hints(root, acts=[act], out=out)


def act_arguments(prog: str, doc: str | None, argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line of a demo act: ``--defer-hints`` (``make demo`` prints every act's at the end)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--defer-hints", action="store_true", help="keep the hints for the end of make demo")
    return parser.parse_args(argv)


def print_hints(root: Path, *, acts: Sequence[str] | None = None, out: IO[str] | None = None) -> int:
    """Print the hints kept under ``root/next-steps/`` (every act, in order, unless ``acts``); how many."""
    out = out or sys.stdout
    files = sorted((root / HINTS_DIR).glob("*.txt"))
    files = [f for f in files if acts is None or f.stem in acts]
    if files:
        print("\n== Next, try", file=out)
    for path in files:
        title, *lines = path.read_text().splitlines()
        print(f"   {title}", file=out)
        for line in lines:
            print(f"     {line}", file=out)
    return len(files)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tapeflow.demo [--defer-hints | --hints]``."""
    parser = argparse.ArgumentParser(prog="python -m tapeflow.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--defer-hints", action="store_true", help="keep this act's hints for --hints")
    group.add_argument("--hints", action="store_true", help="print the hints every act kept, and exit")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo"))
    if args.hints:
        if not print_hints(root):
            print(f"demo: no hints under {root / HINTS_DIR}: run the demo first", file=sys.stderr)
            return 2
        return 0
    try:
        run(root)
    except TapeflowError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    finish(root, "1-batch", "python -m tapeflow.demo: the lake, the warehouse and the books", hints(root),
           defer=args.defer_hints)
    return 0


def _level(prices: list[int], sizes: list[int], i: int) -> str:
    if i >= len(prices):
        return "-"
    return f"{prices[i] / 1e9:,.2f} x {sizes[i] / 1e9:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
