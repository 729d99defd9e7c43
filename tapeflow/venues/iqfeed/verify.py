"""IQFeed's oracles: its own bars rebuilt from its ticks (data README, ``iqfeed/``).

* Interval bars: the ticks of the same symbol, basis ``O`` left out (:mod:`~.bars`), bucketed by
  the start of their interval through tapeflow's bar code (:func:`tapeflow.derived.bars.bars_for`),
  equal IQFeed's interval bars: open, high, low, close and period volume, bar for bar (each vendor
  bar counted, and any rebuilt bar IQFeed does not have is a failure).
* Daily bars, on every day the ticks cover: high, low and open are those of the regular session's
  (09:30-16:00 Eastern) ``C`` trades, the volume is the day's last tick's total volume.
* Weekly and monthly bars, on every week or month the daily bars cover from its first day: open of
  the first day, high and low over the days, close of the last day, volume summed (IQFeed's bars
  agree with each other).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.derived.bars import bars_for
from tapeflow.errors import BadInput
from tapeflow.venues.base import VerifyReport, merge
from tapeflow.venues.iqfeed import history, values
from tapeflow.venues.iqfeed.bars import bar_trades
from tapeflow.venues.iqfeed.parse import IQFeedDecoder, read_lines

_MAX_FAILURES = 20
_NS = 1_000_000_000
SESSION_OPEN_NS = (9 * 3600 + 30 * 60) * _NS
SESSION_CLOSE_NS = 16 * 3600 * _NS
_COMPARED = ("open_price_nanos", "high_price_nanos", "low_price_nanos", "close_price_nanos", "volume_nanos")


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """One report per vendor bar interval that ticks of the same symbol can rebuild.

    Returns nothing when the files hold no ticks and bars of one symbol together.
    """
    tables = merge(list(IQFeedDecoder().run([Path(p) for p in paths])))
    trades, bars = tables.get("trade"), tables.get("bar")
    reports = _periods(bars) if bars is not None else []
    if trades is None or bars is None or not trades.num_rows or not bars.num_rows:
        return reports
    for interval in sorted(set(bars.column("interval").to_pylist())):
        vendor = bars.filter(pc.equal(bars.column("interval"), interval))
        if interval == "1d":
            reports.append(_daily(vendor, trades, paths))
        elif interval[:-1].isdigit() and interval[-1] in "smh":
            reports.append(_intervals(vendor, trades, interval))
    return reports


def _periods(bars: pa.Table) -> list[VerifyReport]:
    """Weekly (``1w``) and monthly (``1mo``) bars against the daily bars of the same symbol."""
    rows = bars.sort_by([("symbol", "ascending"), ("ts_event_ns", "ascending")]).to_pylist()
    daily = [r for r in rows if r["interval"] == "1d"]
    reports = []
    for interval, period in (("1w", lambda d: d.isocalendar()[:2]), ("1mo", lambda d: (d.year, d.month))):
        vendor = [r for r in rows if r["interval"] == interval]
        if not daily or not vendor:
            continue
        ok = total = 0
        failures: list[str] = []
        for bar in vendor:
            label = _day(bar["ts_event_ns"])
            mine = [d for d in daily if d["symbol"] == bar["symbol"]]
            days = [d for d in mine if period(_day(d["ts_event_ns"])) == period(label)
                    and _day(d["ts_event_ns"]) <= label]
            first_day = min((_day(d["ts_event_ns"]) for d in mine), default=label)
            start = label - dt.timedelta(days=label.weekday()) if interval == "1w" else label.replace(day=1)
            if not days or first_day > start:
                continue  # the dailies do not reach back to the period's first day
            total += 1
            got = (days[0]["open_price_nanos"], max(d["high_price_nanos"] for d in days),
                   min(d["low_price_nanos"] for d in days), days[-1]["close_price_nanos"],
                   sum(d["volume_nanos"] for d in days))
            want = tuple(bar[k] for k in _COMPARED)
            if got == want:
                ok += 1
            elif len(failures) < _MAX_FAILURES:
                failures.append(f"{bar['symbol']} {interval} {label}: IQFeed {want}, from its dailies {got}")
        reports.append(VerifyReport(ok, total, f"iqfeed {interval} bars from its daily bars", failures))
    return reports


def _day(ts_ns: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=ts_ns // (86_400 * _NS))


def _key(table: pa.Table) -> list[tuple]:
    return list(zip(table.column("symbol").to_pylist(), table.column("ts_event_ns").to_pylist(), strict=True))


def _intervals(vendor: pa.Table, trades: pa.Table, interval: str) -> VerifyReport:
    rebuilt = bars_for(bar_trades(trades), interval)
    ours = dict(zip(_key(rebuilt), rebuilt.select(list(_COMPARED)).to_pylist(), strict=True))
    failures: list[str] = []
    ok = 0
    for key, theirs in zip(_key(vendor), vendor.select(list(_COMPARED)).to_pylist(), strict=True):
        got = ours.pop(key, None)
        if got == theirs:
            ok += 1
        elif len(failures) < _MAX_FAILURES:
            failures.append(f"{key[0]} bar at {_et(key[1])}: IQFeed {theirs}, rebuilt {got}")
    for key in list(ours)[:_MAX_FAILURES - len(failures)]:
        failures.append(f"{key[0]} rebuilt bar at {_et(key[1])} that IQFeed does not have")
    extra = len(ours)
    return VerifyReport(ok, vendor.num_rows, f"iqfeed {interval} bars rebuilt from ticks (basis O left out)",
                        failures if ok == vendor.num_rows and not extra else failures or ["mismatch"],
                        details={"vendor_bars": vendor.num_rows, "rebuilt_bars_not_in_vendor": extra,
                                 "trades": trades.num_rows})


def _et(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns / _NS, values.ZONE).strftime("%Y-%m-%d %H:%M:%S.%f ET")


def _daily(vendor: pa.Table, trades: pa.Table, paths: Sequence[Path]) -> VerifyReport:
    ts = trades.column("ts_event_ns").to_numpy()
    days = np.array([values.eastern_date(int(t)) for t in ts])
    since_midnight = np.array([int(t) - values.eastern_ns(d, 0) for t, d in zip(ts, days, strict=True)])
    basis_c = pc.starts_with(trades.column("trade_id"), "C").to_numpy(zero_copy_only=False)
    regular = basis_c & (since_midnight >= SESSION_OPEN_NS) & (since_midnight < SESSION_CLOSE_NS)
    price = trades.column("price_nanos").to_numpy()
    symbols = np.array(trades.column("symbol").to_pylist(), dtype=object)
    last_volume = _last_total_volume(paths)
    failures: list[str] = []
    ok = total = 0
    for row in vendor.to_pylist():
        day = _day(row["ts_event_ns"])
        mask = regular & (days == day) & (symbols == row["symbol"])
        if (row["symbol"], day) not in last_volume or not mask.any():
            continue  # a day the ticks do not cover
        total += 1
        px = price[mask]
        first = px[np.argmin(np.where(mask, ts, np.iinfo(np.int64).max)[mask])]
        want = (row["open_price_nanos"], row["high_price_nanos"], row["low_price_nanos"], row["volume_nanos"])
        got = (int(first), int(px.max()), int(px.min()), last_volume[(row["symbol"], day)] * _NS)
        if want == got:
            ok += 1
        elif len(failures) < _MAX_FAILURES:
            failures.append(f"{row['symbol']} {day}: IQFeed open/high/low/volume {want}, from ticks {got}")
    what = "iqfeed daily bars from regular-session C trades and the last total volume"
    return VerifyReport(ok, total, what, failures, details={"vendor_days": vendor.num_rows})


def _last_total_volume(paths: Sequence[Path]) -> dict[tuple[str, dt.date], int]:
    """Per symbol and Eastern day, the TotalVolume of the day's last tick (latest time, then TickID)."""
    last: dict[tuple[str, dt.date], tuple[int, int, int]] = {}
    for path in paths:
        for member, line in read_lines(Path(path)):
            fields = line.payload.decode("ascii", "replace").split(",")
            if fields and fields[-1] == "":
                fields.pop()
            if history.row_kind(fields) != history.TICKS:
                continue
            try:
                ts = values.timestamp_ns(fields[0])
                key = (history.file_symbol(member, str(path)), values.eastern_date(ts))
                mark = (ts, int(fields[6]), int(fields[3]))
            except (ValueError, BadInput):
                continue  # the decode dead-letters it
            if key not in last or mark > last[key]:
                last[key] = mark
    return {key: mark[2] for key, mark in last.items()}
