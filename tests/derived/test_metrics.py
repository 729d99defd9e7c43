"""Metrics: kernels vs Python integers, a hand-computed grid, live == batch on any split, real data."""

from __future__ import annotations

import gzip
import json
import math
import pickle
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.metrics import UNDEF, depth_nanos, microprice_nanos, microprice_reference, quote_events
from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
from tapeflow.derived import LiveMetrics, metrics
from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import BOOK_SNAPSHOT, F_MAYBE_BAD_BOOK, QUOTE, TRADE
from tests.derived.conftest import MIDNIGHT_NS, same_rows

S = 1_000_000_000
B, A = ord("B"), ord("A")
U = int(UNDEF)


def snaps(rows: list[tuple], venue: str = "v", symbol: str = "s") -> pa.Table:
    """rows: (grid_ns, recv_ns, sequence, [(bid, size)...], [(ask, size)...], flags)."""
    return BOOK_SNAPSHOT.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[1] for r in rows],
        "sequence": [r[2] for r in rows],
        "bid_price_nanos": [[p for p, _ in r[3]] for r in rows],
        "bid_size_nanos": [[s for _, s in r[3]] for r in rows],
        "ask_price_nanos": [[p for p, _ in r[4]] for r in rows],
        "ask_size_nanos": [[s for _, s in r[4]] for r in rows],
        "flags": [r[5] for r in rows],
    }, constants={"venue": venue, "symbol": symbol, "levels": 10})


def quotes(rows: list[tuple], venue: str = "v", symbol: str = "s") -> pa.Table:
    """rows: (recv_ns, bid, bid_size, ask, ask_size, flags)."""
    return QUOTE.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
        "sequence": list(range(len(rows))),
        **{c: [r[i + 1] for r in rows] for i, c in enumerate(
            ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos", "flags"))},
    }, constants={"venue": venue, "symbol": symbol})


def trades(rows: list[tuple], venue: str = "v", symbol: str = "s") -> pa.Table:
    """rows: (recv_ns, size, side)."""
    n = len(rows)
    return TRADE.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
        "sequence": list(range(n)), "trade_id": [str(i) for i in range(n)], "price_nanos": [100] * n,
        "size_nanos": [r[1] for r in rows], "aggressor_side": [r[2] for r in rows], "flags": [0] * n,
    }, constants={"venue": venue, "symbol": symbol})


