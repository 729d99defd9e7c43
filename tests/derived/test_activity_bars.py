"""Tick, volume and dollar bars: kernel vs Python integers, tables vs a plain-Python builder, real trades."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bars_threshold import NOTIONAL, TICK, VOLUME, threshold_bar_ids, threshold_bar_ids_reference
from tapeflow.derived.bars import bars_for, dollar_bars, tick_bars, time_bars, volume_bars
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK, TRADE

B, A, N = ord("B"), ord("A"), ord("N")


def trades(rows: list[tuple]) -> pa.Table:
    """rows: (ts_event_ns, price_nanos, size_nanos, side, symbol[, flags])."""
    n = len(rows)
    return TRADE.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] + 3 for r in rows],
        "venue": ["v"] * n, "symbol": [r[4] for r in rows], "sequence": list(range(n)),
        "trade_id": [str(i) for i in range(n)], "price_nanos": [r[1] for r in rows],
        "size_nanos": [r[2] for r in rows], "aggressor_side": [r[3] for r in rows],
        "flags": [r[5] if len(r) > 5 else 0 for r in rows],
    })


def reference_bars(rows: list[tuple], weight, limit: int) -> list[dict]:
    """Plain Python: accumulate per symbol in input order, close when the total reaches ``limit``."""
    open_bars: dict[str, list[tuple]] = {}
    done: list[tuple[str, list[tuple]]] = []
    for r in rows:
        cur = open_bars.setdefault(r[4], [])
        cur.append(r)
        if sum(weight(x) for x in cur) >= limit:
            done.append((r[4], cur))
            open_bars[r[4]] = []
    done.extend((sym, cur) for sym, cur in open_bars.items() if cur)
    out = []
    for sym, cur in done:
        vol = sum(x[2] for x in cur)
        notional = sum(x[1] * x[2] for x in cur)
        q, rem = divmod(abs(notional), vol) if vol else (cur[0][1], 0)
        vwap = (q + (1 if vol and 2 * rem >= vol else 0)) * (1 if notional >= 0 else -1) if vol else cur[0][1]
        out.append({
            "ts_event_ns": cur[0][0], "symbol": sym, "open_price_nanos": cur[0][1],
            "high_price_nanos": max(x[1] for x in cur), "low_price_nanos": min(x[1] for x in cur),
            "close_price_nanos": cur[-1][1], "volume_nanos": vol, "vwap_price_nanos": vwap,
            "trade_count": len(cur), "buy_volume_nanos": sum(x[2] for x in cur if x[3] == B),
            "sell_volume_nanos": sum(x[2] for x in cur if x[3] == A),
        })
    return sorted(out, key=lambda b: (b["symbol"], b["ts_event_ns"]))


def strip(table: pa.Table) -> list[dict]:
    keep = ("ts_event_ns", "symbol", "open_price_nanos", "high_price_nanos", "low_price_nanos",
            "close_price_nanos", "volume_nanos", "vwap_price_nanos", "trade_count", "buy_volume_nanos",
            "sell_volume_nanos")
    return sorted(({k: r[k] for k in keep} for r in table.to_pylist()),
                  key=lambda b: (b["symbol"], b["ts_event_ns"]))


def test_overshooting_trade_closes_the_bar_whole() -> None:
    rows = [(1, 10, 4, B, "x"), (2, 11, 5, A, "x"), (3, 12, 2, B, "x"), (4, 13, 9, B, "x"),
            (5, 14, 1, A, "x")]
    got = volume_bars(trades(rows), 6).to_pylist()
    # 4 + 5 = 9 >= 6 closes bar 1 with the whole second trade; 2 + 9 closes bar 2; the last is short.
    assert [(b["ts_event_ns"], b["volume_nanos"], b["trade_count"]) for b in got] == [(1, 9, 2), (3, 11, 2),
                                                                                       (5, 1, 1)]
    assert [b["interval"] for b in got] == ["volume:6"] * 3
    assert got[0]["vwap_price_nanos"] == round((10 * 4 + 11 * 5) / 9)
    # Notional 10*4 + 11*5 = 95 (1e-18 units): a 1e-7 dollar bar (100 nanos * 1e9) needs more.
    dollars = dollar_bars(trades([(r[0], r[1] * 10**9, r[2], r[3], r[4]) for r in rows]), 100)
    assert dollars.column("trade_count").to_pylist() == [3, 1, 1]
    assert tick_bars(trades(rows), 2).column("trade_count").to_pylist() == [2, 2, 1]


def test_bad_thresholds_and_intervals() -> None:
    t = trades([(1, 10, 4, B, "x")])
    for bad in (0, -5, 2**63, 1.5, True):
        with pytest.raises(ConfigError):
            volume_bars(t, bad)
    with pytest.raises(ConfigError):
        bars_for(t, "range:5")
    assert bars_for(t, "tick:1").column("interval").to_pylist() == ["tick:1"]
    assert bars_for(t, "1m").equals(time_bars(t, "1m"))


def test_gap_flag_reaches_the_bar() -> None:
    got = tick_bars(trades([(1, 10, 4, B, "x"), (2, 10, 4, B, "x", F_GAP), (3, 10, 4, B, "x")]), 2)
    assert got.column("flags").to_pylist() == [F_MAYBE_BAD_BOOK, 0]


rows_st = st.lists(st.tuples(st.integers(0, 10**12), st.integers(-(10**14), 10**14), st.integers(0, 10**13),
                             st.sampled_from([B, A, N]), st.sampled_from(["x", "y", "z"])), max_size=50)


@settings(max_examples=150, deadline=None)
@given(rows=rows_st, mode=st.sampled_from([TICK, VOLUME, NOTIONAL]), threshold=st.integers(1, 2**63 - 1))
def test_kernel_equals_python_integers(rows: list, mode: int, threshold: int) -> None:
    group = [("x", "y", "z").index(r[4]) for r in rows]
    price, size = [r[1] for r in rows], [r[2] for r in rows]
    got = threshold_bar_ids(np.array(group, np.int64), np.array(price, np.int64), np.array(size, np.int64),
                            mode, threshold)
    assert got.tolist() == threshold_bar_ids_reference(group, price, size, mode, threshold)


@settings(max_examples=80, deadline=None)
@given(rows=rows_st, n=st.integers(1, 7), vol=st.integers(1, 3 * 10**13), notional=st.integers(1, 10**18))
def test_tables_equal_a_plain_python_builder(rows: list, n: int, vol: int, notional: int) -> None:
    t = trades(rows)
    assert strip(tick_bars(t, n)) == reference_bars(rows, lambda _: 1, n)
    assert strip(volume_bars(t, vol)) == reference_bars(rows, lambda r: r[2], vol)
    assert strip(dollar_bars(t, notional)) == reference_bars(rows, lambda r: abs(r[1]) * r[2],
                                                             notional * 10**9)


def _raw_trades(path: Path) -> list[tuple[Decimal, Decimal]]:
    out = []
    with gzip.open(path, "rt") as f:
        for line in f:
            if "@trade" in line:
                d = json.loads(line.split(" ", 1)[1])["data"]
                out.append((Decimal(d["p"]), Decimal(d["q"])))
    return out


def test_binance_trades_every_trade_in_exactly_one_bar(binance_tables: dict, binance_path: Path) -> None:
    raw = _raw_trades(binance_path)
    t = binance_tables["trade"]
    assert t.num_rows == len(raw) == 21313
    ticks = tick_bars(t, 100)
    assert ticks.num_rows == -(-len(raw) // 100)
    assert ticks.column("trade_count").to_pylist() == [100] * (len(raw) // 100) + [len(raw) % 100]
    total_nanos = int(sum(q for _, q in raw) * 10**9)
    vol = volume_bars(t, 10 * 10**9)  # 10 BTC bars
    v = vol.column("volume_nanos").to_numpy()
    assert int(v.sum()) == total_nanos
    assert (v[:-1] >= 10 * 10**9).all() and v[-1] < 10 * 10**9
    dollar = dollar_bars(t, 1_000_000 * 10**9)  # 1M USDT bars
    assert int(dollar.column("trade_count").to_numpy().sum()) == len(raw)
    # Independent: replay the raw decimal trades, closing a bar whenever 1M USDT is reached.
    closes, acc = 0, Decimal(0)
    for p, q in raw:
        acc += p * q
        if acc >= 1_000_000:
            closes, acc = closes + 1, Decimal(0)
    assert dollar.num_rows == closes + (1 if acc else 0)
