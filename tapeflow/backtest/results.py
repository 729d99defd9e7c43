"""A backtest's outcome: fills, equity curve, counts, and the risk report computed from them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.backtest.report_stream import risk_report


@dataclass
class BacktestResult:
    """Fills (as received by the strategy) and the equity curve sampled on the engine's grid.

    ``fills`` columns: ts_ns, order_id, side, price, qty, maker, fee; ``equity`` columns: ts_ns,
    equity, position, mid. ``counts``: orders, cancels, modifies, rejected_limit.
    """

    fills: pa.Table
    equity: pa.Table
    counts: dict[str, int]

    @classmethod
    def build(cls, fills: list, samples: list, counts: dict[str, int], tick_size: float) -> BacktestResult:
        return cls(fills_table(fills, tick_size), equity_table(samples), dict(counts))

    def column(self, table: str, name: str) -> np.ndarray:
        return getattr(self, table).column(name).to_numpy(zero_copy_only=False)

    def report(self) -> dict[str, Any]:
        """The risk report: PnL split, Sharpe, Sortino, drawdown, turnover, hit and fill ratios, VaR/CVaR.

        Per-period figures use the equity curve's sampling interval; Sharpe and Sortino are
        annualized over a 365-day year (venues that trade around the clock). Computed over record
        batches (:func:`tapeflow.backtest.report_stream.risk_report`, sums exact), so a paper
        session's report streamed from its Parquet parts (:class:`SpooledResult`) is the same.
        """
        return risk_report(lambda: self.fills.to_batches(), lambda: self.equity.to_batches(), self.counts)

    def write_report(self, out_dir: Path) -> Path:
        """Write ``report.json`` alone (a paper session's fills and equity are already there)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "report.json"
        path.write_text(json.dumps(self.report(), indent=2, default=float) + "\n")
        return path

    def write(self, out_dir: Path, *, plots: bool = True) -> list[Path]:
        """Write fills and equity (Parquet), the report (JSON) and, with ``plots``, the PNG plots."""
        out_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.fills, out_dir / "fills.parquet")
        pq.write_table(self.equity, out_dir / "equity.parquet")
        written = [out_dir / "fills.parquet", out_dir / "equity.parquet", out_dir / "report.json"]
        (out_dir / "report.json").write_text(json.dumps(self.report(), indent=2, default=float) + "\n")
        if plots:
            from tapeflow.backtest.plots import write_plots

            written += write_plots(self, out_dir)
        return written


def fills_table(fills: list, tick_size: float) -> pa.Table:
    """:class:`tapeflow.backtest.strategy.Fill` objects as the result's ``fills`` table."""
    return pa.table({
        "ts_ns": pa.array([x.ts_ns for x in fills], pa.int64()),
        "order_id": pa.array([x.order_id for x in fills], pa.int64()),
        "side": pa.array([x.side for x in fills], pa.int8()),
        "price": pa.array([x.price_ticks * tick_size for x in fills], pa.float64()),
        "qty": pa.array([x.qty for x in fills], pa.float64()),
        "maker": pa.array([x.maker for x in fills], pa.bool_()),
        "fee": pa.array([x.fee for x in fills], pa.float64()),
    })


def equity_table(samples: list) -> pa.Table:
    """``(ts_ns, equity, position, mid)`` samples as the result's ``equity`` table."""
    return pa.table({k: pa.array([s[i] for s in samples], t) for i, (k, t) in
                     enumerate((("ts_ns", pa.int64()), ("equity", pa.float64()), ("position", pa.float64()),
                                ("mid", pa.float64())))})


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned ``name  value`` lines."""
    width = max(len(k) for k in report)
    lines = []
    for k, v in report.items():
        text = f"{v:,.6g}" if isinstance(v, float) else str(v)
        lines.append(f"{k:<{width}}  {text}")
    return "\n".join(lines)