def test_hand_computed_grid_with_midnight_cvd_reset() -> None:
    d = MIDNIGHT_NS
    s = snaps([
        (d - S, d - S - 10, 1, [(100, 5), (99, 7)], [(102, 3), (103, 4)], 0),
        (d, d - 20, 2, [(100, 5)], [], F_MAYBE_BAD_BOOK),
        (d + S, d + S - 30, 3, [(101, 2), (100, 1), (99, 1)], [(103, 6)], 0),
    ])
    q = quotes([
        (d - S - 500, 100, 5, 102, 3, 0),
        (d - S - 400, 100, 5, 102, 3, 0),  # a repeat: no flow, no return
        (d - 200, 101, 4, 102, 3, 0),  # bid up: +4, ask same: -3 + 3; mid 101 -> 101
        (d + S - 100, 101, 2, 103, 6, F_MAYBE_BAD_BOOK),  # bid same: +2 - 4, ask up: +3; mid 101 -> 102
        (d + S - 300, 101, 2, 103, 6, 0),  # received out of order: joins the running max's instant
    ])
    t = trades([(d - S - 50, 10, B), (d - 5, 3, A), (d + 1, 7, B), (d + S + 5, 100, B)])
    got = metrics(s, q, t, levels=2).to_pylist()
    assert [r["mid_price_nanos"] for r in got] == [101, U, 102]
    assert [r["spread_nanos"] for r in got] == [2, U, 2]
    assert got[0]["spread_bps"] == 2 / 101 * 1e4 and math.isnan(got[1]["spread_bps"])
    assert [r["microprice_nanos"] for r in got] == [810 // 8, U, 812 // 8]
    assert [(r["bid_depth_nanos"], r["ask_depth_nanos"]) for r in got] == [(12, 7), (5, 0), (3, 6)]
    assert [r["imbalance"] for r in got] == [5 / 19, 1.0, -3 / 9]
    assert [r["ofi_nanos"] for r in got] == [0, 4, 1]
    assert math.isnan(got[0]["realized_vol"]) and got[1]["realized_vol"] == 0.0
    assert got[2]["realized_vol"] == abs(math.log(102 / 101))
    # The midnight sample closes the old day (10 - 3); the next one starts the new day.
    assert [r["cvd_nanos"] for r in got] == [7 + 3, 7, 7]
    assert [r["flags"] for r in got] == [0, F_MAYBE_BAD_BOOK, F_MAYBE_BAD_BOOK]
    assert [(r["ts_event_ns"], r["sequence"], r["interval"]) for r in got] == [
        (d - S, 1, "1s"), (d, 2, "1s"), (d + S, 3, "1s")]


def test_a_bad_quote_flags_samples_until_a_good_one() -> None:
    s = snaps([(g * S, g * S - 1, g, [(90, 1)], [(100, 1)], 0) for g in (1, 2, 3, 4)])
    q = quotes([(S - 5, 90, 1, 100, 1, F_MAYBE_BAD_BOOK), (3 * S - 5, 91, 1, 100, 1, 0)])
    assert metrics(s, q, TRADE.empty_table()).column("flags").to_pylist() == [F_MAYBE_BAD_BOOK] * 3 + [0]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_repeated_quotes_change_nothing(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 25))
    recv = sorted(data.draw(st.lists(st.integers(0, 6 * S), min_size=n, max_size=n, unique=True)))
    rows = [(r, *data.draw(st.tuples(st.integers(90, 92), st.integers(1, 2), st.integers(96, 97),
                                     st.integers(1, 2))), data.draw(st.sampled_from([0, F_MAYBE_BAD_BOOK])))
            for r in recv]
    # What a book stage that only sends changes would send (prices, sizes or flag differ).
    changes = [r for i, r in enumerate(rows) if i == 0 or r[1:] != rows[i - 1][1:]]
    # Repeats: the quote in effect sent again, before the next one arrives.
    padded = []
    for i, r in enumerate(rows):
        padded.append(r)
        end = rows[i + 1][0] if i + 1 < len(rows) else r[0] + S
        if end - r[0] >= 2 and data.draw(st.booleans()):
            padded.append((data.draw(st.integers(r[0] + 1, end - 1)), *r[1:]))
    s = snaps([(g * S, g * S - 1, g, [(90, g)], [(100, 1)], 0) for g in range(1, 9)])
    none = TRADE.empty_table()
    same_rows(metrics(s, quotes(changes), none), metrics(s, quotes(padded), none))


def test_live_refuses_a_snapshot_that_goes_back() -> None:
    live, snap = LiveMetrics(), snaps([(2 * S, 2 * S - 1, 1, [(1, 1)], [(2, 1)], 0)])
    live.add(snap, QUOTE.empty_table(), TRADE.empty_table())
    with pytest.raises(TapeflowError, match="does not follow"):
        live.add(snap, QUOTE.empty_table(), TRADE.empty_table())


def test_off_grid_snapshots_and_wrong_tables_raise() -> None:
    s = snaps([(S + 1, S, 1, [(1, 1)], [(2, 1)], 0)])
    with pytest.raises(TapeflowError, match="not on the"):
        metrics(s, QUOTE.empty_table(), TRADE.empty_table())
    with pytest.raises(TapeflowError, match="quote table"):
        metrics(s, TRADE.empty_table(), TRADE.empty_table())


