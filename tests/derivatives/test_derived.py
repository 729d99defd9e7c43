"""Derived derivatives metrics (tapeflow/derivatives/derived.py) on hand-built tables whose answers
are worked out by hand in the comments, their edge cases, and the basis of the real Binance markPrice
and Deribit ticker frames of the Tardis pairs against the frames' own mark and index."""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pytest

from tapeflow.derivatives import decoder
from tapeflow.derivatives.derived import (
    CLUSTER_SCHEMA,
    DerivedInputError,
    InsuranceStressConfig,
    basis,
    insurance_stress,
    is_option,
    liquidation_clusters,
    open_interest_change,
    time_grid,
)
from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.schemas.core import RecordType
from tapeflow.schemas.derivatives import INDEX_PRICE, INSURANCE_FUND, LIQUIDATION, MARK_PRICE, OPEN_INTEREST
from tapeflow.schemas.records import ASK, BID, UNDEF_PRICE
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.tardis_pairs import PAIRS

BN = 1_000_000_000
V = "binance-usdm"


def _prices(record: RecordType, value: str, rows: list[tuple[str, int, int]]) -> pa.Table:
    return record.table(
        {
            "ts_event_ns": [r[1] for r in rows],
            "ts_recv_ns": [r[1] for r in rows],
            "venue": [V] * len(rows),
            "symbol": [r[0] for r in rows],
            value: [r[2] for r in rows],
        }
    )


def _marks(rows: list[tuple[str, int, int]]) -> pa.Table:
    return _prices(MARK_PRICE, "mark_price_nanos", rows)


def _indexes(rows: list[tuple[str, int, int]]) -> pa.Table:
    return _prices(INDEX_PRICE, "index_price_nanos", rows)


# ---- basis


def test_basis_by_hand() -> None:
    marks = _marks(
        [
            # out of time order, and two marks at 3000: the later in input order (99) counts
            ("BTCUSDT", 3_000, 98 * BN),
            ("BTCUSDT", 3_000, 99 * BN),
            ("BTCUSDT", 1_000, 101 * BN),
            ("ETHUSDT", 1_000, 2_000 * BN),  # no index at all: NaN everywhere
        ]
    )
    indexes = _indexes(
        [
            ("BTCUSDT", 1_000, 100 * BN),
            ("BTCUSDT", 2_000, 101 * BN),
            ("BTCUSDT", 2_500, UNDEF_PRICE),  # absent: not a value, 101 stays
            ("BTC", 1_000, 100 * BN),  # an index with no mark: no rows
        ]
    )
    out = basis(marks, indexes, np.array([0, 1_000, 2_000, 3_000, 4_000, 6_000]), max_staleness_ns=2_000)
    rows = out.to_pylist()
    assert [(r["symbol"], r["ts_ns"]) for r in rows] == [
        (s, t) for s in ("BTCUSDT", "ETHUSDT") for t in (0, 1_000, 2_000, 3_000, 4_000, 6_000)
    ]
    btc = [r["basis_bps"] for r in rows[:6]]
    assert math.isnan(btc[0])  # no mark yet
    assert btc[1] == pytest.approx(100.0)  # (101 - 100) / 100 * 1e4
    assert btc[2] == pytest.approx(0.0)  # mark 101 (1000 ns old), index 101
    assert btc[3] == pytest.approx(-20_000 / 101)  # (99 - 101) / 101 * 1e4
    assert btc[4] == pytest.approx(-20_000 / 101)  # index exactly 2000 ns old: still fresh
    assert math.isnan(btc[5])  # mark 3000 ns old: stale
    assert (rows[3]["mark_price_nanos"], rows[3]["index_price_nanos"]) == (99 * BN, 101 * BN)
    assert rows[5]["mark_price_nanos"] is None and rows[0]["index_price_nanos"] is None
    assert all(math.isnan(r["basis_bps"]) for r in rows[6:])


def test_basis_stale_index_only() -> None:
    out = basis(
        _marks([("X", 0, 10 * BN), ("X", 500, 11 * BN)]),
        _indexes([("X", 0, 10 * BN)]),
        np.array([0, 500]),
        max_staleness_ns=400,
    )
    # at 500 the mark is fresh but the index is 500 ns old
    assert out.column("basis_bps").to_pylist()[0] == 0.0 and math.isnan(out.column("basis_bps")[1].as_py())


@pytest.mark.parametrize("bad", [0, -5 * BN])
def test_basis_rejects_index_at_or_below_zero(bad: int) -> None:
    with pytest.raises(DerivedInputError, match=r"index price must be > 0.*BTCUSDT at 7 has"):
        basis(
            _marks([("BTCUSDT", 7, BN)]), _indexes([("BTCUSDT", 7, bad)]), np.array([7]), max_staleness_ns=1
        )
    assert issubclass(DerivedInputError, TapeflowError)


