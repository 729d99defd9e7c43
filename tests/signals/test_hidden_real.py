"""Hidden executions on real data: LOBSTER AMZN 2012-06-21, whose type-5 rows (executions of
hidden limit orders) are the truth, scored on the pure level view of the same day.

The L2 view an ordinary price-level feed gives (what ``detect_tables`` is fed here):

* trades: time, price and size only. LOBSTER's trade type (4 visible, 5 hidden) is gone (the
  ``F_HIDDEN`` flag cleared), so are the order id and the direction (the aggressor set to unknown:
  the detector must infer the side from the quote), the sequence and the trade id;
* the book: the orderbook file's rows stamped with their message's time, a row that equals the
  one before dropped (a level feed publishes changes; a hidden execution changes nothing, so its
  unchanged row would otherwise mark the trade), no sequence numbers and no flags. Rows and trades
  at one nanosecond are not ordered: the detector reads the book received strictly before a print.

Two views are scored: one book row per change (a full-depth level feed, top level here) and the
same book sampled on the pipeline's 100 ms grid (what ``tapeflow signals detect`` and the asset
run on). Matching (docs/signals.md): an alert hits when a type-5 row has its price and lies within
1 ms of it; a type-5 row is found when such an alert exists (a print merges the hidden rows of one
time and price, so one alert may find several). The truth count is read from the raw CSV.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.book.grid import grid_rows
from tapeflow.schemas.records import BID, F_HIDDEN, NO_SIDE
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_tables
from tapeflow.signals.score import calibration
from tapeflow.wire.capture import merge
from tapeflow.wire.registry import get_format
from tests.conftest import need

FOLDER = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1"
TOLERANCE_NS = 1_000_000
GRID_NS = 100_000_000


def _l2_view(tables: dict[str, pa.Table]) -> tuple[pa.Table, pa.Table]:
    tr = tables["trade"]
    n = tr.num_rows
    trades = _replace(tr, aggressor_side=np.full(n, NO_SIDE, np.uint8), flags=np.zeros(n, np.uint8),
                      sequence=np.full(n, -1, np.int64), trade_id=[""] * n)
    bk = tables["book_snapshot"]
    cols = [bk.column(c).combine_chunks() for c in
            ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")]
    same = np.ones(bk.num_rows, bool)
    for col in cols:
        values = col.to_pylist()
        same[1:] &= np.array([a == b for a, b in zip(values[1:], values[:-1], strict=True)])
    same[0] = False
    book = bk.filter(pa.array(~same))
    g = book.num_rows
    book = _replace(book, sequence=np.full(g, -1, np.int64), flags=np.zeros(g, np.uint8))
    return trades, book


def _replace(table: pa.Table, **columns) -> pa.Table:
    for name, values in columns.items():
        field = table.schema.field(name)
        table = table.set_column(table.schema.get_field_index(name), field, pa.array(values, field.type))
    return table


def _on_grid(book: pa.Table) -> pa.Table:
    """The book path's grid rule (``tapeflow.book.grid.grid_rows``): each instant, the last row by then."""
    instants, picks = grid_rows(book.column("ts_recv_ns").to_numpy(), GRID_NS)
    return _replace(book.take(pa.array(picks)), ts_event_ns=instants, ts_recv_ns=instants)


def _score(alerts: pa.Table, truth_ns: np.ndarray, truth_px: np.ndarray, truth_side: np.ndarray):
    a_ns = alerts.column("ts_event_ns").to_numpy()
    a_px = alerts.column("price_nanos").to_numpy()
    a_side = alerts.column("side").to_numpy()
    hit = np.zeros(len(a_ns), bool)
    found = np.zeros(len(truth_ns), bool)
    side_ok = np.zeros(len(truth_ns), bool)
    by_price: dict[int, list[int]] = {}
    for j, p in enumerate(a_px.tolist()):
        by_price.setdefault(p, []).append(j)
    for i, (t, p) in enumerate(zip(truth_ns.tolist(), truth_px.tolist(), strict=True)):
        near = [j for j in by_price.get(p, []) if abs(int(a_ns[j]) - t) <= TOLERANCE_NS]
        if near:
            found[i] = True
            hit[near] = True
            side_ok[i] = a_side[min(near, key=lambda j: abs(int(a_ns[j]) - t))] == truth_side[i]
    return hit, found, side_ok


def test_hidden_executions_against_lobster_type_5(real_data, capsys):
    folder = need(real_data / FOLDER)
    raw = np.loadtxt(next(folder.glob("*_message_1.csv")), delimiter=",", usecols=(1,), dtype=np.int64)
    tables = merge(list(get_format("lobster").decode(sorted(folder.glob("*.csv")))))
    tr = tables["trade"]
    truth = (tr.column("flags").to_numpy() & F_HIDDEN) > 0
    assert truth.sum() == (raw == 5).sum() == 2445, "the decoder keeps every type-5 row, and only those"
    truth_ns = tr.column("ts_event_ns").to_numpy()[truth]
    truth_px = tr.column("price_nanos").to_numpy()[truth]
    # Direction names the hidden resting order: the decoder's aggressor is its opposite
    truth_side = np.where(tr.column("aggressor_side").to_numpy()[truth] == BID, -1, 1)

    trades, book = _l2_view(tables)
    assert pc.sum(pc.bit_wise_and(trades.column("flags"), F_HIDDEN)).as_py() == 0
    thresholds = load(DEFAULT_PATH)
    results = {}
    for view, snaps in (("per change", book), ("100 ms grid", _on_grid(book))):
        got = detect_tables(trades, snaps, thresholds)
        alerts = got.filter(pc.equal(got.column("kind"), "hidden"))
        hit, found, side_ok = _score(alerts, truth_ns, truth_px, truth_side)
        results[view] = (alerts, hit, found, side_ok)
        with capsys.disabled():
            print(f"\nAMZN hidden executions, {view}: {len(hit)} alerts, precision {hit.mean():.3f}, "
                  f"recall {found.mean():.3f} of {len(found)} type-5 rows, side right on "
                  f"{side_ok[found].mean():.3f} of those found")
    _, hit, found, side_ok = results["per change"]
    # measured: precision 1.000, recall 0.988, side 0.84 (docs/signals.md)
    assert hit.mean() >= 0.97 and found.mean() >= 0.95, (hit.mean(), found.mean())
    assert side_ok[found].mean() >= 0.75
    alerts, hit, found, _ = results["100 ms grid"]
    # measured: precision 0.755, recall 0.843: a displayed order that improves the touch and
    # trades before the next grid row looks hidden, and the stale touch hides real ones
    assert hit.mean() >= 0.70 and found.mean() >= 0.78, (hit.mean(), found.mean())

    # confidence: fitted on the morning (before the day's middle), judged on the afternoon
    ts = alerts.column("ts_event_ns").to_numpy()
    day = tr.column("ts_event_ns").to_numpy()
    middle = (int(day.min()) + int(day.max())) // 2
    afternoon = ts >= middle
    _, ece = calibration(alerts.column("confidence").to_numpy()[afternoon], hit[afternoon])
    with capsys.disabled():
        print(f"100 ms grid, afternoon ({afternoon.sum()} alerts): ECE {ece:.4f}")
    assert ece <= 0.05, ece