big = st.integers(1, 10**14)
size = st.integers(0, 10**15)


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.tuples(st.one_of(big, st.just(U)), size, st.one_of(big, st.just(U)), size),
                     max_size=20))
def test_microprice_equals_python_integers_at_btc_scale(rows: list) -> None:
    cols = [np.array([r[i] for r in rows], np.int64) for i in range(4)]
    assert microprice_nanos(*cols).tolist() == [microprice_reference(*r) for r in rows]


def ofi_reference(rows: list[tuple]) -> tuple[list[int], list[float]]:
    """Plain-Python Cont-Kukanov-Stoikov terms and squared log mid returns over changed quotes."""
    ofi, sq, prev = [], [], None
    for row in rows:
        b, qb, a, qa = row
        if prev is None or row == prev:
            ofi.append(0)
            sq.append(math.nan)
            prev = row
            continue
        pb, pqb, pa_, pqa = prev
        e = 0
        if U not in (b, pb):
            e += (qb if b >= pb else 0) - (pqb if b <= pb else 0)
        if U not in (a, pa_):
            e += (-qa if a <= pa_ else 0) + (pqa if a >= pa_ else 0)
        ofi.append(e)
        if U in (a, b, pa_, pb):
            sq.append(math.nan)
        else:
            sq.append(math.log((b + (a - b) // 2) / (pb + (pa_ - pb) // 2)) ** 2)
        prev = row
    return ofi, sq


quote_rows = st.lists(st.tuples(st.one_of(st.integers(90, 95), st.just(U)), st.integers(0, 3),
                                st.one_of(st.integers(96, 100), st.just(U)), st.integers(0, 3)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(rows=quote_rows, cut=st.integers(0, 30))
def test_quote_events_equal_the_formula_and_carry_state_across_calls(rows: list, cut: int) -> None:
    want_ofi, want_sq = ofi_reference(rows)
    cols = [np.array([r[i] for r in rows], np.int64) for i in range(4)]
    prev = np.zeros(5, np.int64)
    first = quote_events(*(c[:cut] for c in cols), prev)
    second = quote_events(*(c[cut:] for c in cols), prev)
    assert np.concatenate([first[1], second[1]]).tolist() == want_ofi
    got_sq = np.concatenate([first[2], second[2]])
    assert np.array_equal(got_sq, np.array(want_sq, dtype=np.float64), equal_nan=True)


def test_depth_counts_only_the_top_levels() -> None:
    assert depth_nanos(np.array([5, 7, 9, 1]), np.array([0, 3, 3, 4]), 2).tolist() == [12, 0, 1]


def _part(table: pa.Table, col: str, lo: int, hi: int) -> pa.Table:
    v = table.column(col).to_numpy()
    return table.filter(pa.array((v > lo) & (v <= hi)))


def live_run(s: pa.Table, q: pa.Table, t: pa.Table, cuts: list[int], *, pickled: bool = False) -> pa.Table:
    """Feed LiveMetrics the rows received in (cut_i-1, cut_i] batch by batch (snapshots by instant)."""
    live = LiveMetrics("1s", levels=10)
    out, lo = [], -(2**62)
    for hi in [*sorted(cuts), 2**62]:
        out.append(live.add(_part(s, "ts_event_ns", lo, hi), _part(q, "ts_recv_ns", lo, hi),
                            _part(t, "ts_recv_ns", lo, hi)))
        if pickled:
            live = pickle.loads(pickle.dumps(live))
        lo = hi
    out.append(live.close())
    return pa.concat_tables(out)


def _sorted(m: pa.Table) -> pa.Table:
    return m.sort_by([("venue", "ascending"), ("symbol", "ascending"), ("ts_event_ns", "ascending")])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_live_equals_batch_on_random_splits(data: st.DataObject) -> None:
    n_q = data.draw(st.integers(0, 40))
    recv = sorted(data.draw(st.lists(st.integers(0, 8 * S), min_size=n_q, max_size=n_q)))
    qrows = [(r, *data.draw(st.tuples(st.integers(90, 95), st.integers(0, 3), st.integers(96, 100),
                                      st.integers(0, 3))), data.draw(st.sampled_from([0, F_MAYBE_BAD_BOOK])))
             for r in recv]
    trecv = sorted(data.draw(st.lists(st.integers(0, 8 * S), max_size=30)))
    trows = [(r, data.draw(st.integers(0, 9)), data.draw(st.sampled_from([B, A, ord("N")]))) for r in trecv]
    grid = sorted(set(data.draw(st.lists(st.integers(1, 9), min_size=1, max_size=9))))
    srows = [(g * S, g * S - 1, g, [(90, g)], [(100, 1)], 0) for g in grid]
    # A second instrument with the same flow a little later: instruments never mix.
    late = 3 * S // 10
    s = pa.concat_tables([snaps(srows), snaps([(g + S, r + late, *x) for g, r, *x in srows], symbol="y")])
    q = pa.concat_tables([quotes(qrows), quotes([(r + late, *x) for r, *x in qrows], symbol="y")])
    t = pa.concat_tables([trades(trows), trades([(r + late, *x) for r, *x in trows], symbol="y")])
    q, t = (x.sort_by([("ts_recv_ns", "ascending")]) for x in (q, t))
    cuts = data.draw(st.lists(st.integers(0, 10 * S), max_size=5))
    same_rows(_sorted(live_run(s, q, t, cuts, pickled=data.draw(st.booleans()))), _sorted(metrics(s, q, t)))


def _signed_trade_volume(path: Path) -> int:
    """Buyer- minus seller-initiated BTC volume over every @trade line, in nanos, from the raw file."""
    total = Decimal(0)
    with gzip.open(path, "rt") as f:
        for line in f:
            if "@trade" in line:
                d = json.loads(line.split(" ", 1)[1])["data"]
                total += -Decimal(d["q"]) if d["m"] else Decimal(d["q"])
    return int(total * 1_000_000_000)


def test_binance_capture_live_equals_batch_and_cvd_matches_the_raw_trades(binance_tables: dict,
                                                                          binance_path: Path) -> None:
    deltas, trade = binance_tables["book_delta"], binance_tables["trade"]
    s = book_snapshots(deltas, levels=10, interval_ns=S)
    q = quotes_from_deltas(deltas)
    batch = metrics(s, q, trade)
    assert batch.num_rows == s.num_rows
    # Every trade is received before the last grid instant and the capture is within one UTC day.
    assert trade.column("ts_recv_ns").to_numpy().max() <= s.column("ts_event_ns").to_numpy().max()
    assert batch.column("cvd_nanos").to_numpy()[-1] == _signed_trade_volume(binance_path)
    # OFI summed over the samples is the OFI of the whole quote stream (no quote lost or counted twice).
    cols = [q.column(c).to_numpy() for c in ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos",
                                              "ask_size_nanos")]
    want_ofi = sum(ofi_reference(list(zip(*cols, strict=True)))[0])
    assert int(batch.column("ofi_nanos").to_numpy().sum()) == want_ofi
    # Real BTC prices (6.2e13 nanos) times sizes (1e9..1e11): the microprice is exact.
    best = [(r["bid_price_nanos"][0], r["bid_size_nanos"][0], r["ask_price_nanos"][0], r["ask_size_nanos"][0])
            for r in s.to_pylist()]
    assert batch.column("microprice_nanos").to_pylist() == [microprice_reference(*b) for b in best]
    lo, hi = int(q.column("ts_recv_ns").to_numpy().min()), int(s.column("ts_event_ns").to_numpy().max())
    cuts = np.random.default_rng(5).integers(lo, hi, 25).tolist()
    same_rows(_sorted(live_run(s, q, trade, cuts)), _sorted(batch))
