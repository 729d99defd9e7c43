"""Implied-volatility surfaces on a time grid from ``option_ticker`` rows (docs/options.md, "Surfaces").

At each grid time (multiples of ``step_ns`` from the first ticker's to the last one's, rounded up)
the snapshot of an underlying holds, per instrument, its last ticker at or before that time and not
older than ``staleness_ns``. Each snapshot goes through :func:`kernels.options_surface.surface`: one
output row per (underlying, grid time, expiry) with the ATM IV, 25-delta risk reversal and
butterfly, the total variance, the number of smile strikes, the reasons for any NaN, and the
no-arbitrage counts (each with the number of points checked; the calendar count compares an expiry
with the next shorter one and sits on the longer one's row).

Inputs per ticker: our ``iv`` of the mark price and ``delta`` at it, ``mark_price_nanos`` (coin) and
``underlying_price_nanos`` (the forward). Time to expiry is taken at the grid time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from kernels.options_surface import (
    BUTTERFLY_TOL,
    CALENDAR_TOL,
    PARITY_TOL,
    reason_label,
    surface,
)
from tapeflow.errors import TapeflowError
from tapeflow.options.chain import NS_PER_YEAR, SCALE
from tapeflow.schemas.options import OPTION_SURFACE

STEP_NS = 60_000_000_000
STALENESS_NS = 60_000_000_000

SURFACE_SCHEMA = pa.schema([
    pa.field("underlying", pa.string()),
    pa.field("ts_ns", pa.int64()),  # the grid time of the snapshot
    pa.field("expiry_ns", pa.int64()),
    pa.field("t_years", pa.float64()),  # at the grid time, years of 365 days
    pa.field("atm_iv", pa.float64()),
    pa.field("atm_total_var", pa.float64()),  # atm_iv^2 t_years
    pa.field("rr25", pa.float64()),
    pa.field("bf25", pa.float64()),
    pa.field("n_strikes", pa.int32()),  # OTM smile strikes with an IV
    pa.field("n_options", pa.int32()),  # tickers of this expiry in the snapshot
    pa.field("reasons", pa.string()),  # "ok" or the SurfaceReason names, comma-separated
    pa.field("calendar_violations", pa.int32()),
    pa.field("calendar_checked", pa.int32()),
    pa.field("butterfly_violations", pa.int32()),
    pa.field("butterfly_checked", pa.int32()),
    pa.field("parity_violations", pa.int32()),
    pa.field("parity_checked", pa.int32()),
])
_NEEDED = ("ts_event_ns", "symbol", "underlying", "expiry_ns", "strike_price_nanos", "option_type",
           "underlying_price_nanos", "mark_price_nanos", "iv", "delta")


class BadSurfaceInput(TapeflowError):
    """The tickers given cannot make surfaces (a column missing, a non-positive step)."""


class Tolerances(NamedTuple):
    """No-arbitrage tolerances: total variance, slope (coin per unit of K/F), coin."""

    calendar: float = CALENDAR_TOL
    butterfly: float = BUTTERFLY_TOL
    parity: float = PARITY_TOL


def grid_times(ts_ns: np.ndarray, step_ns: int = STEP_NS) -> np.ndarray:
    """Multiples of ``step_ns`` from ``min(ts_ns)`` to ``max(ts_ns)``, both rounded up (empty for none)."""
    if step_ns <= 0:
        raise BadSurfaceInput(f"snapshot step must be positive, got {step_ns} ns")
    ts = np.asarray(ts_ns, np.int64)
    if ts.size == 0:
        return np.zeros(0, np.int64)
    first = -(-int(ts.min()) // step_ns) * step_ns
    last = -(-int(ts.max()) // step_ns) * step_ns
    return np.arange(first, last + 1, step_ns, dtype=np.int64)


def snapshot_rows(symbol: np.ndarray, ts_ns: np.ndarray, grid: np.ndarray,
                  staleness_ns: int = STALENESS_NS) -> tuple[np.ndarray, np.ndarray]:
    """``(grid index, row index)`` pairs: per grid time and instrument, its last fresh ticker.

    Args:
        symbol: each ticker's instrument.
        ts_ns: each ticker's time.
        grid: the snapshot times, ascending.
        staleness_ns: a ticker older than this at a grid time is left out of that snapshot.

    Returns:
        Two int64 arrays of equal length, grouped by instrument.
    """
    symbol = np.asarray(symbol, object)
    ts = np.asarray(ts_ns, np.int64)
    order = np.lexsort((np.arange(ts.size), ts, symbol))  # ties: the later row is the last ticker
    g_out, r_out = [], []
    sym_sorted = symbol[order]
    bounds = np.flatnonzero(np.concatenate([[True], sym_sorted[1:] != sym_sorted[:-1], [True]]))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rows = order[lo:hi]
        at = np.searchsorted(ts[rows], grid, side="right") - 1
        ok = at >= 0
        ok[ok] &= grid[ok] - ts[rows[at[ok]]] <= staleness_ns
        g_out.append(np.flatnonzero(ok))
        r_out.append(rows[at[ok]])
    if not g_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(g_out).astype(np.int64), np.concatenate(r_out).astype(np.int64)


def surfaces(tickers: pa.Table, step_ns: int = STEP_NS, staleness_ns: int = STALENESS_NS,
             tolerances: Tolerances = Tolerances(),  # noqa: B008  (immutable NamedTuple)
             *, after_ns: int | None = None, until_ns: int | None = None) -> pa.Table:
    """Surfaces of every underlying at every grid time.

    Args:
        tickers: ``option_ticker`` rows (only the columns in ``_NEEDED`` are read).
        step_ns: the snapshot grid's step (1 minute by default).
        staleness_ns: the oldest ticker a snapshot may use (1 minute by default).
        tolerances: the no-arbitrage tolerances.
        after_ns: only grid times after this (the live stage's already emitted ones are not redone).
        until_ns: only grid times at or before this.

    Returns:
        A :data:`SURFACE_SCHEMA` table, sorted by underlying, grid time and expiry.

    Raises:
        BadSurfaceInput: a needed column is missing, or the step or staleness is not positive.
    """
    missing = [c for c in _NEEDED if c not in tickers.column_names]
    if missing:
        raise BadSurfaceInput(f"option tickers lack the column(s) {', '.join(missing)}")
    if staleness_ns <= 0:
        raise BadSurfaceInput(f"staleness must be positive, got {staleness_ns} ns")
    col = {c: tickers.column(c).to_numpy(zero_copy_only=False) for c in _NEEDED}
    grid = grid_times(col["ts_event_ns"], step_ns)
    if after_ns is not None:
        grid = grid[grid > after_ns]
    if until_ns is not None:
        grid = grid[grid <= until_ns]
    g, r = snapshot_rows(col["symbol"], col["ts_event_ns"], grid, staleness_ns)
    out: dict[str, list] = {f.name: [] for f in SURFACE_SCHEMA}
    underlying = np.asarray(col["underlying"], object)[r]
    forward = col["underlying_price_nanos"][r] / SCALE
    strike = col["strike_price_nanos"][r] / SCALE
    price_coin = col["mark_price_nanos"][r] / SCALE
    expiry = col["expiry_ns"][r]
    iv = np.asarray(col["iv"], np.float64)[r]
    delta = np.asarray(col["delta"], np.float64)[r]
    is_call = np.asarray(col["option_type"], object)[r] == "C"
    t_years = (expiry - grid[g]) / NS_PER_YEAR
    for u in sorted(set(underlying.tolist())):
        for gi in np.unique(g[underlying == u]):
            m = (underlying == u) & (g == gi)
            rows = surface(expiry[m], strike[m], forward[m], t_years[m], iv[m], delta[m], is_call[m],
                           price_coin[m], calendar_tol=tolerances.calendar,
                           butterfly_tol=tolerances.butterfly, parity_tol=tolerances.parity)
            for row in rows:
                _append(out, u, int(grid[gi]), row, int(np.sum(m & (expiry == row.expiry))))
    return pa.table(out, schema=SURFACE_SCHEMA)


def surface_records(table: pa.Table, venue: str) -> pa.Table:
    """A :data:`SURFACE_SCHEMA` table as ``option_surface`` rows, the stored form.

    Args:
        table: surfaces from :func:`surfaces`.
        venue: the venue the tickers came from, e.g. ``deribit``.

    Returns:
        An ``option_surface`` table: ``ts_event_ns`` and ``ts_recv_ns`` the grid time, ``symbol``
        the underlying, every other column as in ``table``.
    """
    grid = table.column("ts_ns")
    columns = {f.name: table.column(f.name) for f in OPTION_SURFACE.fields if f.name in SURFACE_SCHEMA.names}
    columns.update(ts_event_ns=grid, ts_recv_ns=grid, symbol=table.column("underlying"))
    return OPTION_SURFACE.table(columns, constants={"venue": venue})


def _append(out: dict[str, list], underlying: str, ts_ns: int, row, n_options: int) -> None:  # noqa: ANN001
    m = row.metrics
    values = {
        "underlying": underlying, "ts_ns": ts_ns, "expiry_ns": row.expiry, "t_years": row.t_years,
        "atm_iv": m.atm_iv, "atm_total_var": row.atm_total_var, "rr25": m.rr25, "bf25": m.bf25,
        "n_strikes": m.n_strikes, "n_options": n_options, "reasons": reason_label(m.reasons),
        "calendar_violations": row.calendar.violations, "calendar_checked": row.calendar.checked,
        "butterfly_violations": row.butterfly.violations, "butterfly_checked": row.butterfly.checked,
        "parity_violations": row.parity.violations, "parity_checked": row.parity.checked,
    }
    for name, value in values.items():
        out[name].append(value)


def summary(table: pa.Table) -> str:
    """One line: snapshots, expiry rows, how many have an ATM IV / RR / BF, the reasons, the violations."""
    n = table.num_rows
    if n == 0:
        return "surfaces: no snapshot (no ticker fresh at any grid time)"
    keys = zip(table.column("underlying").to_pylist(), table.column("ts_ns").to_pylist(), strict=True)
    snaps = len(set(keys))
    finite = {c: int(np.isfinite(table.column(c).to_numpy()).sum()) for c in ("atm_iv", "rr25", "bf25")}
    reasons: dict[str, int] = {}
    for label in table.column("reasons").to_pylist():
        for r in label.split(","):
            reasons[r] = reasons.get(r, 0) + 1
    checks = ", ".join(
        f"{c} {int(np.sum(table.column(f'{c}_violations').to_numpy()))}/"
        f"{int(np.sum(table.column(f'{c}_checked').to_numpy()))}"
        for c in ("calendar", "butterfly", "parity"))
    listed = ", ".join(f"{r} {c}" for r, c in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"surfaces: {snaps} snapshots, {n} expiry rows; ATM IV {finite['atm_iv']}, "
            f"RR25 {finite['rr25']}, BF25 {finite['bf25']} ({listed}); "
            f"no-arbitrage violations/checked: {checks}")
