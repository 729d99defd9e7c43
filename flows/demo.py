"""``python -m flows.demo``: the simulated market of ``python -m tapeflow.demo`` through the real live path.

The first minutes of ``.demo/sim/`` are served by a replay server (``sim`` protocol, in a thread of
this process, at a speed that plays them in about 15 s of wall time); ``tapeflow live --venue sim``
connects to it with :class:`tapeflow.venues.sim.client.SimClient`, journals every frame under
``.demo/live/journal`` and runs the market flow into the lake ``.demo/live/lake``. Then it prints
what the flow produced: rows per output, a few 1 m bars, the last metrics of each instrument, the
STATUS counts and the journal files. ``$TAPEFLOW_DEMO_DIR`` moves ``.demo``. ``--defer-hints``
keeps its "Next, try" hints for the end of ``make demo`` (see :mod:`tapeflow.demo`).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.demo import act_arguments, finish
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.records import BAR, METRIC, STATUS, UNDEF_PRICE
from tapeflow.storage import lake

SCALE = 1e9
FEED_MINUTES = 2  # simulated minutes served: enough for 1 m bars, small enough for ~15 s of wall time
WALL_S = 15.0


def feed_files(files: list[Path], out: Path, minutes: float) -> list[Path]:
    """The first ``minutes`` of each simulator file (by capture time), as files under ``out/<symbol>/``."""
    written = []
    for path in files:
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "rb") as src, gzip.open(target, "wb", compresslevel=1) as dst:
            dst.write(src.readline())  # header
            end = None
            for line in src:
                recv = int(line.split(b",", 2)[1])
                end = end or recv + int(minutes * 60e9)
                if recv >= end:
                    break
                dst.write(line)
        written.append(target)
    return written


def run(root: Path, minutes: float = FEED_MINUTES, wall_s: float = WALL_S) -> int:
    """Serve ``root/sim`` live, run the flow into ``root/live`` and print its outputs (exit code)."""
    from tapeflow.replay import ReplayServer

    files = sorted((root / "sim" / "sim").glob("*/*.events.csv.gz"))
    if not files:
        print(f"demo: no simulated market under {root / 'sim'}; run `python -m tapeflow.demo` first",
              file=sys.stderr)
        return 2
    out = root / "live"
    if out.exists():
        shutil.rmtree(out)
    feed = feed_files(files, out / "feed", minutes)
    symbols = sorted(p.parent.name for p in feed)
    speed = minutes * 60 / wall_s
    print(f"\n== live flow: replay server (sim, first {minutes:g} min at {speed:g}x) -> SimClient -> journal "
          f"-> book, bars, metrics -> {out / 'lake'}", flush=True)
    started = time.perf_counter()
    with ReplayServer("sim", feed, speed=speed).run_in_thread() as srv:
        # the feed keeps the simulator's 2024 capture times: judge latency against the feed's own level
        args = ["--venue", "sim", "--symbols", ",".join(symbols), "--endpoint", srv.ws_url,
                "--journal", str(out / "journal"), "--idle-exit", "3s", "--clock", "relative",
                "--lake", str(out / "lake"), "--no-clickhouse", "--no-raw"]
        print(f"   $ tapeflow live {' '.join(args)}", flush=True)
        code = subprocess.call([sys.executable, "-m", "tapeflow.cli", "live", *args])
        served = srv.frames_served
    if code:
        return code
    print(f"   ({served:,} frames served; the flow ran {time.perf_counter() - started:.1f} s)")
    show(out / "lake")
    print("\n== journal (every frame as received, before decoding; batch decode: "
          "tapeflow.venues.sim.sync.decode_journal)")
    for path in sorted((out / "journal").rglob("*.jsonl")):
        lines = sum(1 for _ in path.open("rb"))
        print(f"   {path} ({lines:,} lines)")
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


def hints(root: Path) -> list[str]:
    """What to try after this act: the replay server and the flow by hand, and a capture replay."""
    symbols = ",".join(sorted(p.name for p in (root / "live" / "feed").iterdir() if p.is_dir()))
    return [
        f".venv/bin/tapeflow replay-server --format sim {root / 'live' / 'feed'} --speed 8 --port 8765",
        "    # and in another shell, the flow on that feed until it has been quiet for 3 s:",
        f".venv/bin/tapeflow live --venue sim --symbols {symbols} --endpoint ws://127.0.0.1:8765 \\",
        f"    --idle-exit 3s --clock relative --lake {root / 'live2' / 'lake'} --no-clickhouse",
        "    # the whole simulated day through the same flow, as fast as it goes:",
        f".venv/bin/tapeflow live --capture {root}/sim/sim/*/*.events.csv.gz --format sim \\",
        f"    --lake {root / 'capture' / 'lake'} --no-clickhouse",
        "make dashboard   # this flow's lake in the browser at http://127.0.0.1:8050/ (docs/dashboard.md):",
        "    # candles + volume + CVD, the price ladder, time and sales, feed status; add --publish",
        "    # 127.0.0.1:8765 to a tapeflow live command above and the page turns LIVE",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m flows.demo [--defer-hints]``."""
    args = act_arguments("python -m flows.demo", __doc__, argv)
    root = Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo"))
    code = run(root)
    if code == 0:
        finish(root, "2-live", "python -m flows.demo: the live flow, the replay server", hints(root),
               defer=args.defer_hints)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