def test_basis_empty_inputs_and_bad_settings() -> None:
    empty = basis(MARK_PRICE.empty_table(), INDEX_PRICE.empty_table(), np.array([1, 2]), max_staleness_ns=1)
    assert empty.num_rows == 0 and "basis_bps" in empty.column_names
    on_empty_grid = basis(
        _marks([("X", 0, BN)]), _indexes([("X", 0, BN)]), np.array([], dtype=np.int64), max_staleness_ns=1
    )
    assert on_empty_grid.num_rows == 0
    with pytest.raises(ConfigError, match="max_staleness_ns"):
        basis(MARK_PRICE.empty_table(), INDEX_PRICE.empty_table(), np.array([1]), max_staleness_ns=0)
    with pytest.raises(ConfigError, match="strictly increasing"):
        basis(MARK_PRICE.empty_table(), INDEX_PRICE.empty_table(), np.array([2, 2]), max_staleness_ns=1)


def test_time_grid() -> None:
    assert time_grid(10, 40, 10).tolist() == [10, 20, 30, 40]
    assert time_grid(10, 39, 10).tolist() == [10, 20, 30]
    with pytest.raises(ConfigError):
        time_grid(10, 40, 0)


# ---- open interest change


def _oi(rows: list[tuple[str, int, int]]) -> pa.Table:
    return OPEN_INTEREST.table(
        {
            "ts_event_ns": [r[1] for r in rows],
            "ts_recv_ns": [r[1] for r in rows],
            "venue": [V] * len(rows),
            "symbol": [r[0] for r in rows],
            "open_interest_nanos": [r[2] for r in rows],
            "open_interest_value_nanos": [UNDEF_PRICE] * len(rows),
        }
    )


def test_open_interest_change_by_hand() -> None:
    oi = _oi([("X", 0, 1_000), ("X", 10, 1_200), ("X", 20, 900), ("X", 40, 0)])
    out = open_interest_change(oi, np.array([5, 10, 20, 30, 50, 70]), window_ns=10, max_staleness_ns=15)
    rows = out.to_pylist()
    got = [(r["ts_ns"], r["open_interest_nanos"], r["change_nanos"]) for r in rows]
    assert got == [
        (5, 1_000, None),  # nothing at or before -5
        (10, 1_200, 200),  # 1200 - 1000
        (20, 900, -300),  # 900 - 1200
        (30, 900, 0),  # 900 (10 ns old) - 900
        (50, 0, 0),  # 0 - 0
        (70, None, None),  # the last value is 30 ns old
    ]
    pct = [r["change_pct"] for r in rows]
    assert pct[1] == pytest.approx(20.0) and pct[2] == pytest.approx(-25.0) and pct[3] == 0.0
    assert math.isnan(pct[0]) and math.isnan(pct[4]) and math.isnan(pct[5])  # no start, zero start, stale


def test_open_interest_change_empty_and_bad_window() -> None:
    assert (
        open_interest_change(
            OPEN_INTEREST.empty_table(), np.array([1]), window_ns=1, max_staleness_ns=1
        ).num_rows
        == 0
    )
    with pytest.raises(ConfigError, match="window_ns"):
        open_interest_change(OPEN_INTEREST.empty_table(), np.array([1]), window_ns=-1, max_staleness_ns=1)


# ---- liquidation clusters


def _liqs(rows: list[tuple[str, int, int, int, int]]) -> pa.Table:
    """rows: (symbol, ts, side, price in units, size in units)."""
    return LIQUIDATION.table(
        {
            "ts_event_ns": [r[1] for r in rows],
            "ts_recv_ns": [r[1] for r in rows],
            "venue": [V] * len(rows),
            "symbol": [r[0] for r in rows],
            "liquidation_id": [""] * len(rows),
            "side": [r[2] for r in rows],
            "price_nanos": [r[3] * BN for r in rows],
            "size_nanos": [r[4] * BN for r in rows],
        }
    )


def _clusters(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(r["symbol"], r["side"], r["start_ns"], r["end_ns"], r["count"], r["notional"]) for r in rows]


