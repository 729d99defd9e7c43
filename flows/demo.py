"""``python -m flows.demo``: the live market flow on the simulated market of ``python -m tapeflow.demo``.

Runs ``tapeflow live`` (one Bytewax worker) over ``.demo/sim/`` into
the lake ``.demo/live/lake`` and prints what the flow produced: rows per output, a few 1 m bars,
the last metrics of each instrument and the STATUS rows. ``$TAPEFLOW_DEMO_DIR`` moves ``.demo``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.records import BAR, METRIC, STATUS, UNDEF_PRICE
from tapeflow.storage import lake

SCALE = 1e9


def run(root: Path) -> int:
    """Run the flow over ``root/sim`` into ``root/live`` and print its outputs; returns the exit code."""
    files = sorted((root / "sim" / "sim").glob("*/*.events.csv.gz"))
    if not files:
        print(f"demo: no simulated market under {root / 'sim'}; run `python -m tapeflow.demo` first",
              file=sys.stderr)
        return 2
    out = root / "live"
    if out.exists():
        shutil.rmtree(out)
    print(f"\n== live flow: {len(files)} simulated feeds -> book, bars, metrics -> {out / 'lake'}",
          flush=True)
    cmd = [sys.executable, "-m", "tapeflow.cli", "live", "--capture", *map(str, files), "--format", "sim",
           "--lake", str(out / "lake"), "--no-clickhouse", "--no-raw"]
    print("   $ tapeflow live --capture .demo/sim/sim/*/*.gz --format sim "
          f"--lake {out / 'lake'} --no-clickhouse --no-raw", flush=True)
    started = time.perf_counter()
    code = subprocess.call(cmd)
    if code:
        return code
    print(f"   (the flow ran {time.perf_counter() - started:.1f} s)")
    show(out / "lake")
    return 0


def show(root: Path) -> None:
    """Print rows per dataset, a few 1 m bars, the last metrics and the STATUS counts of a live lake."""
    print("\n== rows per output (lake datasets)")
    for name, record in ALL_RECORDS.items():
        n = lake.read(record, root).num_rows if (root / name).exists() else 0
        if n:
            print(f"   {name:<14} {n:>9,}")
    bars = lake.read(BAR, root) if (root / BAR.name).exists() else BAR.empty_table()
    minute = bars.filter(pc.equal(bars["interval"], "1m")).sort_by([("symbol", "ascending"),
                                                                    ("ts_event_ns", "ascending")])
    print("\n== 1 m bars (first 3 per instrument)")
    print(f"   {'symbol':<12} {'open (UTC)':<8} {'open':>10} {'high':>10} {'low':>10} {'close':>10} "
          f"{'volume':>9} {'vwap':>10} {'trades':>6} {'buy%':>5}")
    for symbol in sorted(set(minute["symbol"].to_pylist())):
        rows = minute.filter(pc.equal(minute["symbol"], symbol)).slice(0, 3).to_pylist()
        for r in rows:
            hhmm = time.strftime("%H:%M", time.gmtime(r["ts_event_ns"] // 1_000_000_000))
            buy = 100 * r["buy_volume_nanos"] / max(1, r["volume_nanos"])
            print(f"   {symbol:<12} {hhmm:<8} {r['open_price_nanos'] / SCALE:>10,.2f} "
                  f"{r['high_price_nanos'] / SCALE:>10,.2f} {r['low_price_nanos'] / SCALE:>10,.2f} "
                  f"{r['close_price_nanos'] / SCALE:>10,.2f} {r['volume_nanos'] / SCALE:>9,.3f} "
                  f"{r['vwap_price_nanos'] / SCALE:>10,.2f} {r['trade_count']:>6} {buy:>5.1f}")
    metrics = lake.read(METRIC, root) if (root / METRIC.name).exists() else METRIC.empty_table()
    print("\n== last metrics per instrument")
    for symbol in sorted(set(metrics["symbol"].to_pylist())):
        mine = metrics.filter(pc.equal(metrics["symbol"], symbol))
        last = mine.sort_by([("ts_event_ns", "descending")]).slice(0, 1).to_pylist()[0]
        when = time.strftime("%H:%M:%S", time.gmtime(last["ts_event_ns"] // 1_000_000_000))
        micro = last["microprice_nanos"]
        micro_text = f"{micro / SCALE:,.4f}" if micro != UNDEF_PRICE else "-"
        print(f"   {symbol} at {when}: spread {last['spread_bps']:.2f} bps, microprice {micro_text}, "
              f"imbalance {last['imbalance']:+.3f}, OFI {last['ofi_nanos'] / SCALE:+,.3f}, "
              f"CVD {last['cvd_nanos'] / SCALE:+,.3f}")
    status = lake.read(STATUS, root) if (root / STATUS.name).exists() else STATUS.empty_table()
    print("\n== status")
    if status.num_rows:
        counts = pa.table({"state": status["state"]}).group_by("state").aggregate([("state", "count")])
        for r in counts.to_pylist():
            print(f"   {r['state']:<12} {r['state_count']:>6}")
    else:
        print("   no STATUS rows: a capture replay has no connection to lose (a live feed reports "
              "connected / resyncing / stale here)")


def main() -> int:
    """Entry point of ``python -m flows.demo``."""
    return run(Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo")))


if __name__ == "__main__":
    raise SystemExit(main())
