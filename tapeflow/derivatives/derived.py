"""Metrics derived from the derivatives records (docs/derivatives.md, "Derived metrics"): basis
(mark vs index), open-interest change, liquidation clusters and insurance-fund stress.

Pure batch functions over the record tables (``pyarrow.Table`` in, ``pyarrow.Table`` out), keyed
per instrument by ``(venue, symbol)`` (insurance funds by ``(venue, symbol, asset)``). A value at a
grid time is the last row at or before it (rows of equal time: the last in input order) and only
while it is at most ``max_staleness_ns`` old; an absent value (``UNDEF_PRICE``) is never a value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.schemas.records import UNDEF_PRICE

_NANOS = 1e9


class DerivedInputError(TapeflowError):
    """A record a derived metric cannot be computed from (an index at or below zero, a
    liquidation without a price); the message names the instrument, time and value."""


BASIS_SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("mark_price_nanos", pa.int64()),
        ("index_price_nanos", pa.int64()),
        ("basis_bps", pa.float64()),
    ]
)
OI_CHANGE_SCHEMA = pa.schema(
    [
        ("ts_ns", pa.int64()),
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("open_interest_nanos", pa.int64()),
        ("change_nanos", pa.int64()),
        ("change_pct", pa.float64()),
    ]
)
CLUSTER_SCHEMA = pa.schema(
    [
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("side", pa.uint8()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("count", pa.int64()),
        ("notional", pa.float64()),
    ]
)
STRESS_SCHEMA = pa.schema(
    [
        ("ts_event_ns", pa.int64()),
        ("venue", pa.string()),
        ("symbol", pa.string()),
        ("asset", pa.string()),
        ("balance_nanos", pa.decimal128(38, 0)),  # the insurance_fund column's type: pools pass int64
        ("peak_nanos", pa.decimal128(38, 0)),
        ("drawdown", pa.float64()),
        ("level", pa.uint8()),
    ]
)


@dataclass(frozen=True)
class InsuranceStressConfig:
    """Drawdown thresholds (fractions of the running maximum) of the insurance-fund stress levels.

    Level 0 is calm; a drawdown at or above ``watch`` is level 1, ``alert`` 2, ``critical`` 3.

    Raises:
        ConfigError: a threshold not finite, outside (0, 1), or not strictly increasing.
    """

    watch: float = 0.05
    alert: float = 0.10
    critical: float = 0.25

    def __post_init__(self) -> None:
        levels = (self.watch, self.alert, self.critical)
        for name, value in zip(("watch", "alert", "critical"), levels, strict=True):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0.0 < value < 1.0:
                raise ConfigError(f"insurance stress {name} must be a fraction in (0, 1), got {value!r}")
        if not self.watch < self.alert < self.critical:
            raise ConfigError(
                f"insurance stress thresholds must increase: watch < alert < critical, got {levels}"
            )


def time_grid(start_ns: int, end_ns: int, step_ns: int) -> np.ndarray:
    """The grid ``start_ns, start_ns + step_ns, ...`` up to and including ``end_ns``.

    Raises:
        ConfigError: ``step_ns`` not positive or ``end_ns`` before ``start_ns``.
    """
    if step_ns <= 0 or end_ns < start_ns:
        raise ConfigError(
            f"time grid needs step_ns > 0 and end_ns >= start_ns, got {start_ns}, {end_ns}, {step_ns}"
        )
    return np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def _grid(grid_ns: np.ndarray) -> np.ndarray:
    grid = np.asarray(grid_ns, dtype=np.int64)
    if grid.ndim != 1 or (grid.size > 1 and bool(np.any(np.diff(grid) <= 0))):
        raise ConfigError("grid_ns must be a strictly increasing 1-d array of times")
    return grid


def _groups(
    table: pa.Table, keys: tuple[str, ...], value: str, *, drop_undef: bool = True
) -> Iterator[tuple[tuple[object, ...], np.ndarray, np.ndarray]]:
    """Per key, the rows with a value, sorted by time (stable: equal times keep input order)."""
    if table.num_rows == 0:
        return
    ts = table.column("ts_event_ns").to_numpy()
    values = table.column(value).to_numpy()
    key_cols = [table.column(k).to_pylist() for k in keys]
    by_key: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(zip(*key_cols, strict=True)):
        by_key.setdefault(key, []).append(i)
    for key in sorted(by_key):
        rows = np.asarray(by_key[key], dtype=np.int64)
        if drop_undef:
            rows = rows[values[rows] != UNDEF_PRICE]
        order = np.argsort(ts[rows], kind="stable")
        yield key, ts[rows][order], values[rows][order]


def _asof(
    ts: np.ndarray, values: np.ndarray, at: np.ndarray, max_staleness_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """The last value at or before each ``at`` and whether it is fresh (at most the staleness old)."""
    pos = np.searchsorted(ts, at, side="right") - 1
    have = pos >= 0
    safe = np.where(have, pos, 0)
    if ts.size == 0:
        return np.zeros(at.size, dtype=np.int64), np.zeros(at.size, dtype=bool)
    fresh = have & (at - ts[safe] <= max_staleness_ns)
    return values[safe], fresh


def index_symbol(venue: str, symbol: str) -> str | None:
    """The name a venue publishes an instrument's index under, where it is not the instrument's own
    (None: the venue publishes it with the instrument, or no mapping is known).

    OKX: the instrument's underlying / instrument family, its first two ``-`` parts
    (``BTC-USDT-SWAP``, ``BTC-USDT-240927`` -> ``BTC-USDT``; ``BTC-USD-240927-60000-C`` -> ``BTC-USD``),
    which is the ``instId`` of its ``index-tickers`` rows. Binance COIN-M: the pair before the ``_``
    (``BTCUSD_PERP``, ``BTCUSD_240927`` -> ``BTCUSD``), the name of its ``indexPriceUpdate`` rows.
    Deribit: the ``index_name`` of its ``deribit_price_index`` rows, "(base) cryptocurrency with quote
    currency" in Deribit's words: an inverse contract's currency against USD (``BTC-PERPETUAL``,
    ``ETH-27DEC24``, ``BTC-27DEC24-60000-C``, ``BTC-FS-27DEC24_PERP`` -> ``btc_usd`` / ``eth_usd``), a
    linear one's ``BASE_QUOTE`` prefix (``BTC_USDC-PERPETUAL`` -> ``btc_usdc``, ``SOL_USDT-PERPETUAL``
    -> ``sol_usdt``, ``MATIC_USDC-9MAR24-1d02-C`` -> ``matic_usdc``); a spot pair (``BTC_USDC``, no
    ``-``) or an index name has none.
    """
    if venue == "okx":
        parts = symbol.split("-")
        return "-".join(parts[:2]) if len(parts) >= 3 else None
    if venue == "binance-coinm" and "_" in symbol:
        return symbol.split("_", 1)[0]
    if venue == "deribit":
        head, dash, _ = symbol.partition("-")
        if not dash or not head:
            return None
        return head.lower() if "_" in head else f"{head.lower()}_usd"
    return None


def is_option(symbol: str) -> bool:
    """Whether ``symbol`` names an option (``...-<strike>-C`` / ``-P``: OKX ``ETH-USD-211231-9600-C``,
    Deribit and Bybit ``BTC-27DEC24-60000-C``, Binance ``BTC-240927-60000-P``). An option's mark is
    its premium, not a price of the underlying: it has no basis against the index."""
    parts = symbol.split("-")
    return len(parts) >= 4 and parts[-1] in ("C", "P")


def instrument_index(index: pa.Table, venue: str, symbol: str) -> pa.Table:
    """The ``index_price`` rows that count for one instrument's basis: those under its own symbol,
    then those under its :func:`index_symbol` renamed to it (an instrument joins the index it is
    priced against; equal times keep this order)."""
    def under(name: str) -> pa.Table:
        same = pc.and_(pc.equal(index.column("venue"), venue), pc.equal(index.column("symbol"), name))
        return index.filter(same)

    own = under(symbol)
    alias = index_symbol(venue, symbol)
    if alias is None or alias == symbol:
        return own
    named = under(alias)
    if not named.num_rows:
        return own
    at = named.schema.get_field_index("symbol")
    named = named.set_column(at, named.schema.field(at), pa.array([symbol] * named.num_rows, pa.string()))
    return pa.concat_tables([own, named.cast(own.schema)])


def basis(mark: pa.Table, index: pa.Table, grid_ns: np.ndarray, *, max_staleness_ns: int) -> pa.Table:
    """Basis of each instrument with a mark, in bps, at each grid time.

    ``basis_bps = (mark - index) / index * 1e4`` from the last mark and the last index of the same
    ``(venue, symbol)`` at or before the grid time, each at most ``max_staleness_ns`` old; NaN (and
    null prices) without a fresh pair. An index published under its own name (OKX ``BTC-USDT``)
    does not join an instrument's mark here: :func:`instrument_index` renames it first (as the live
    and batch derived stages do). An option (:func:`is_option`) has no rows: its mark is a premium
    (the real OKX ``ETH-USD-211231-9600-C`` marks 3.80 against an ``ETH-USD`` index near 3,800,
    docs/derivatives.md), so ``(mark - index) / index`` is no basis (-9,990 bps there).

    Args:
        mark: ``mark_price`` rows.
        index: ``index_price`` rows.
        grid_ns: strictly increasing grid times (``time_grid``).
        max_staleness_ns: the oldest a mark or an index may be at a grid time.

    Returns:
        A table of ``BASIS_SCHEMA``: one row per instrument and grid time, by venue, symbol, time.

    Raises:
        ConfigError: staleness not positive or a grid not strictly increasing.
        DerivedInputError: an index price at or below zero.
    """
    _positive("max_staleness_ns", max_staleness_ns)
    grid = _grid(grid_ns)
    indexes = {key: (ts, px) for key, ts, px in _groups(index, ("venue", "symbol"), "index_price_nanos")}
    for (venue, symbol), (ts, px) in indexes.items():
        bad = np.flatnonzero(px <= 0)
        if bad.size:
            i = bad[0]
            raise DerivedInputError(
                f"index price must be > 0 for a basis: {venue} {symbol} at {ts[i]} has {px[i]} nanos"
            )
    empty = np.zeros(0, dtype=np.int64)
    cols: dict[str, list[pa.Array]] = {name: [] for name in BASIS_SCHEMA.names}
    for (venue, symbol), mts, mpx in _groups(mark, ("venue", "symbol"), "mark_price_nanos"):
        if is_option(symbol):
            continue
        its, ipx = indexes.get((venue, symbol), (empty, empty))
        m, m_fresh = _asof(mts, mpx, grid, max_staleness_ns)
        i, i_fresh = _asof(its, ipx, grid, max_staleness_ns)
        ok = m_fresh & i_fresh
        safe_i = np.where(ok, i, 1)
        bps = np.where(ok, (m - i) / safe_i * 1e4, np.nan)
        cols["ts_ns"].append(pa.array(grid))
        cols["venue"].append(pa.array([venue] * grid.size, pa.string()))
        cols["symbol"].append(pa.array([symbol] * grid.size, pa.string()))
        cols["mark_price_nanos"].append(pa.array(m, mask=~ok))
        cols["index_price_nanos"].append(pa.array(i, mask=~ok))
        cols["basis_bps"].append(pa.array(bps, pa.float64()))
    return _table(cols, BASIS_SCHEMA)


def open_interest_change(
    open_interest: pa.Table, grid_ns: np.ndarray, *, window_ns: int, max_staleness_ns: int
) -> pa.Table:
    """Change of each instrument's open interest over ``window_ns`` ending at each grid time.

    ``change_nanos = OI(t) - OI(t - window_ns)`` and ``change_pct = change / OI(t - window_ns) * 100``,
    each OI the last at or before its time and at most ``max_staleness_ns`` old; null (NaN for the
    percentage) without both, NaN percentage from a zero start.

    Args:
        open_interest: ``open_interest`` rows.
        grid_ns: strictly increasing grid times.
        window_ns: the look-back of the change.
        max_staleness_ns: the oldest either open interest may be at its time.

    Returns:
        A table of ``OI_CHANGE_SCHEMA``, one row per instrument and grid time.

    Raises:
        ConfigError: a window or staleness not positive, or a bad grid.
    """
    _positive("window_ns", window_ns)
    _positive("max_staleness_ns", max_staleness_ns)
    grid = _grid(grid_ns)
    cols: dict[str, list[pa.Array]] = {name: [] for name in OI_CHANGE_SCHEMA.names}
    for (venue, symbol), ts, oi in _groups(open_interest, ("venue", "symbol"), "open_interest_nanos"):
        now, now_fresh = _asof(ts, oi, grid, max_staleness_ns)
        then, then_fresh = _asof(ts, oi, grid - window_ns, max_staleness_ns)
        ok = now_fresh & then_fresh
        change = now - then
        pct_ok = ok & (then != 0)
        pct = np.where(pct_ok, change / np.where(pct_ok, then, 1) * 100.0, np.nan)
        cols["ts_ns"].append(pa.array(grid))
        cols["venue"].append(pa.array([venue] * grid.size, pa.string()))
        cols["symbol"].append(pa.array([symbol] * grid.size, pa.string()))
        cols["open_interest_nanos"].append(pa.array(now, mask=~now_fresh))
        cols["change_nanos"].append(pa.array(change, mask=~ok))
        cols["change_pct"].append(pa.array(pct, pa.float64()))
    return _table(cols, OI_CHANGE_SCHEMA)


def liquidation_clusters(liquidations: pa.Table, *, window_ns: int, min_notional: float) -> pa.Table:
    """Clusters of liquidations of one side of one instrument.

    Liquidations of the same ``(venue, symbol, side)`` chain while each follows the previous by
    less than ``window_ns``; a chain whose summed notional (``price x size``, in the quote unit:
    ``price_nanos * size_nanos / 1e18``, the absolute price for spread instruments) is at least
    ``min_notional`` is a cluster. Two bursts closer than the window are therefore one cluster.

    Args:
        liquidations: ``liquidation`` rows.
        window_ns: the largest gap (exclusive) inside a cluster.
        min_notional: the smallest summed notional of a cluster.

    Returns:
        A table of ``CLUSTER_SCHEMA``, one row per cluster, by venue, symbol, side, start.

    Raises:
        ConfigError: a window not positive or a threshold not finite and positive.
        DerivedInputError: a liquidation without a price or size, or with a negative size.
    """
    _positive("window_ns", window_ns)
    if not math.isfinite(min_notional) or min_notional <= 0:
        raise ConfigError(f"min_notional must be finite and > 0, got {min_notional!r}")
    cols: dict[str, list[object]] = {name: [] for name in CLUSTER_SCHEMA.names}
    if liquidations.num_rows:
        for name in ("price_nanos", "size_nanos"):
            col = liquidations.column(name).to_numpy()
            bad = np.flatnonzero((col == UNDEF_PRICE) | ((col < 0) if name == "size_nanos" else False))
            if bad.size:
                row = liquidations.slice(int(bad[0]), 1).to_pylist()[0]
                raise DerivedInputError(
                    f"liquidation {row['venue']} {row['symbol']} at {row['ts_event_ns']} has no usable "
                    f"{name}: {row[name]}"
                )
        notional_col = pa.array(
            np.abs(liquidations.column("price_nanos").to_numpy() / _NANOS)
            * (liquidations.column("size_nanos").to_numpy() / _NANOS)
        )
        table = liquidations.append_column("notional", notional_col)
        for (venue, symbol, side), ts, notional in _groups(
            table, ("venue", "symbol", "side"), "notional", drop_undef=False
        ):
            starts = np.flatnonzero(np.concatenate(([True], np.diff(ts) >= window_ns)))
            ends = np.concatenate((starts[1:], [ts.size]))
            sums = np.add.reduceat(notional, starts)
            for s, e, total in zip(starts, ends, sums, strict=True):
                if total >= min_notional:
                    for name, v in zip(
                        CLUSTER_SCHEMA.names,
                        (venue, symbol, side, ts[s], ts[e - 1], int(e - s), float(total)),
                        strict=True,
                    ):
                        cols[name].append(v)
    return pa.table(
        {k: pa.array(v, CLUSTER_SCHEMA.field(k).type) for k, v in cols.items()}, schema=CLUSTER_SCHEMA
    )


def insurance_stress(funds: pa.Table,
                     config: InsuranceStressConfig | Callable[[str], InsuranceStressConfig] | None = None
                     ) -> pa.Table:
    """Drawdown of each insurance fund from its running maximum, and its stress level.

    ``drawdown = (peak - balance) / peak`` with ``peak`` the largest balance of the same
    ``(venue, symbol, asset)`` so far (this row included); NaN and level 0 while the peak is not
    above zero. ``level`` is the number of ``config`` thresholds the drawdown reaches (0 to 3).

    Args:
        funds: ``insurance_fund`` rows.
        config: the thresholds (``InsuranceStressConfig()`` if none), or a function of the fund's
            ``symbol`` giving them (per-instrument thresholds, ``derived_config.StageThresholds.stress``).

    Returns:
        A table of ``STRESS_SCHEMA``, one row per balance, by venue, fund, asset, time.
    """
    config_of = config if callable(config) else (lambda _symbol, c=config or InsuranceStressConfig(): c)
    cols: dict[str, list[pa.Array]] = {name: [] for name in STRESS_SCHEMA.names}
    for (venue, symbol, asset), ts, wide in _groups(funds, ("venue", "symbol", "asset"), "balance_nanos"):
        cfg = config_of(symbol)
        thresholds = np.asarray([cfg.watch, cfg.alert, cfg.critical])
        # exact Python ints (a balance may pass int64); int / int is the correctly rounded ratio
        bal = np.array([int(b) for b in wide], dtype=object)
        peak = np.maximum.accumulate(bal) if bal.size else bal
        up = (peak > 0).astype(bool)
        drawdown = np.array([(p - b) / p if p > 0 else np.nan for p, b in zip(peak, bal, strict=True)],
                            dtype=np.float64)
        level = np.where(up, np.searchsorted(thresholds, drawdown, side="right"), 0).astype(np.uint8)
        n = ts.size
        cols["ts_event_ns"].append(pa.array(ts))
        cols["venue"].append(pa.array([venue] * n, pa.string()))
        cols["symbol"].append(pa.array([symbol] * n, pa.string()))
        cols["asset"].append(pa.array([asset] * n, pa.string()))
        cols["balance_nanos"].append(pa.array(list(bal), pa.decimal128(38, 0)))
        cols["peak_nanos"].append(pa.array(list(peak), pa.decimal128(38, 0)))
        cols["drawdown"].append(pa.array(drawdown, pa.float64()))
        cols["level"].append(pa.array(level))
    return _table(cols, STRESS_SCHEMA)


def _table(cols: dict[str, list[pa.Array]], schema: pa.Schema) -> pa.Table:
    return pa.table(
        {
            name: pa.concat_arrays([a.cast(schema.field(name).type) for a in arrays])
            if arrays
            else pa.array([], schema.field(name).type)
            for name, arrays in cols.items()
        },
        schema=schema,
    )