def test_liquidation_clusters_by_hand() -> None:
    liqs = _liqs(
        [
            ("BTCUSDT", 249, ASK, 100, 20),  # 2000 alone, 100 ns after 149: a cluster of its own
            ("BTCUSDT", 0, ASK, 100, 4),  # 400
            ("BTCUSDT", 50, ASK, 100, 3),  # 300
            ("BTCUSDT", 60, BID, 100, 9),  # 900: the other side never joins the sells
            ("BTCUSDT", 100, BID, 50, 1),  # 50: buys 950 in all, below 1000
            ("BTCUSDT", 149, ASK, 100, 4),  # 400, 99 ns after 50: sells 0..149 sum to 1100
            ("ETHUSDT", 10, ASK, 2_000, 1),  # one liquidation of 2000
        ]
    )
    out = liquidation_clusters(liqs, window_ns=100, min_notional=1_000.0)
    assert _clusters(out.to_pylist()) == [
        ("BTCUSDT", ASK, 0, 149, 3, 1_100.0),
        ("BTCUSDT", ASK, 249, 249, 1, 2_000.0),
        ("ETHUSDT", ASK, 10, 10, 1, 2_000.0),
    ]


def test_liquidation_clusters_merge_while_gaps_are_below_the_window() -> None:
    # two bursts of 1200 each; 99 ns apart they are one cluster, 100 ns apart two
    def bursts(gap: int) -> pa.Table:
        return _liqs([("X", 0, BID, 10, 60), ("X", 1, BID, 10, 60), ("X", 1 + gap, BID, 10, 120)])

    assert _clusters(liquidation_clusters(bursts(99), window_ns=100, min_notional=1_000.0).to_pylist()) == [
        ("X", BID, 0, 100, 3, 2_400.0)
    ]
    assert _clusters(liquidation_clusters(bursts(100), window_ns=100, min_notional=1_000.0).to_pylist()) == [
        ("X", BID, 0, 1, 2, 1_200.0),
        ("X", BID, 101, 101, 1, 1_200.0),
    ]


def test_liquidation_clusters_one_liquidation_empty_and_errors() -> None:
    one = _liqs([("X", 5, ASK, 3, 2)])  # notional 6
    assert _clusters(liquidation_clusters(one, window_ns=1, min_notional=6.0).to_pylist()) == [
        ("X", ASK, 5, 5, 1, 6.0)
    ]
    assert liquidation_clusters(one, window_ns=1, min_notional=6.5).num_rows == 0
    empty = liquidation_clusters(LIQUIDATION.empty_table(), window_ns=1, min_notional=1.0)
    assert empty.num_rows == 0 and empty.schema == CLUSTER_SCHEMA
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="min_notional"):
            liquidation_clusters(one, window_ns=1, min_notional=bad)
    no_price = _liqs([("X", 5, ASK, 3, 2)])
    no_price = no_price.set_column(
        no_price.schema.get_field_index("price_nanos"), "price_nanos", pa.array([UNDEF_PRICE], pa.int64())
    )
    with pytest.raises(DerivedInputError, match="X at 5 has no usable price_nanos"):
        liquidation_clusters(no_price, window_ns=1, min_notional=1.0)


# ---- insurance-fund stress


def _funds(rows: list[tuple[str, int, int]]) -> pa.Table:
    """rows: (asset, ts, balance in nanos)."""
    return INSURANCE_FUND.table(
        {
            "ts_event_ns": [r[1] for r in rows],
            "ts_recv_ns": [r[1] for r in rows],
            "venue": [V] * len(rows),
            "symbol": [""] * len(rows),
            "asset": [r[0] for r in rows],
            "balance_nanos": [r[2] for r in rows],
        }
    )


def test_insurance_stress_by_hand() -> None:
    funds = _funds(
        [
            ("USDT", 1, 100 * BN),  # peak 100, drawdown 0
            ("USDT", 2, 96 * BN),  # 4/100 = 0.04: below watch 0.05
            ("USDT", 3, 110 * BN),  # new peak 110
            ("USDT", 4, 99 * BN),  # 11/110 = 0.10: alert (2)
            ("USDT", 5, 82_500_000_000),  # 27.5/110 = 0.25: critical (3)
            ("USDT", 6, 104_500_000_000),  # 5.5/110 = 0.05: watch (1)
            ("USDT", 7, 120 * BN),  # new peak
            ("BNB", 1, 0),  # a peak of zero: no drawdown
        ]
    )
    rows = insurance_stress(funds).to_pylist()
    assert [r["asset"] for r in rows] == ["BNB"] + ["USDT"] * 7
    usdt = rows[1:]
    assert [r["level"] for r in usdt] == [0, 0, 0, 2, 3, 1, 0]
    assert [r["peak_nanos"] for r in usdt] == [100 * BN, 100 * BN] + [110 * BN] * 4 + [120 * BN]
    assert [r["drawdown"] for r in usdt] == pytest.approx([0.0, 0.04, 0.0, 0.1, 0.25, 0.05, 0.0])
    assert math.isnan(rows[0]["drawdown"]) and rows[0]["level"] == 0
    # tighter thresholds move the levels
    strict = insurance_stress(funds, InsuranceStressConfig(watch=0.01, alert=0.03, critical=0.09))
    assert [r["level"] for r in strict.to_pylist()[1:]] == [0, 2, 0, 3, 3, 2, 0]
    assert insurance_stress(INSURANCE_FUND.empty_table()).num_rows == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"watch": 0.0},
        {"critical": 1.0},
        {"alert": math.nan},
        {"watch": -0.1},
        {"alert": 0.05},  # equal to watch
        {"watch": 0.2, "alert": 0.1},
        {"watch": "0.05"},
    ],
)
def test_insurance_stress_config_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="insurance stress"):
        InsuranceStressConfig(**kwargs)  # type: ignore[arg-type]


