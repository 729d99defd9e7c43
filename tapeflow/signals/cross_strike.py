"""Cross-strike coordination (``cross_strike/1``): same-direction aggressive option flow in several
strikes or expiries of one underlying within a window, against its baseline, market-maker flow
filtered (docs/options.md "Cross-strike coordination").

Flow is **vega-weighted**: each option trade counts ``aggressor sign x contracts x vega`` (Black-76
vega per 1.0 of vol, in coin, from the option's last ticker at or before the trade: its IV, forward
and time to expiry), so buying puts and buying calls both add vol, and a far-dated contract weighs
what it risks. The baseline is causal and per expiry: the median ``|flow|`` of that expiry's last
``baseline_trades`` trades (the underlying's, all expiries, until the expiry has
``min_baseline_trades``); flows are in those medians. At every trade the kernel
(``kernels.signals_cross_strike``) sums each option's net and gross flow over the trailing window; an
option takes part when its net reaches ``strike_x_median`` and is one-sided (``|net| >= one_sided x
gross``). An alert opens where ``min_strikes`` options take part on one side, that side holds at
least ``min_share`` of the taking-part flow, and its flow reaches ``total_x_median``; then
``refractory_ns`` of quiet per side.

Market makers are filtered by the window's netting and the one-sidedness rule: a position given
back within the window (a short holding) nets to nothing, and an option traded both ways is not
one-sided; a maker's two-sided flow across strikes (buying some, selling others) fails ``min_share``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kernels.codes import BID
from kernels.signals_cross_strike import participation, rolling_median, window_flows
from tapeflow.errors import BadInput, InputError
from tapeflow.options.chain import NS_PER_YEAR, SCALE
from tapeflow.options.instruments import parse_option_name
from tapeflow.schemas.options import OPTION_TICKER
from tapeflow.schemas.records import SIGNAL, TRADE
from tapeflow.signals.rows import Alerts

DETECTOR = "cross_strike/1"
KIND = "cross_strike"


def detect(trades: pa.Table, tickers: pa.Table, params: Mapping[str, Any]) -> pa.Table:
    """``signal`` rows of the cross-strike detector for every underlying in ``trades``.

    Args:
        trades: ``trade`` rows; option symbols (Deribit names) are read, others (futures, the
            perpetual) are left out by rule.
        tickers: ``option_ticker`` rows of those options (IV, forward, expiry per ticker).
        params: the ``cross_strike`` thresholds.

    Returns:
        ``signal`` rows (kind ``cross_strike``, symbol the underlying), sorted by time.
    """
    return _joined([_detect_underlying(f, params) for f in option_flows(trades, tickers).values()])


def _joined(tables: list[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return SIGNAL.empty_table()
    return pa.concat_tables(tables).sort_by([("symbol", "ascending"), ("ts_event_ns", "ascending")])


def option_flows(trades: pa.Table, tickers: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (venue, underlying): the option trades in time order with their vega-weighted flow.

    A trade with no earlier ticker of its option (no IV to weigh it by yet) is left out and counted
    (``unpriced``); so is one whose ticker has no IV.
    """
    t_sym = np.asarray(trades.column("symbol").to_pylist(), object)
    names: dict[str, Any] = {}
    for s in set(t_sym.tolist()):
        try:
            names[s] = parse_option_name(s)
        except BadInput:
            names[s] = None  # a future, the perpetual, a combo or no option name: not option flow
    keep = np.array([names[s] is not None for s in t_sym], bool)
    if not keep.any():
        return {}
    tr = {c: trades.column(c).to_numpy(zero_copy_only=False)[keep] for c in
          ("ts_event_ns", "ts_recv_ns", "venue", "size_nanos", "aggressor_side")}
    sym = t_sym[keep]
    vega = _vega_at(sym, tr["ts_event_ns"], tickers)
    sign = np.where(tr["aggressor_side"] == BID, 1.0, -1.0)
    flow = sign * tr["size_nanos"] / SCALE * vega
    out: dict[tuple[str, str], dict[str, Any]] = {}
    under = np.array([names[s].underlying for s in sym], object)
    for key in sorted(set(zip(tr["venue"].tolist(), under.tolist(), strict=True))):
        m = (tr["venue"] == key[0]) & (under == key[1])
        priced = m & np.isfinite(flow)
        order = np.flatnonzero(priced)[np.argsort(tr["ts_event_ns"][priced], kind="stable")]
        out[key] = {"ts": tr["ts_event_ns"][order], "recv": tr["ts_recv_ns"][order], "symbol": sym[order],
                    "expiry": np.array([names[s].expiry_ns for s in sym[order]], np.int64),
                    "flow": flow[order], "venue": key[0], "underlying": key[1],
                    "unpriced": int(m.sum() - priced.sum())}
    return out


