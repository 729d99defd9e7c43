"""Time bars: numba kernel vs a Python-integer reference, hand-computed bars, the table wrapper."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.bars import bucket_start, time_bars, time_bars_reference
from tapeflow.derived.bars import STANDARD_INTERVALS, interval_ns
from tapeflow.derived.bars import time_bars as table_bars
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK, TRADE

B, A, N = ord("B"), ord("A"), ord("N")


def _as_dict(bars) -> dict:
    cols = (
        bars.open_price_nanos,
        bars.high_price_nanos,
        bars.low_price_nanos,
        bars.close_price_nanos,
        bars.volume_nanos,
        bars.vwap_price_nanos,
        bars.trade_count,
        bars.buy_volume_nanos,
        bars.sell_volume_nanos,
    )
    return {
        (int(g), int(t)): tuple(int(c[j]) for c in cols)
        for j, (g, t) in enumerate(zip(bars.group, bars.open_ns, strict=True))
    }


trades = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(-5 * 10**9, 5 * 10**9),
        st.integers(-(2**62), 2**62),
        st.integers(0, 2**56),
        st.sampled_from([B, A, N]),
    ),
    min_size=0,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(rows=trades, interval=st.sampled_from([1, 7, 10**9, 3 * 10**9]))
def test_kernel_equals_python_integer_reference(rows: list, interval: int) -> None:
    cols = [np.array([r[i] for r in rows], dtype=np.int64) for i in range(5)]
    got = _as_dict(time_bars(*cols[:4], cols[4].astype(np.uint8), interval))
    assert got == time_bars_reference(*cols, interval)


@settings(max_examples=50, deadline=None)
@given(rows=trades)
def test_volume_splits_and_counts_add_up(rows: list) -> None:
    cols = [np.array([r[i] for r in rows], dtype=np.int64) for i in range(5)]
    bars = time_bars(*cols[:4], cols[4].astype(np.uint8), 10**9)
    assert int(bars.trade_count.sum()) == len(rows)
    assert int(bars.volume_nanos.sum()) == sum(r[3] for r in rows)
    assert (bars.buy_volume_nanos + bars.sell_volume_nanos <= bars.volume_nanos).all()
    assert (bars.low_price_nanos <= bars.vwap_price_nanos).all() and (
        bars.vwap_price_nanos <= bars.high_price_nanos
    ).all()


def test_hand_computed_bar_with_128_bit_notional() -> None:
    # 60,000.5 USD x 3 BTC and 60,001 USD x 1 BTC: notional 240,002.5 USD*BTC does not fit int64 in nanos^2.
    price = np.array([60_000_500_000_000, 60_001_000_000_000, 59_000_000_000_000], dtype=np.int64)
    size = np.array([3_000_000_000, 1_000_000_000, 0], dtype=np.int64)
    bars = time_bars(
        np.zeros(3, np.int64),
        np.array([5, 6, 999_999_999]),
        price,
        size,
        np.array([B, A, B], np.uint8),
        10**9,
    )
    assert bars.vwap_price_nanos.tolist() == [60_000_625_000_000]  # (180001.5 + 60001) / 4
    assert bars.open_price_nanos.tolist() == [60_000_500_000_000]
    assert bars.close_price_nanos.tolist() == [59_000_000_000_000]
    assert bars.low_price_nanos.tolist() == [59_000_000_000_000]
    assert bars.volume_nanos.tolist() == [4_000_000_000]
    assert bars.buy_volume_nanos.tolist() == [3_000_000_000] and bars.sell_volume_nanos.tolist() == [
        1_000_000_000
    ]
    assert bars.trade_count.tolist() == [3]


@pytest.mark.parametrize(
    ("prices", "sizes", "vwap"),
    [
        ([1, 2], [1, 1], 2),  # 1.5 rounds away from zero
        ([-1, -2], [1, 1], -2),  # -1.5 too
        ([1, 2], [2, 1], 1),  # 1.333
        ([1, 2], [1, 2], 2),  # 1.667
        ([5, 7], [0, 0], 5),  # no volume: the open
    ],
)
def test_vwap_rounding(prices: list, sizes: list, vwap: int) -> None:
    bars = time_bars(
        np.zeros(2, np.int64),
        np.zeros(2, np.int64),
        np.array(prices),
        np.array(sizes),
        np.array([N, N], np.uint8),
        60,
    )
    assert bars.vwap_price_nanos.tolist() == [vwap]


def test_buckets_floor_negative_times_and_reject_bad_input() -> None:
    assert bucket_start(np.array([-1, 0, 59, 60]), 60).tolist() == [-60, 0, 0, 60]
    with pytest.raises(ValueError, match="negative size -5"):
        time_bars(np.zeros(1, np.int64), np.zeros(1), np.ones(1), np.array([-5]), np.array([B], np.uint8), 1)
    with pytest.raises(ValueError, match="exceeds int64"):
        big = np.array([2**62, 2**62], dtype=np.int64)
        time_bars(np.zeros(2, np.int64), np.zeros(2), np.ones(2), big, np.array([B, B], np.uint8), 1)
    empty = time_bars(*(np.zeros(0, np.int64),) * 4, np.zeros(0, np.uint8), 1)
    assert empty.group.size == 0


def test_intervals_parse_to_nanoseconds() -> None:
    sec = 1_000_000_000
    want = [1, 5, 15, 30, 60, 180, 300, 900, 1800, 3600, 7200, 14400, 21600, 43200, 86400]
    assert [interval_ns(i) for i in STANDARD_INTERVALS] == [w * sec for w in want]
    for bad in ("0s", "1w", "m1", "", "1.5m"):
        with pytest.raises(ConfigError):
            interval_ns(bad)


def _trade_table(rows: list[tuple]) -> pa.Table:
    names = (
        "venue",
        "symbol",
        "ts_event_ns",
        "ts_recv_ns",
        "price_nanos",
        "size_nanos",
        "aggressor_side",
        "flags",
    )
    cols = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    cols.update(sequence=[-1] * len(rows), trade_id=[""] * len(rows))
    return TRADE.table(cols)


def test_table_bars_group_by_venue_and_symbol() -> None:
    m = 60_000_000_000
    table = _trade_table(
        [
            ("x", "BTC", 10, 11, 100, 2, B, 0),
            ("y", "BTC", 20, 21, 900, 1, A, 0),
            ("x", "ETH", 30, 31, 50, 1, A, F_GAP),
            ("x", "BTC", m - 1, m + 5, 300, 2, A, 0),
            ("x", "BTC", m, m + 9, 200, 1, B, 0),
        ]
    )
    bars = table_bars(table, "1m").to_pydict()
    assert list(zip(bars["venue"], bars["symbol"], bars["ts_event_ns"], strict=True)) == [
        ("x", "BTC", 0),
        ("x", "BTC", m),
        ("x", "ETH", 0),
        ("y", "BTC", 0),
    ]
    assert bars["open_price_nanos"] == [100, 200, 50, 900]
    assert bars["close_price_nanos"] == [300, 200, 50, 900]
    assert bars["vwap_price_nanos"] == [200, 200, 50, 900]
    assert bars["volume_nanos"] == [4, 1, 1, 1]
    assert bars["ts_recv_ns"] == [m + 5, m + 9, 31, 21]
    assert bars["flags"] == [0, 0, F_MAYBE_BAD_BOOK, 0]
    assert set(bars["interval"]) == {"1m"}


def test_table_bars_of_no_trades_is_an_empty_bar_table() -> None:
    assert table_bars(TRADE.empty_table(), "5s").num_rows == 0
