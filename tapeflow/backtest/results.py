"""A backtest's outcome: fills, equity curve, counts, and the risk report computed from them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.backtest import risk

YEAR_NS = 365 * 24 * 3600 * 10**9


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
        annualized over a 365-day year (venues that trade around the clock).
        """
        eq = self.column("equity", "equity")
        ts = self.column("equity", "ts_ns")
        pnl = np.diff(eq) if eq.size > 1 else np.zeros(0)
        period_ns = float(np.median(np.diff(ts))) if ts.size > 1 else float("nan")
        per_year = YEAR_NS / period_ns if period_ns and np.isfinite(period_ns) else 1.0
        mids = self.column("equity", "mid")
        mark = float(mids[np.isfinite(mids)][-1]) if np.isfinite(mids).any() else float("nan")
        side, price, qty = (self.column("fills", c) for c in ("side", "price", "qty"))
        br = risk.pnl_breakdown(side, price, qty, mark)
        filled_orders = len(np.unique(self.column("fills", "order_id")))
        out: dict[str, Any] = {
            "final_equity": float(eq[-1]) if eq.size else 0.0,
            "realized_pnl": br.realized, "unrealized_pnl": br.unrealized,
            "fees": float(np.sum(self.column("fills", "fee"))), "final_position": br.position,
            "fills": int(side.size), "maker_fills": int(np.sum(self.column("fills", "maker"))),
            "orders": self.counts.get("orders", 0),
            "fill_ratio": filled_orders / max(self.counts.get("orders", 0), 1),
            "hit_rate": br.hit_rate, "turnover": float(np.sum(price * qty)), "volume": float(np.sum(qty)),
            "sharpe": risk.sharpe(pnl, per_year), "sortino": risk.sortino(pnl, per_year),
            "max_drawdown": risk.max_drawdown(eq), "period_s": period_ns / 1e9,
        }
        for level in (0.95, 0.99):
            tag = int(round(level * 100))
            out[f"var{tag}_hist"] = risk.var_historical(pnl, level) if pnl.size else float("nan")
            out[f"cvar{tag}_hist"] = risk.cvar_historical(pnl, level) if pnl.size else float("nan")
            out[f"var{tag}_param"] = risk.var_parametric(pnl, level)
            out[f"cvar{tag}_param"] = risk.cvar_parametric(pnl, level)
        out.update({k: v for k, v in self.counts.items() if k != "orders"})
        return out

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
