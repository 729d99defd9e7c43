"""tapeflow.book.l2: per-instrument replay, book_snapshots (F_LAST rows and time grid), quotes, and
the Binance bookTicker oracle on the real capture through both fast backends."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from kernels.reference import VALID, l2_replay_reference
from tapeflow.book.l2 import L2Book, book_snapshots, grid_rows, quotes_from_deltas, replay_l2
from tapeflow.errors import BookError, ConfigError
from tapeflow.schemas.records import (
    ASK,
    BID,
    BOOK_DELTA,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    L2_DELETE,
    L2_SET,
    UNDEF_PRICE,
)
from tests.conftest import need
from tests.kernels.l2_streams import random_walk

SEC = 1_000_000_000
USDM = "binance/usdm_btcusdt_20240808.gz"


def delta_table(
    stream: dict[str, np.ndarray], *, venue: str, symbol: str, ts0_ns: int = 0, step_ns: int = 1_000_000
) -> pa.Table:
    n = len(stream["side"])
    ts = ts0_ns + np.arange(n, dtype=np.int64) * step_ns
    return BOOK_DELTA.table(
        {
            "ts_event_ns": ts,
            "ts_recv_ns": ts + 7,
            "sequence": np.arange(n),
            "side": stream["side"],
            "action": stream["action"],
            "price_nanos": stream["price"],
            "size_nanos": stream["size"],
            "flags": stream["flags"],
        },
        constants={"venue": venue, "symbol": symbol},
    )


def small_book() -> pa.Table:
    """Snapshot at 0.2 s, one diff at 0.5 s, a delete at 3.7 s (hand-checked book below)."""
    rows = [  # ts, side, action, price, size, flags
        (200_000_000, BID, L2_SET, 100 * SEC, 5, F_SNAPSHOT),
        (200_000_000, ASK, L2_SET, 101 * SEC, 6, F_SNAPSHOT | F_LAST),
        (500_000_000, BID, L2_SET, 100 * SEC + SEC // 2, 2, F_LAST),
        (3_700_000_000, BID, L2_DELETE, 100 * SEC + SEC // 2, 0, F_LAST),
    ]
    cols = list(zip(*rows, strict=True))
    return BOOK_DELTA.table(
        {
            "ts_event_ns": cols[0],
            "ts_recv_ns": cols[0],
            "sequence": [10, 10, 11, 12],
            "side": cols[1],
            "action": cols[2],
            "price_nanos": cols[3],
            "size_nanos": cols[4],
            "flags": cols[5],
        },
        constants={"venue": "test", "symbol": "X"},
    )


def test_time_grid_carries_the_book_forward() -> None:
    snaps = book_snapshots(small_book(), levels=3, interval_ns=SEC)
    # 1 s .. 3 s carry the book of 0.5 s forward; 4 s (the first instant after the 3.7 s delete) shows it
    assert snaps.column("ts_event_ns").to_pylist() == [SEC, 2 * SEC, 3 * SEC, 4 * SEC]
    assert snaps.column("sequence").to_pylist() == [11, 11, 11, 12]
    assert snaps.column("bid_price_nanos").to_pylist() == [[100 * SEC + SEC // 2, 100 * SEC]] * 3 + [
        [100 * SEC]
    ]
    assert snaps.column("bid_size_nanos").to_pylist() == [[2, 5]] * 3 + [[5]]
    assert snaps.column("ask_price_nanos").to_pylist() == [[101 * SEC]] * 4
    assert snaps.column("flags").to_pylist() == [0, 0, 0, 0]
    assert snaps.column("levels").to_pylist() == [3, 3, 3, 3]


def test_grid_rows_uses_running_max_of_arrival_time() -> None:
    grid, rows = grid_rows(np.array([5, 12, 9, 31], np.int64), 10)
    assert grid.tolist() == [10, 20, 30, 40]  # up to the first instant at or after the last row
    # row 2 (ts 9) arrived after a row stamped 12: it is not "as of 10"
    assert rows.tolist() == [0, 2, 2, 3]


def test_no_grid_instant_precedes_the_first_row() -> None:
    # a snapshot stamped later than the diffs after it (venue clocks differ from capture clocks)
    grid, rows = grid_rows(np.array([25, 12, 31], np.int64), 10)
    assert grid.tolist() == [30, 40] and rows.min() >= 0


def test_quotes_after_each_f_last_row() -> None:
    q = quotes_from_deltas(small_book())
    assert q.column("sequence").to_pylist() == [10, 11, 12]
    assert q.column("bid_price_nanos").to_pylist() == [100 * SEC, 100 * SEC + SEC // 2, 100 * SEC]
    assert q.column("bid_size_nanos").to_pylist() == [5, 2, 5]
    assert q.column("ask_price_nanos").to_pylist() == [101 * SEC] * 3
    assert q.column("flags").to_pylist() == [0, 0, 0]


def test_unsynced_book_is_flagged_and_empty_side_is_undef() -> None:
    t = small_book().slice(2, 1)  # a diff with no snapshot before it
    q = quotes_from_deltas(t)
    assert q.column("flags").to_pylist() == [F_MAYBE_BAD_BOOK]
    assert q.column("ask_price_nanos").to_pylist() == [UNDEF_PRICE]
    assert q.column("ask_size_nanos").to_pylist() == [0]


def test_multi_symbol_snapshots_match_per_instrument_reference() -> None:
    a = delta_table(random_walk(21, 3_000, gap_frac=0.002, far_frac=0.05), venue="v1", symbol="AAA")
    b = delta_table(random_walk(22, 2_000, crossing=True), venue="v1", symbol="BBB", ts0_ns=500_000)
    c = delta_table(random_walk(23, 1_000), venue="v2", symbol="AAA", ts0_ns=250_000)
    mixed = pa.concat_tables([a, b, c]).sort_by([("ts_recv_ns", "ascending")])
    snaps = book_snapshots(mixed, levels=4)
    for (venue, symbol), alone in {("v1", "AAA"): a, ("v1", "BBB"): b, ("v2", "AAA"): c}.items():
        mine = snaps.filter((pa.compute.field("venue") == venue) & (pa.compute.field("symbol") == symbol))
        flags = alone.column("flags").to_numpy()
        rows = np.flatnonzero(flags & F_LAST)
        assert mine.num_rows == int(((flags & F_LAST) != 0).sum())
        cols = [alone.column(n).to_numpy() for n in ("side", "action", "price_nanos", "size_nanos", "flags")]
        ref = l2_replay_reference(*cols, levels=4, snapshot_rows=rows)
        want_bids = [[p for p in r if p != UNDEF_PRICE] for r in ref["snap_bid_px"].tolist()]
        want_asks = [[p for p in r if p != UNDEF_PRICE] for r in ref["snap_ask_px"].tolist()]
        assert mine.column("bid_price_nanos").to_pylist() == want_bids
        assert mine.column("ask_price_nanos").to_pylist() == want_asks
        bad = np.where(ref["snap_status"] != VALID, F_MAYBE_BAD_BOOK, 0)
        assert mine.column("flags").to_pylist() == bad.tolist()
        assert mine.column("sequence").to_pylist() == alone.column("sequence").to_numpy()[rows].tolist()


def test_live_book_in_micro_batches_equals_one_replay() -> None:
    t = delta_table(random_walk(24, 4_000, far_frac=0.1, drift_ticks=50), venue="v", symbol="S")
    whole = replay_l2(t, backend="reference").bbo
    book = L2Book()
    parts = [book.apply(t.slice(a, 333)).bbo for a in range(0, t.num_rows, 333)]
    for key in whole:
        assert np.array_equal(whole[key], np.concatenate([p[key] for p in parts])), key
    bids, asks = book.levels()
    assert (max(bids), bids[max(bids)]) == (whole["bid_px"][-1], whole["bid_sz"][-1])
    assert (min(asks), asks[min(asks)]) == (whole["ask_px"][-1], whole["ask_sz"][-1])


def test_bad_requests_raise() -> None:
    with pytest.raises(ConfigError, match="gpu"):
        replay_l2(small_book(), backend="gpu")
    with pytest.raises(BookError, match="book_delta"):
        replay_l2(small_book().drop_columns(["sequence"]))


def test_backends_agree_on_random_stream() -> None:
    t = delta_table(random_walk(25, 3_000, gap_frac=0.003, far_frac=0.1), venue="v", symbol="S")
    rows = np.arange(0, t.num_rows, 97)
    ref = replay_l2(t, levels=5, snapshot_rows=rows, backend="reference")
    for backend in ("numba", "jax"):
        got = replay_l2(t, levels=5, snapshot_rows=rows, backend=backend)
        for key in ref.bbo:
            assert np.array_equal(ref.bbo[key], got.bbo[key]), (backend, key)
        for key in ref.snaps:
            assert np.array_equal(ref.snaps[key], got.snaps[key]), (backend, key)


def _raw_comparable_bookticker_u(path: Path) -> list[int]:
    """``u`` of every bookTicker whose ``u`` is the ``u`` of a depth diff at/after the snapshot,
    read from the raw capture (independent of the decoder)."""
    depth_u, ticker_u, snap_id = set(), [], None
    with gzip.open(path, "rb") as fh:
        for line in fh:
            msg = orjson.loads(line.split(b" ", 1)[1])
            if "lastUpdateId" in msg:
                snap_id = msg["lastUpdateId"]
            stream = msg.get("stream", "")
            if stream.endswith("@depth@0ms"):
                depth_u.add(msg["data"]["u"])
            elif stream.endswith("@bookTicker"):
                ticker_u.append(msg["data"]["u"])
    depth_u = {u for u in depth_u if u >= snap_id}
    return [u for u in ticker_u if u in depth_u]


@pytest.mark.realdata
@pytest.mark.parametrize("backend", ["numba", "jax"])
def test_binance_bookticker_oracle(real_data: Path, backend: str) -> None:
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    path = need(real_data / USDM)
    wanted = _raw_comparable_bookticker_u(path)
    comparable = set(wanted)
    tables = merge(list(get_format("binance").decode([path])))
    quotes = quotes_from_deltas(tables["book_delta"], backend=backend)
    rebuilt = {s: i for i, s in enumerate(quotes.column("sequence").to_pylist())}
    ticker = tables["quote"]
    seen = matched = 0
    cols = {n: ticker.column(n).to_pylist() for n in ticker.column_names}
    qcols = {n: quotes.column(n).to_pylist() for n in quotes.column_names}
    for k, u in enumerate(cols["sequence"]):
        if u not in comparable:
            continue
        seen += 1
        i = rebuilt[u]
        same = all(
            cols[c][k] == qcols[c][i]
            for c in ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")
        )
        matched += same and qcols["flags"][i] == 0
    assert len(wanted) == 629
    assert (matched, seen) == (len(wanted), len(wanted))
