"""spoofing_l2/1 on hand-built level books: one-sided size that appears behind the touch and
vanishes with no trade at its price alerts; the look-alikes (both sides together, a fill, a level
shrinking order by order, no trade on the other side) do not. Kernels against their NumPy
references; routing against the L3 spoofing detector."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kernels.signals_spoofing_l2 import first_fall, first_fall_ref, level_jumps, level_jumps_ref
from tapeflow.schemas.records import ASK, BID, BOOK_SNAPSHOT, TRADE
from tapeflow.signals import spoofing_l2
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_tables

GRID_NS = 100_000_000
T0 = 1_704_205_800_000_000_000
P = 1_000_000_000
TICK = P // 100
LOT = 1_000_000_000
LEVELS = 8


def _book(rows: int = 60) -> dict[str, np.ndarray]:
    ts = T0 + np.arange(rows) * GRID_NS
    bid = 100 * P - np.arange(LEVELS) * TICK
    ask = 100 * P + TICK + np.arange(LEVELS) * TICK
    return dict(ts=ts, recv=ts.copy(), flags=np.zeros(rows, np.uint8),
                bid_p=np.tile(bid, (rows, 1)), bid_s=np.full((rows, LEVELS), 100.0 * LOT),
                ask_p=np.tile(ask, (rows, 1)), ask_s=np.full((rows, LEVELS), 100.0 * LOT))


def _trades(rows: list[tuple[int, int, float, int]]) -> dict[str, np.ndarray]:
    """(grid row, price, lots, aggressor) per trade, 50 ms after that row."""
    t = np.array([T0 + r[0] * GRID_NS + GRID_NS // 2 for r in rows], np.int64)
    return dict(ts_event_ns=t, ts_recv_ns=t.copy(), price_nanos=np.array([r[1] for r in rows], np.int64),
                size_nanos=np.array([int(r[2] * LOT) for r in rows], np.int64),
                aggressor_side=np.array([r[3] for r in rows], np.uint8))


def _tables(book: dict[str, np.ndarray], tr: dict[str, np.ndarray]) -> tuple[pa.Table, pa.Table]:
    n, g = len(tr["ts_event_ns"]), len(book["ts"])
    trades = TRADE.table(dict(ts_event_ns=tr["ts_event_ns"], ts_recv_ns=tr["ts_recv_ns"],
                              sequence=np.arange(n), trade_id=[""] * n, price_nanos=tr["price_nanos"],
                              size_nanos=tr["size_nanos"],
                              aggressor_side=tr["aggressor_side"], flags=np.zeros(n, np.uint8)),
                         constants={"venue": "sim", "symbol": "SIMA"})
    snaps = BOOK_SNAPSHOT.table(dict(
        ts_event_ns=book["ts"], ts_recv_ns=book["recv"], sequence=np.arange(g),
        levels=np.full(g, LEVELS, np.uint16),
        bid_price_nanos=book["bid_p"].tolist(), bid_size_nanos=book["bid_s"].astype(np.int64).tolist(),
        ask_price_nanos=book["ask_p"].tolist(), ask_size_nanos=book["ask_s"].astype(np.int64).tolist(),
        flags=book["flags"]), constants={"venue": "sim", "symbol": "SIMA"})
    return trades, snaps


def _layer(book: dict[str, np.ndarray], side: str, level: int, lots: float, first: int, gone: int) -> int:
    book[f"{side}_s"][first:gone, level] += lots * LOT
    return int(book[f"{side}_p"][0, level])


def _params() -> dict:
    return dict(load(DEFAULT_PATH).for_instrument("spoofing_l2", "SIMA", "equity"))


def _detect(book: dict[str, np.ndarray], tr: dict[str, np.ndarray]) -> list[dict]:
    return spoofing_l2.detect(book, tr, TICK, _params(), "sim", "SIMA").table().to_pylist()


def test_one_sided_size_pulled_after_the_other_side_traded_alerts():
    book = _book()
    price = _layer(book, "bid", 3, 500, 20, 30)
    # a buyer lifts the ask (the genuine sell order the bids were there to help), then the bids go
    got = _detect(book, _trades([(27, int(book["ask_p"][0, 0]), 5, BID)]))
    assert [(a["kind"], a["side"], a["price_nanos"], a["ts_event_ns"], a["start_ns"]) for a in got] == [
        ("spoofing", 1, price, int(book["ts"][30]), int(book["ts"][20]))]
    assert got[0]["detector"] == "spoofing_l2/1" and 0 < got[0]["confidence"] <= 1


def test_an_ask_layer_alerts_on_the_ask_side():
    book = _book()
    price = _layer(book, "ask", 2, 600, 10, 18)
    got = _detect(book, _trades([(15, int(book["bid_p"][0, 0]), 5, ASK)]))
    assert [(a["side"], a["price_nanos"]) for a in got] == [(-1, price)]


def test_a_market_maker_putting_up_and_pulling_both_sides_together_does_not_alert():
    book = _book()
    _layer(book, "bid", 3, 500, 20, 30)
    _layer(book, "ask", 2, 500, 20, 29)
    tr = _trades([(27, int(book["ask_p"][0, 0]), 5, BID), (26, int(book["bid_p"][0, 0]), 5, ASK)])
    assert _detect(book, tr) == []
    # the same book with the two-sided check off: the rule is what rejects it
    got = spoofing_l2.detect(book, tr, TICK, dict(_params(), mm_window_ns=0), "sim", "SIMA").table()
    assert got.num_rows == 2


def test_size_that_traded_at_its_price_is_a_fill_not_a_spoof():
    book = _book()
    price = _layer(book, "bid", 3, 500, 20, 30)
    assert _detect(book, _trades([(27, int(book["ask_p"][0, 0]), 5, BID), (29, price, 450, ASK)])) == []


def test_size_leaving_order_by_order_is_not_a_cancel():
    book = _book()
    price = _layer(book, "bid", 3, 500, 20, 40)
    for k, r in enumerate(range(30, 40)):
        book["bid_s"][r, 3] -= 50 * (k + 1) * LOT  # a tenth of the layer leaves per grid step
    assert _detect(book, _trades([(32, int(book["ask_p"][0, 0]), 5, BID)])) == []
    assert price > 0


def test_layers_stacked_at_one_price_and_cancelled_apart_alert():
    book = _book()
    price = _layer(book, "bid", 3, 300, 20, 30)  # two layers of 3 usual depths at one price:
    _layer(book, "bid", 3, 300, 20, 34)  # the jump is 6, each cancel takes half of it
    tr = _trades([(27, int(book["ask_p"][0, 0]), 5, BID)])
    assert [(a["side"], a["price_nanos"], a["ts_event_ns"]) for a in _detect(book, tr)] == [
        (1, price, int(book["ts"][30]))]
    # without the stacked-layer rule the half-jump step is not a cancel
    off = spoofing_l2.detect(book, tr, TICK, dict(_params(), min_step_x_depth=0.0), "sim", "SIMA").table()
    assert off.num_rows == 0


def test_a_second_layering_on_the_same_side_alerts_its_own_layers_do_not():
    book = _book()
    first = _layer(book, "bid", 3, 500, 20, 30)
    _layer(book, "bid", 5, 500, 20, 32)  # the same layering: up with the first, quiet
    second = _layer(book, "bid", 4, 500, 40, 48)  # another, 2 s later, vanishing 1.8 s after the first
    tr = _trades([(27, int(book["ask_p"][0, 0]), 5, BID), (46, int(book["ask_p"][0, 0]), 5, BID)])
    got = _detect(book, tr)
    assert [(a["price_nanos"], a["ts_event_ns"]) for a in got] == [
        (first, int(book["ts"][30])), (second, int(book["ts"][48]))]
    # burst_ns 0: the refractory quiets every layer on the side
    one = spoofing_l2.detect(book, tr, TICK, dict(_params(), burst_ns=0), "sim", "SIMA").table()
    assert one.column("ts_event_ns").to_pylist() == [int(book["ts"][30])]


@pytest.mark.parametrize("case", ["no_trade_other_side", "at_the_touch", "wall_sized", "small"])
def test_what_is_not_layering(case):
    book = _book()
    lots, level = {"wall_sized": (3000, 3), "small": (150, 3), "at_the_touch": (500, 0)}.get(case, (500, 3))
    _layer(book, "bid", level, lots, 20, 30)
    tr = _trades([] if case == "no_trade_other_side" else [(27, int(book["ask_p"][0, 0]), 5, BID)])
    assert _detect(book, tr) == []


def test_detect_tables_runs_l2_spoofing_only_without_order_ids():
    thresholds = load(DEFAULT_PATH)
    book = _book()
    _layer(book, "bid", 3, 500, 20, 30)
    trades, snaps = _tables(book, _trades([(27, int(book["ask_p"][0, 0]), 5, BID)]))
    l2 = detect_tables(trades, snaps, thresholds, preset="equity")
    spoofs = l2.filter(pc.equal(l2.column("kind"), "spoofing"))
    assert spoofs.column("detector").to_pylist() == ["spoofing_l2/1"]
    l3 = detect_tables(trades, snaps, thresholds, preset="equity", order_ids={("sim", "SIMA")})
    assert l3.filter(pc.equal(l3.column("kind"), "spoofing")).num_rows == 0, "the L3 detector's input"


def test_kernels_match_their_numpy_references():
    rng = np.random.default_rng(7)
    for g, levels in ((1, 3), (50, 4), (300, 6)):
        prices = np.sort(rng.integers(90, 110, (g, levels)), axis=1)[:, ::-1]
        sizes = rng.integers(0, 6, (g, levels)).astype(np.float64)
        np.testing.assert_array_equal(level_jumps(prices, sizes), level_jumps_ref(prices, sizes))
        n = 40
        rows, price = rng.integers(0, g, n), rng.integers(90, 110, n)
        at_most = rng.integers(0, 5, n).astype(np.float64)
        for window in (1, 7):
            np.testing.assert_array_equal(first_fall(prices, sizes, rows, price, at_most, window),
                                          first_fall_ref(prices, sizes, rows, price, at_most, window))
