"""BookStage (the live flow's incremental book) against the batch rebuild and the venue's own BBO.

Parity is row for row with ``tapeflow.book.rebuild.snapshots_for_format`` (what ``tapeflow book`` runs:
the same stage over whole tables) whatever the micro-batch size; the Binance bookTicker is an
independent oracle of the rebuilt BBO, and ``test_grid.py`` checks the stage against builders that
do not use it (``grid_rows`` over the reference books).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.book.l2 import quotes_from_deltas
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.book.stage import BookStage
from tapeflow.errors import BookError, ConfigError
from tapeflow.schemas.records import F_MAYBE_BAD_BOOK
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.book.test_shape import _l3
from tests.flows.flowdata import binance_prefix, raw_comparable_bookticker_u, sim_market

SECOND = 1_000_000_000


def _feed(stage: BookStage, tables: dict[str, pa.Table], batch_rows: int, *, close: bool = True
          ) -> dict[str, pa.Table]:
    """Feed every table in slices of ``batch_rows`` rows (the same positions in each table)."""
    outs = []
    n = max(t.num_rows for t in tables.values())
    for lo in range(0, n, batch_rows):
        outs.append(stage.apply({k: t.slice(lo, batch_rows) for k, t in tables.items() if lo < t.num_rows}))
    if close:
        outs.append(stage.close())
    return {k: pa.concat_tables([o[k] for o in outs]) for k in ("quote", "book_snapshot")}


@pytest.fixture(scope="module")
def binance() -> tuple[Path, dict[str, pa.Table]]:
    path = binance_prefix()
    return path, merge(list(get_format("binance").decode([path])))


@pytest.mark.realdata
@pytest.mark.parametrize("batch_rows", [5000, 1234])
def test_l2_grid_snapshots_equal_batch_rebuild(binance: tuple[Path, dict[str, pa.Table]],
                                               batch_rows: int) -> None:
    path, tables = binance
    want, events = snapshots_for_format("binance", [path], levels=10, interval_ns=SECOND)
    got = _feed(BookStage("l2"), {"book_delta": tables["book_delta"]}, batch_rows)["book_snapshot"]
    assert events == tables["book_delta"].num_rows
    # the grid: every second from the first published arrival to just past the last one
    published = tables["book_delta"].filter(pa.compute.bit_wise_and(tables["book_delta"]["flags"], 128)
                                            .cast(pa.bool_()))
    recv = np.maximum.accumulate(published["ts_recv_ns"].to_numpy())
    assert got.num_rows == -(-int(recv[-1]) // SECOND) - (-(-int(recv[0]) // SECOND)) + 1
    assert got.equals(want)


@pytest.mark.realdata
@pytest.mark.parametrize("batch_rows", [1, 7])
def test_l2_small_batches_equal_batch_rebuild(batch_rows: int) -> None:
    path = binance_prefix(3000)
    tables = merge(list(get_format("binance").decode([path])))
    want, _ = snapshots_for_format("binance", [path], levels=10, interval_ns=SECOND)
    got = _feed(BookStage("l2"), {"book_delta": tables["book_delta"]}, batch_rows)
    assert want.num_rows > 5
    assert got["book_snapshot"].equals(want)
    assert got["quote"].equals(_feed(BookStage("l2"), {"book_delta": tables["book_delta"]}, 5000)["quote"])


@pytest.mark.realdata
def test_bbo_changes_equal_batch_quotes_and_the_venue_bookticker(binance: tuple[Path, dict[str, pa.Table]]
                                                                 ) -> None:
    path, tables = binance
    got = _feed(BookStage("l2"), {"book_delta": tables["book_delta"]}, 5000)["quote"]
    # batch quotes after every published row, reduced to the rows where something changed
    every = quotes_from_deltas(tables["book_delta"])
    cols = np.stack([every[c].to_numpy().astype(np.int64) for c in
                     ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos", "flags")])
    changed = np.concatenate([[True], np.any(cols[:, 1:] != cols[:, :-1], axis=0)])
    assert got.equals(every.filter(pa.array(changed)))
    # the venue's bookTicker at update id u equals the rebuilt BBO as of the depth update u
    wanted = raw_comparable_bookticker_u(path)
    ticker = tables["quote"]
    seq = got["sequence"].to_numpy()
    matched = seen = 0
    comparable = set(wanted)
    for k, u in enumerate(ticker["sequence"].to_pylist()):
        if u not in comparable:
            continue
        seen += 1
        i = int(np.searchsorted(seq, u, side="right")) - 1
        row = {c: got[c][i].as_py() for c in got.column_names}
        same = all(row[c] == ticker[c][k].as_py()
                   for c in ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos"))
        matched += same and not row["flags"]
    assert len(wanted) > 20
    assert (matched, seen) == (len(wanted), len(wanted))


@pytest.fixture(scope="module")
def sim() -> tuple[pa.Table, int, dict[str, pa.Table]]:
    paths = list(sim_market())
    want, events = snapshots_for_format("sim", paths, levels=10, interval_ns=SECOND)
    return want, events, merge(list(get_format("sim").decode(paths)))


@pytest.mark.parametrize("batch_rows", [5000, 777])
def test_l3_sim_snapshots_equal_batch_rebuild(sim: tuple[pa.Table, int, dict[str, pa.Table]],
                                              batch_rows: int) -> None:
    want, events, tables = sim
    # both the order events and the L2 rows aggregated from them: auto must choose L3, as batch does
    got = _feed(BookStage("auto"), tables, batch_rows)["book_snapshot"]
    got = got.sort_by([("symbol", "ascending"), ("ts_event_ns", "ascending")])
    assert events == tables["order_event"].num_rows
    assert set(got["symbol"].to_pylist()) == {"SIM-BTCUSDT", "SIM-ETHUSDT"}
    assert got.equals(want)


@pytest.mark.parametrize("batch_rows", [1, 7])
def test_l3_small_batches_and_pickled_state(sim: tuple[pa.Table, int, dict[str, pa.Table]],
                                           batch_rows: int) -> None:
    first_symbol = pa.compute.equal(sim[2]["order_event"]["symbol"], "SIM-BTCUSDT")
    events = sim[2]["order_event"].filter(first_symbol).slice(0, 6000)
    whole = _feed(BookStage("l3"), {"order_event": events}, 6000)
    one = _feed(BookStage("l3"), {"order_event": events}, batch_rows)
    # a recovery snapshot taken mid-stream continues exactly where the original stood
    stage = BookStage("l3")
    first = _feed(stage, {"order_event": events.slice(0, 3001)}, 500, close=False)
    resumed = pickle.loads(pickle.dumps(stage.snapshot()))
    rest = _feed(resumed, {"order_event": events.slice(3001)}, 500)
    split = pa.concat_tables([first["book_snapshot"], rest["book_snapshot"]])
    assert whole["book_snapshot"].num_rows >= 5
    assert whole["book_snapshot"].equals(l3_book_snapshots(events, levels=10, interval_ns=SECOND))
    assert one["book_snapshot"].equals(whole["book_snapshot"])
    assert one["quote"].equals(whole["quote"])
    assert split.equals(whole["book_snapshot"])
    assert pa.concat_tables([first["quote"], rest["quote"]]).equals(whole["quote"])


@pytest.mark.realdata
def test_per_event_snapshots_and_a_made_gap_equal_batch(tmp_path: Path) -> None:
    lines = binance_prefix(3000).read_bytes().splitlines(keepends=True)
    depth = [i for i, line in enumerate(lines) if b"@depth" in line]
    gapped = tmp_path / "gap.txt"
    gapped.write_bytes(b"".join(line for i, line in enumerate(lines) if i != depth[len(depth) // 2]))
    tables = merge(list(get_format("binance").decode([gapped])))
    want, _ = snapshots_for_format("binance", [gapped], levels=5, interval_ns=None)
    got = _feed(BookStage("l2", levels=5, interval_ns=None), {"book_delta": tables["book_delta"]}, 333)
    bad = got["book_snapshot"]["flags"].to_numpy() & F_MAYBE_BAD_BOOK
    assert bad.any()  # the deleted diff broke the pu chain: rows until the resync are flagged
    assert got["book_snapshot"].equals(want)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="l4"):
        BookStage("l4")
    with pytest.raises(ConfigError, match="-1"):
        BookStage("l2", interval_ns=-1)
    with pytest.raises(ConfigError, match="levels"):
        BookStage("l2", levels=0)
    with pytest.raises(ConfigError, match="sometimes"):
        BookStage("l2", quotes="sometimes")
    with pytest.raises(ConfigError, match="gpu"):
        BookStage("l2", backend="gpu")


def test_bad_tables_are_refused_with_a_book_error() -> None:
    with pytest.raises(BookError, match="order_event"):
        BookStage("l3").replay({"order_event": _l3().drop_columns(["order_id"])})
    with pytest.raises(BookError, match="order_id"):
        BookStage("l3").apply({"order_event": _l3().drop_columns(["order_id"])})


def test_heartbeats_emit_the_pending_book_and_close_does_not_repeat_them() -> None:
    stage = BookStage("l3", levels=3, interval_ns=SECOND)
    fed = stage.apply({"order_event": _l3()})
    assert fed["book_snapshot"]["ts_event_ns"].to_pylist() == [SECOND, 2 * SECOND, 3 * SECOND]
    marks = pa.table({"venue": ["v", "v"], "symbol": ["L3", "unknown"],
                      "ts_recv_ns": [6 * SECOND, 9 * SECOND]})
    beat = stage.advance_all(marks)
    # the grid goes on with the book after the last event (3.5 s) while the feed's clock moves
    assert beat["ts_event_ns"].to_pylist() == [4 * SECOND, 5 * SECOND]
    assert beat["bid_price_nanos"].to_pylist() == [[101 * SECOND, 100 * SECOND, 99 * SECOND]] * 2
    assert beat["sequence"].to_pylist() == [5, 5]
    assert stage.close()["book_snapshot"].num_rows == 0  # 4 s, the batch grid's last, is out already
    assert stage.apply({"order_event": _l3()})["book_snapshot"].num_rows == 0  # closed: no more rows
