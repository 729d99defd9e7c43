"""Hidden executions and the L2 iceberg on hand-built books: what alerts, what does not (the
look-alikes), and where ``detect_tables`` runs each."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas.records import ASK, BID, BOOK_SNAPSHOT, NO_SIDE, TRADE
from tapeflow.signals import hidden, iceberg_l2
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_tables

GRID_NS = 100_000_000
T0 = 1_704_205_800_000_000_000
P = 1_000_000_000  # one price unit; the tick is 0.01
LOT = 1_000_000_000


def _book(rows: int, bid_s: float = 300.0, ask_s: float = 200.0) -> dict[str, np.ndarray]:
    ts = T0 + np.arange(rows) * GRID_NS
    return dict(ts=ts, recv=ts, flags=np.zeros(rows, np.uint8),
                bid_p=np.tile([100 * P, 100 * P - P // 100], (rows, 1)),
                bid_s=np.full((rows, 2), bid_s * LOT),
                ask_p=np.tile([100 * P + P // 10, 100 * P + P // 10 + P // 100], (rows, 1)),
                ask_s=np.full((rows, 2), ask_s * LOT))


def _trades(rows: list[tuple[int, int, float, int]]) -> dict[str, np.ndarray]:
    """(ns after T0, price, lots, aggressor) per trade."""
    t = np.array([T0 + r[0] for r in rows], np.int64)
    return dict(ts_event_ns=t, ts_recv_ns=t.copy(), price_nanos=np.array([r[1] for r in rows], np.int64),
                size_nanos=np.array([int(r[2] * LOT) for r in rows], np.int64),
                aggressor_side=np.array([r[3] for r in rows], np.uint8))


def test_prints_inside_the_spread_and_beyond_the_display_alert_a_displayed_fill_does_not():
    params = load(DEFAULT_PATH).for_instrument("hidden", "AMZN")
    ask = 100 * P + P // 10
    tr = _trades([
        (150_000_000, 100 * P + 7 * P // 100, 50, NO_SIDE),  # inside, above the mid: a hidden ask
        (250_000_000, ask, 100, BID),  # at the ask, less than shown: displayed
        (350_000_000, ask, 150, BID),  # 350 lots in one print at the ask: 150 beyond the 200 shown
        (350_000_000, ask, 200, BID),
        (450_000_000, 100 * P + 3 * P // 100, 10, ASK),  # inside, a seller: the hidden order was a bid
        (550_000_000, 100 * P + 5 * P // 100, 10, NO_SIDE),  # at the mid, no aggressor: side unknown
    ])
    got = hidden.detect(tr, _book(10), params, "nasdaq", "AMZN").table().to_pylist()
    summary = [((r["ts_event_ns"] - T0) // 1_000_000, r["side"], r["size_nanos"] // LOT,
                json.loads(r["evidence"])["rule"]) for r in got]
    assert summary == [(150, -1, 50, "inside"), (350, -1, 350, "beyond_display"), (450, 1, 10, "inside"),
                       (550, 0, 10, "inside")]
    assert all(r["score"] == 2.0 and r["kind"] == "hidden" for r in got), "the row after confirms each"
    assert json.loads(got[1]["evidence"])["shown_nanos"] == 200 * LOT


def test_an_unconfirmed_print_scores_lower_and_can_be_required_away():
    params = load(DEFAULT_PATH).for_instrument("hidden", "AMZN")
    book = _book(10)
    book["ask_p"][2:, 0] = 100 * P + 5 * P // 100  # the ask comes down to 100.05 at row 2
    tr = _trades([(150_000_000, 100 * P + 5 * P // 100, 20, BID)])  # at the new ask, before row 2
    got = hidden.detect(tr, book, params, "nasdaq", "AMZN").table().to_pylist()
    assert [r["score"] for r in got] == [1.0]
    assert got[0]["confidence"] < 0.6 < hidden.detect(
        _trades([(150_000_000, 100 * P + 3 * P // 100, 20, BID)]), book, params, "nasdaq",
        "AMZN").table().to_pylist()[0]["confidence"]
    assert hidden.detect(tr, book, dict(params, require_after=1), "nasdaq", "AMZN").table().num_rows == 0


def test_no_book_no_hidden_alerts():
    params = load(DEFAULT_PATH).for_instrument("hidden", "AMZN")
    book = {k: v[:0] for k, v in _book(1).items()}
    tr = _trades([(150_000_000, 100 * P + 5 * P // 100, 20, BID)])
    assert hidden.detect(tr, book, params, "nasdaq", "AMZN").table().num_rows == 0


def _iceberg_book(rows: int, refill: bool, both_sides: bool = False):
    """The bid at 100.00 shows 100 lots; a seller takes 100 there every 10 rows. An iceberg shows
    100 again at once; joins (the look-alike) show up before the trade and are gone after it."""
    book = _book(rows, bid_s=100.0)
    trades = []
    for k in range(5, rows - 2, 10):
        trades.append((k * GRID_NS + GRID_NS // 2, 100 * P, 100, ASK))
        if both_sides:
            trades.append((k * GRID_NS + GRID_NS // 2, book["ask_p"][0, 0], 100, BID))
        if not refill:
            book["bid_s"][k - 2:k + 1, 0] += 100 * LOT  # a join 200 ms before, eaten by the trade
    return book, _trades(trades)


def test_an_l2_iceberg_alerts_at_its_fourth_refill_and_joins_do_not():
    params = load(DEFAULT_PATH).for_instrument("iceberg_l2", "SIMA")
    assert params["min_refills"] == 4
    book, tr = _iceberg_book(80, refill=True)
    got = iceberg_l2.detect(tr, book, params, "sim", "SIMA").table().to_pylist()
    assert [(r["kind"], r["side"], r["price_nanos"], (r["ts_event_ns"] - T0) // GRID_NS) for r in got] == [
        ("iceberg", 1, 100 * P, 36)]
    ev = json.loads(got[0]["evidence"])
    assert (ev["refills"], ev["refill_nanos"], ev["hidden_nanos"]) == (4, 100 * LOT, 400 * LOT)
    book, tr = _iceberg_book(80, refill=False)
    assert iceberg_l2.detect(tr, book, params, "sim", "SIMA").table().num_rows == 0


def test_two_sided_refills_of_one_size_are_a_market_maker_not_an_iceberg():
    params = load(DEFAULT_PATH).for_instrument("iceberg_l2", "SIMA")
    book, tr = _iceberg_book(80, refill=True, both_sides=True)
    book["ask_s"][:] = 100 * LOT
    assert iceberg_l2.detect(tr, book, params, "sim", "SIMA").table().num_rows == 0
    got = iceberg_l2.detect(tr, book, dict(params, mm_window_ns=0), "sim", "SIMA").table()
    assert sorted(got.column("side").to_pylist()) == [-1, 1], "without the rule both sides alert"


def test_a_depleted_level_breaks_the_chain():
    params = load(DEFAULT_PATH).for_instrument("iceberg_l2", "SIMA")
    book, tr = _iceberg_book(80, refill=True)
    book["bid_p"][30:33] = book["bid_p"][30:33] - P // 100  # the bid falls below 100.00 for 300 ms
    got = iceberg_l2.detect(tr, book, params, "sim", "SIMA").table().to_pylist()
    assert [(r["ts_event_ns"] - T0) // GRID_NS for r in got] == [66], "a new chain from row 36"


def _tables(book: dict[str, np.ndarray], tr: dict[str, np.ndarray]) -> tuple[pa.Table, pa.Table]:
    n = len(tr["ts_event_ns"])
    trades = TRADE.table(dict(ts_event_ns=tr["ts_event_ns"], ts_recv_ns=tr["ts_recv_ns"],
                              sequence=np.arange(n), trade_id=[""] * n, price_nanos=tr["price_nanos"],
                              size_nanos=tr["size_nanos"], aggressor_side=tr["aggressor_side"],
                              flags=np.zeros(n, np.uint8)),
                         constants={"venue": "sim", "symbol": "SIMA"})
    g = len(book["ts"])
    snaps = BOOK_SNAPSHOT.table(dict(
        ts_event_ns=book["ts"], ts_recv_ns=book["recv"], sequence=np.arange(g),
        levels=np.full(g, 2, np.uint16),
        bid_price_nanos=book["bid_p"].tolist(), bid_size_nanos=book["bid_s"].astype(np.int64).tolist(),
        ask_price_nanos=book["ask_p"].tolist(), ask_size_nanos=book["ask_s"].astype(np.int64).tolist(),
        flags=book["flags"]), constants={"venue": "sim", "symbol": "SIMA"})
    return trades, snaps


def test_detect_tables_runs_the_l2_iceberg_only_without_order_ids():
    thresholds = load(DEFAULT_PATH)
    book, tr = _iceberg_book(80, refill=True)
    trades, snaps = _tables(book, tr)
    l2 = detect_tables(trades, snaps, thresholds)
    icebergs = l2.filter(pc.equal(l2.column("kind"), "iceberg"))
    assert icebergs.column("detector").to_pylist() == ["iceberg_l2/1"]
    l3 = detect_tables(trades, snaps, thresholds, order_ids={("sim", "SIMA")})
    assert l3.filter(pc.equal(l3.column("kind"), "iceberg")).num_rows == 0, "the L3 iceberg's input"
    assert l3.filter(pc.equal(l3.column("kind"), "hidden")).num_rows == l2.filter(
        pc.equal(l2.column("kind"), "hidden")).num_rows