def _vega_at(symbol: np.ndarray, ts_ns: np.ndarray, tickers: pa.Table) -> np.ndarray:
    """Black-76 vega (coin per 1.0 of vol) of each trade's option at its last ticker before it."""
    from kernels.options_pricing import black76_greeks

    k_sym = np.asarray(tickers.column("symbol").to_pylist(), object)
    k_ts = tickers.column("ts_event_ns").to_numpy()
    order = np.lexsort((k_ts, k_sym))
    k_sym, k_ts = k_sym[order], k_ts[order]
    row = np.full(len(symbol), -1, np.int64)
    bounds = {s: (lo, hi) for s, lo, hi in _runs(k_sym)}
    for s in set(symbol.tolist()):
        if s not in bounds:
            continue
        lo, hi = bounds[s]
        m = symbol == s
        at = np.searchsorted(k_ts[lo:hi], ts_ns[m], side="right") - 1
        row[m] = np.where(at >= 0, lo + at, -1)
    ok = row >= 0
    vega = np.full(len(symbol), np.nan)
    if ok.any():
        pick = order[row[ok]]
        col = {c: tickers.column(c).to_numpy(zero_copy_only=False)[pick] for c in
               ("underlying_price_nanos", "strike_price_nanos", "expiry_ns", "iv", "option_type")}
        forward = col["underlying_price_nanos"] / SCALE
        t_years = (col["expiry_ns"] - ts_ns[ok]) / NS_PER_YEAR
        g = black76_greeks(forward, col["strike_price_nanos"] / SCALE, t_years, 0.0, col["iv"],
                           np.asarray(col["option_type"], object) == "C")
        vega[ok] = np.asarray(g.vega) / forward
    return vega


def _runs(sorted_keys: np.ndarray) -> list[tuple[Any, int, int]]:
    if sorted_keys.size == 0:
        return []
    edges = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    return [(sorted_keys[lo], int(lo), int(hi)) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _detect_underlying(f: dict[str, Any], params: Mapping[str, Any]) -> pa.Table:
    alerts = Alerts(f["venue"], f["underlying"], DETECTOR, dict(params))
    ts = f["ts"]
    if ts.size == 0:
        return alerts.table()
    lookback, least = int(params["baseline_trades"]), int(params["min_baseline_trades"])
    base = rolling_median(np.abs(f["flow"]), f["expiry"], lookback, least)
    # a thinly traded expiry borrows the underlying's baseline until it has its own
    pooled = rolling_median(np.abs(f["flow"]), np.zeros(ts.size, np.int64), lookback, least)
    base = np.where(np.isfinite(base), base, pooled)
    units = np.where(base > 0, f["flow"] / base, np.nan)
    usable = np.isfinite(units)
    names, inst = np.unique(f["symbol"], return_inverse=True)
    window_ns = int(params["window_ns"])
    net, gross = window_flows(ts, inst, np.where(usable, units, 0.0), len(names), window_ns)
    net_count, gross_count = window_flows(ts, inst, np.where(usable, np.sign(f["flow"]), 0.0), len(names),
                                          window_ns)
    part = participation(net, gross, net_count, gross_count, float(params["strike_x_median"]),
                         float(params["one_sided"]), int(params["min_trades"]))
    total = part.flow_buy + part.flow_sell
    for side, n, flow in ((1, part.n_buy, part.flow_buy), (-1, part.n_sell, part.flow_sell)):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, flow / total, 0.0)
        ok = usable & (n >= int(params["min_strikes"])) & (share >= float(params["min_share"])) \
            & (flow >= float(params["total_x_median"]))
        for i in _openers(np.flatnonzero(ok), ts, side * net, float(params["strike_x_median"]),
                          int(params["refractory_ns"])):
            _add(alerts, f, int(i), side, net[i], names, flow[i], share[i], params)
    return alerts.table()


