"""A paper session's final risk report over days of spooled equity samples: streamed from the
Parquet parts (:class:`tapeflow.backtest.spool.SpooledResult`) against read whole into memory first
(the report before round s25).

Synthetic spools of 1, 7 and 30 days (``--quick``: 1 and 7) of 1 s equity samples (86,400 a day)
and 2,000 fills a day, written as the session writes them (parts of 4,096 rows). Each report runs in
a child process of its own; the figure is the child's peak RSS (``VmHWM``, reset through
``/proc/self/clear_refs`` after the imports) over its RSS before the report, so neither the imports'
transient peak nor anything of another run counts. CPU seconds are the
child's, per M samples.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import Report

DAY = 86_400
FILLS_A_DAY = 2_000
PART_ROWS = 4_096

_CHILD = """
import json, sys, time
from pathlib import Path
from bench.paper_report import _hwm_kib, _report
import tapeflow.backtest.spool  # the imports before the reset: they are not the report's
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS: the imports' transient peak is gone
before = _hwm_kib()
t0 = time.process_time()
_report(Path(sys.argv[1]), sys.argv[2])
cpu = time.process_time() - t0
print(json.dumps({"mib": (_hwm_kib() - before) / 1024, "cpu": cpu}))
"""


def _hwm_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _spool(root: Path, days: int) -> Path:
    import numpy as np
    import pyarrow as pa

    from tapeflow.backtest.spool import ResultSpool

    rng = np.random.default_rng(days)
    spool = ResultSpool(root / f"days-{days}", rows=PART_ROWS)
    for d in range(days):
        ts = (np.arange(DAY, dtype=np.int64) + d * DAY) * 1_000_000_000
        eq = pa.table({"ts_ns": ts, "equity": np.cumsum(rng.standard_normal(DAY) * 0.01),
                       "position": np.zeros(DAY), "mid": 100 + np.cumsum(rng.standard_normal(DAY) * 1e-3)})
        k = FILLS_A_DAY
        ids = d * 4 * k + np.sort(rng.choice(4 * k, k, replace=False))
        fills = pa.table({"ts_ns": np.sort(rng.choice(ts, k)), "order_id": ids.astype(np.int64),
                          "side": rng.choice(np.array([-1, 1], np.int8), k),
                          "price": 100 + rng.standard_normal(k), "qty": np.full(k, 0.001),
                          "maker": rng.random(k) < 0.7, "fee": np.full(k, 1e-5)})
        for name, table in (("equity", eq), ("fills", fills)):
            for off in range(0, table.num_rows, PART_ROWS):
                spool.write(name, table.slice(off, PART_ROWS))
    (spool.directory / "parts.json").write_text(json.dumps(spool.parts))  # type: ignore[operator]
    return spool.directory  # type: ignore[return-value]


def _report(directory: Path, mode: str) -> None:
    from tapeflow.backtest.results import BacktestResult, equity_table, fills_table
    from tapeflow.backtest.spool import ResultSpool, SpooledResult

    spool = ResultSpool(directory)
    spool.parts = json.loads((directory / "parts.json").read_text())
    tails = fills_table([], 0.1), equity_table([])
    counts = {"orders": 4 * FILLS_A_DAY, "cancels": 0, "modifies": 0, "rejected_limit": 0}
    if mode == "streamed":
        SpooledResult(spool, *tails, counts).report()
    else:
        BacktestResult(spool.read("fills", tails[0]), spool.read("equity", tails[1]), counts).report()


def _child(directory: Path, mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(directory), mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(report: Report) -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        _hwm_kib()
    except OSError:
        report.skip("no /proc/self/clear_refs or VmHWM here: peak RSS cannot be reset per run")
        return
    days_list = (1, 7) if report.quick else (1, 7, 30)
    report.section("paper session final report: streamed from the spool vs read whole (synthetic days)")
    got: dict[tuple[int, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tapeflow-bench-report-") as tmp:
        for days in days_list:
            directory = _spool(Path(tmp), days)
            for mode in ("streamed", "read whole"):
                r = got[(days, mode)] = _child(directory, mode)
                report.add(f"report, {days} day(s), {mode}", days * DAY, r["cpu"], ours=mode == "streamed",
                           note=f"peak RSS growth {r['mib']:.1f} MiB")
    lo, hi = days_list[0], days_list[-1]
    s_lo, s_hi = got[(lo, "streamed")]["mib"], got[(hi, "streamed")]["mib"]
    w_lo, w_hi = got[(lo, "read whole")]["mib"], got[(hi, "read whole")]["mib"]
    per_day = (s_hi - s_lo) / (hi - lo)
    report.figure("paper final report peak RSS growth per day of 1 s samples, streamed", per_day,
                  "MiB per day", goal=0.1, higher_is_better=False,
                  before=f"{(w_hi - w_lo) / (hi - lo):.1f} MiB per day (read whole, same run)",
                  note=f"{lo} vs {hi} days: streamed {s_lo:.1f} -> {s_hi:.1f} MiB, "
                       f"read whole {w_lo:.1f} -> {w_hi:.1f} MiB")
    cpu = got[(hi, "streamed")]["cpu"] / (hi * DAY / 1e6)
    whole = got[(hi, "read whole")]["cpu"] / (hi * DAY / 1e6)
    report.figure("paper final report CPU, streamed", cpu, "s per M samples", goal=None,
                  higher_is_better=False, before=f"{whole:.2f} s per M samples (read whole)",
                  note=f"{hi} days; five passes over the equity parts (exact sums, radix-selected VaR)")
