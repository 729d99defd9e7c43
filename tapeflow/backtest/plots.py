"""PNG plots of a backtest: equity, drawdown and the per-period PnL distribution (matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tapeflow.backtest.results import BacktestResult


def write_plots(result: BacktestResult, out_dir: Path) -> list[Path]:
    """Write ``equity.png``, ``drawdown.png`` and ``pnl_hist.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers and in tests
    import matplotlib.pyplot as plt

    ts = result.column("equity", "ts_ns")
    eq = result.column("equity", "equity")
    t_s = (ts - ts[0]) / 1e9 if ts.size else ts
    dd = np.maximum.accumulate(eq) - eq if eq.size else eq
    pnl = np.diff(eq) if eq.size > 1 else np.zeros(0)
    paths = []
    for name, draw in (("equity", lambda ax: ax.plot(t_s, eq)),
                       ("drawdown", lambda ax: ax.fill_between(t_s, -dd, 0.0, color="tab:red")),
                       ("pnl_hist", lambda ax: ax.hist(pnl, bins=min(50, max(pnl.size, 1))))):
        fig, ax = plt.subplots(figsize=(8, 3.5))
        draw(ax)
        ax.set_title(name.replace("_", " "))
        ax.set_xlabel("per-period PnL" if name == "pnl_hist" else "seconds from start")
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths.append(path)
    return paths