def _openers(rows: np.ndarray, ts: np.ndarray, side_net: np.ndarray, threshold: float,
             refractory_ns: int) -> list[int]:
    """Rows that open an alert: the first, then each one ``refractory_ns`` after the last alert or
    whose taking-part options are mostly (over half) new to the episode, the options seen taking
    part since its alert: a flow that moves on to more strikes is the same episode, a second flow in
    other strikes soon after (sharing one by chance) is another."""
    out: list[int] = []
    episode: set[int] = set()
    for i in rows.tolist():
        taking = set(np.flatnonzero(side_net[i] >= threshold).tolist())
        if not out or ts[i] - ts[out[-1]] >= refractory_ns or len(taking & episode) * 2 < len(taking):
            out.append(i)
            episode = set()
        episode |= taking
    return out


def _add(alerts: Alerts, f: dict[str, Any], i: int, side: int, net_row: np.ndarray, names: np.ndarray,
         flow: float, share: float, params: Mapping[str, Any]) -> None:
    taking = np.flatnonzero(side * net_row >= float(params["strike_x_median"]))
    legs = {str(names[j]): round(float(net_row[j]), 2) for j in taking}
    window_ns = int(params["window_ns"])
    in_window = (f["ts"] > f["ts"][i] - window_ns) & (np.arange(f["ts"].size) <= i) \
        & np.isin(f["symbol"], list(legs))
    start = int(f["ts"][in_window].min()) if in_window.any() else int(f["ts"][i])
    expiries = sorted({str(s).split("-")[1] for s in legs})
    alerts.add(ts_event_ns=int(f["ts"][i]), ts_recv_ns=int(f["recv"][i]), kind=KIND, side=side,
               size_nanos=int(round(flow * SCALE)), start_ns=start, end_ns=int(f["ts"][i]),
               score=flow / float(params["total_x_median"]),
               evidence={"strikes": legs, "expiries": expiries, "n_strikes": len(legs),
                         "flow_x_median": round(flow, 2), "same_side_share": round(float(share), 3),
                         "weighting": "vega", "window_s": window_ns / 1e9})


def read_options_input(paths: Sequence[Path]) -> tuple[pa.Table, pa.Table]:
    """``(trades, option tickers)`` from Parquet files or folders of them (what ``tapeflow simulate
    --options`` writes): each file is told by its columns; ``quote`` files and others are left out.

    Raises:
        InputError: a path missing or unreadable, or no trades or no option tickers among them.
    """
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"{p}: no such file or folder")
        files += sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
    trades, tickers = [], []
    for path in files:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: cannot read it as Parquet: {exc}") from exc
        cols = set(table.column_names)
        if set(OPTION_TICKER.column_names) <= cols:
            tickers.append(table.select(OPTION_TICKER.column_names))
        elif set(TRADE.column_names) <= cols:
            trades.append(table.select(TRADE.column_names))
    if not trades or not tickers:
        raise InputError(f"options input needs trade and option_ticker Parquet files; found {len(trades)} "
                         f"trade and {len(tickers)} option_ticker file(s) in {', '.join(map(str, paths))}")
    return pa.concat_tables(trades), pa.concat_tables(tickers)


def detect_paths(paths: Sequence[Path], thresholds: Any, preset: str | None = None) -> pa.Table:
    """Read an options input (:func:`read_options_input`) and run the detector per underlying with
    its thresholds (``thresholds.for_instrument("cross_strike", underlying, preset)``)."""
    trades, tickers = read_options_input(paths)
    return _joined([_detect_underlying(f, thresholds.for_instrument(KIND, under, preset))
                    for (_, under), f in option_flows(trades, tickers).items()])