# ---- real data


_TESTS = {
    "map binance futures messages": "binance-futures",
    "map binance delivery messages": "binance-delivery",
    "map deribit messages": "deribit",
}
_TEXT = msgspec.json.Decoder(float_hook=Decimal)  # numbers as their decimal text


def _mark_and_index(msg: dict[str, Any]) -> list[tuple[str, int, Decimal, Decimal | None]]:
    """(instrument, time ns, mark, index or None) of each mark a Binance markPrice or Deribit
    ticker frame carries, read off the frame."""
    out = []
    data = msg.get("data", msg)
    for item in data if isinstance(data, list) else [data]:
        if isinstance(item, dict) and item.get("e") == "markPriceUpdate":
            out.append((item["s"], int(item["E"]) * 1_000_000, Decimal(item["p"]), item.get("i")))
    params = msg.get("params", {})
    if str(params.get("channel", "")).startswith("ticker."):
        d = params["data"]
        out.append(
            (d["instrument_name"], int(d["timestamp"]) * 1_000_000, d["mark_price"], d.get("index_price"))
        )
    return [(s, t, Decimal(str(m)), None if i in (None, "") else Decimal(str(i))) for s, t, m, i in out]


def test_basis_of_real_mark_frames(real_data: Path) -> None:
    """Every Binance markPrice and Deribit ticker frame of the Tardis pairs, decoded: at its own
    time an instrument's basis is (mark - index) / index in bps from the frame's decimal text, and
    NaN for a frame without an index (Binance before 2020, delivery contracts)."""
    with_index: dict[tuple[str, int], set[float]] = defaultdict(set)
    without: set[tuple[str, int]] = set()
    decoders = {fmt: decoder(fmt) for fmt in set(_TESTS.values())}
    for n, raw in enumerate(need(real_data / PAIRS).read_bytes().splitlines()):
        pair = _TEXT.decode(raw)
        if pair["test"] not in _TESTS:
            continue
        rows = _mark_and_index(pair["input"])
        if not rows:
            continue
        decoders[_TESTS[pair["test"]]].feed(
            CaptureLine(n, RECV, "", msgspec.json.encode(pair["input"]), "pairs")
        )
        for symbol, ts, mark, index in rows:
            if index is None:
                without.add((symbol, ts))
            else:
                with_index[(symbol, ts)].add(float((mark - index) / index * 10_000))
    marks, indexes = [], []
    for d in decoders.values():
        tables = d.flush(0, "pairs").tables
        assert "rejected" not in tables
        marks.append(tables.get("mark_price", MARK_PRICE.empty_table()))
        indexes.append(tables.get("index_price", INDEX_PRICE.empty_table()))
    print(f"{len(with_index)} marks with an index, {len(without)} without")
    assert len(with_index) >= 10 and len(without) >= 2
    grid = np.unique(np.array([t for _, t in (*with_index, *without)], dtype=np.int64))
    out = basis(pa.concat_tables(marks), pa.concat_tables(indexes), grid, max_staleness_ns=1)
    got = {(r["symbol"], r["ts_ns"]): r["basis_bps"] for r in out.to_pylist()}
    # an option's mark is its premium (Deribit: in the coin), so it has no basis row at all
    assert not any(is_option(symbol) for symbol, _ in got)
    assert sum(not is_option(symbol) for symbol, _ in with_index) >= 7  # of 12: 5 are options
    for key, want in with_index.items():
        if len(want) == 1 and not is_option(key[0]):  # two frames at one time: the later counts
            assert got[key] == pytest.approx(want.pop(), rel=1e-9, abs=1e-9), key
    for key in without - set(with_index):
        if not is_option(key[0]):
            assert math.isnan(got[key]), key
