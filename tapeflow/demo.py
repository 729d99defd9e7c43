"""``make demo``: simulate a market, ingest it, rebuild books, load the lake and the warehouse.

Everything lands under ``.demo/`` (or ``$TAPEFLOW_DEMO_DIR``), which is rebuilt on every run.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from tapeflow.errors import TapeflowError

SEED = 7
INSTRUMENTS = 2
DURATION_NS = 10 * 60 * 1_000_000_000


def run(root: Path) -> None:
    """Run the whole demo under ``root`` and print what it built."""
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.simulator import simulate
    from tapeflow.storage.ingest import ingest
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.storage.warehouse import Warehouse

    if root.exists():
        shutil.rmtree(root)
    sim_dir, lake, snaps = root / "sim", root / "lake", root / "book_snapshots_1s.parquet"
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
    for i in range(3):
        bid = f"{last['bid_price_nanos'][i] / 1e9:,.2f} x {last['bid_size_nanos'][i] / 1e9:.3f}"
        ask = f"{last['ask_price_nanos'][i] / 1e9:,.2f} x {last['ask_size_nanos'][i] / 1e9:.3f}"
        print(f"     bid {bid:>22}   ask {ask:>22}")

    _step("4/4 warehouse: what is in ClickHouse")
    sql = ("SELECT symbol, count() AS trades, min(price_nanos) / 1e9 AS low, max(price_nanos) / 1e9 AS high, "
           "sum(size_nanos) / 1e9 AS volume FROM trade GROUP BY symbol ORDER BY symbol")
    with Warehouse(dsn) as wh:
        print(wh.query(sql).to_pandas().to_string(index=False))
    print()
    print("Next, try:")
    print(f"  .venv/bin/tapeflow query --clickhouse {dsn} \\")
    print("      \"SELECT symbol, toString(toStartOfMinute(fromUnixTimestamp64Nano(ts_event_ns))) AS minute, "
          "count() AS trades, sum(size_nanos) / 1e9 AS volume FROM trade "
          "GROUP BY symbol, minute ORDER BY symbol, minute LIMIT 10\"")
    print(f"  .venv/bin/python -c \"import polars as pl; print(pl.read_parquet('{snaps}').head())\"")


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    root = Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo"))
    try:
        run(root)
    except TapeflowError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
