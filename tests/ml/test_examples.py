"""training_examples: hand-computed features and labels, label edges, no look-ahead, a simulator day."""

from __future__ import annotations

import math
import random

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest

from tapeflow.errors import TapeflowError
from tapeflow.ml import ExampleParams, feature_schema_hash, training_examples
from tapeflow.ml.examples import HASH_KEY, feature_names
from tapeflow.schemas.records import BOOK_SNAPSHOT, TRADE

S = 1_000_000_000
T0 = 1_700_000_000 * S
B, A, N = ord("B"), ord("A"), ord("N")
P = ExampleParams(levels=2, ofi_windows_s=(1, 2), vol_window_s=2, flow_windows_s=(2,), horizons_s=(1, 2),
                  alpha=1e-3)


def snaps(rows: list[tuple], venue: str = "v", symbol: str = "s") -> pa.Table:
    """rows: (grid_ns, [(bid, size)...], [(ask, size)...])."""
    return BOOK_SNAPSHOT.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
        "sequence": list(range(len(rows))),
        "bid_price_nanos": [[p for p, _ in r[1]] for r in rows],
        "bid_size_nanos": [[s for _, s in r[1]] for r in rows],
        "ask_price_nanos": [[p for p, _ in r[2]] for r in rows],
        "ask_size_nanos": [[s for _, s in r[2]] for r in rows],
        "flags": [0] * len(rows),
    }, constants={"venue": venue, "symbol": symbol, "levels": 10})


def trades(rows: list[tuple], venue: str = "v", symbol: str = "s") -> pa.Table:
    """rows: (recv_ns, size, side)."""
    n = len(rows)
    return TRADE.table({
        "ts_event_ns": [r[0] for r in rows], "ts_recv_ns": [r[0] for r in rows],
        "sequence": list(range(n)), "trade_id": [str(i) for i in range(n)], "price_nanos": [1000] * n,
        "size_nanos": [r[1] for r in rows], "aggressor_side": [r[2] for r in rows], "flags": [0] * n,
    }, constants={"venue": venue, "symbol": symbol})


BOOK = snaps([
    (T0, [(1000, 1), (999, 5)], [(1002, 3), (1003, 7)]),
    (T0 + S, [(1000, 4)], [(1002, 3)]),  # bid size 1 -> 4: OFI 4 - 1 - 3 + 3 = 3, mid unchanged
    (T0 + 2 * S, [(1002, 2)], [(1004, 6)]),  # both sides up: OFI +2 (new bid) +3 (old ask) = 5
    (T0 + 3 * S, [(1002, 2)], [(1004, 6)]),  # unchanged: no flow, no return
    (T0 + 4 * S, [(998, 1)], [(1000, 1)]),  # both down: OFI -2 (old bid) -1 (new ask) = -3
])
TRADES = trades([
    (T0 + S // 2, 10, B), (T0 + S, 4, A),  # instant T0+1s
    (T0 + 2 * S + S // 3, 7, B),  # instant T0+3s
    (T0 + 3 * S + 9 * S // 10, 100, N),  # unknown side: no flow
    (T0 + 4 * S + S // 2, 50, B),  # instant T0+5s: past the grid
])


def col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()


def test_hand_computed_features() -> None:
    t = training_examples(BOOK, TRADES, P)
    assert col(t, "mid_price_nanos") == [1001, 1001, 1003, 1003, 999]
    assert col(t, "spread_nanos") == [2, 2, 2, 2, 2]
    # floor((1000*3 + 1002*1)/4) = 1000; floor((1000*3 + 1002*4)/7) = floor(1001.14) = 1001;
    # floor((1002*6 + 1004*2)/8) = floor(1002.5) = 1002; floor((998 + 1000)/2) = 999
    assert col(t, "microprice_minus_mid_nanos") == [-1, 0, -1, -1, 0]
    assert col(t, "imbalance_l1") == [-0.5, 1 / 7, -0.5, -0.5, 0.0]
    assert col(t, "imbalance_l2") == [(6 - 10) / 16, 1 / 7, -0.5, -0.5, 0.0]
    assert col(t, "ofi_1s") == [0, 3, 5, 0, -3]
    assert col(t, "ofi_2s") == [0, 3, 8, 5, -3]
    up, down = abs(math.log(1003 / 1001)), abs(math.log(999 / 1003))
    assert col(t, "realized_vol_2s") == pytest.approx([0, 0, up, up, down], rel=1e-12)
    assert col(t, "trade_flow_2s") == [0, 6, 6, 7, 7]
    assert col(t, "warmed_up") == [False, False, True, True, True]


def test_hand_computed_labels_and_edges() -> None:
    t = training_examples(BOOK, TRADES, P)
    # h=1: next mid; the last row's horizon runs past the data -> absent
    assert col(t, "label_1s") == [0, 1, 0, -1, None]
    # h=2: mean of the next two mids; row 0: 1002/1001 - 1 = 0.000999 is flat within alpha = 0.001
    assert col(t, "label_2s") == [0, 1, -1, None, None]
    assert col(t, "smoothed_return_2s")[:3] == pytest.approx(
        [1002 / 1001 - 1, 1003 / 1001 - 1, 1001 / 1003 - 1])
    assert col(t, "return_2s")[:3] == pytest.approx([1003 / 1001 - 1, 1003 / 1001 - 1, 999 / 1003 - 1])
    assert all(math.isnan(x) for x in col(t, "return_2s")[3:])
    assert math.isnan(col(t, "return_1s")[4])


def test_schema_hash_in_metadata_and_stable() -> None:
    t = training_examples(BOOK, TRADES, P)
    assert t.schema.metadata[HASH_KEY].decode() == feature_schema_hash(P)
    assert feature_schema_hash(P) == feature_schema_hash(ExampleParams(**P.__dict__))
    assert feature_schema_hash(P) != feature_schema_hash(ExampleParams(**{**P.__dict__, "alpha": 2e-3}))
    for name in feature_names(P):
        assert name in t.schema.names


def test_refuses_bad_input() -> None:
    with pytest.raises(TapeflowError, match="one instrument"):
        training_examples(BOOK, trades([(T0, 1, B)], symbol="other"), P)
    off = snaps([(T0 + 1, [(1, 1)], [(2, 1)])])
    with pytest.raises(TapeflowError, match="grid"):
        training_examples(off, TRADES, P)
    with pytest.raises(TapeflowError, match="book_snapshot"):
        training_examples(TRADES, TRADES, P)


def test_book_inputs_by_hand() -> None:
    """Raw book inputs (deeplob): distances from the mid in the row's own tick, log sizes, mid change."""
    import dataclasses

    u = 1_000_000_000  # sizes are 1e-9 fixed point
    book = snaps([
        (T0, [(1000, 1 * u), (999, 5 * u)], [(1002, 3 * u), (1003, 7 * u)]),  # gaps 1, 2, 3: tick 1
        (T0 + S, [(1000, 4 * u)], [(1002, 3 * u)]),  # one gap of 2: tick 2 (the caveat: >= true tick)
        (T0 + 2 * S, [(1002, 2 * u)], [(1006, 6 * u)]),  # tick 4, mid 1004: change (1004 - 1001) / 4
    ])
    p = dataclasses.replace(P, book_levels=2)
    t = training_examples(book, TRADES.slice(0, 0), p)
    assert col(t, "book_bid_ticks_1") == [1.0, 0.5, 0.5]
    assert col(t, "book_bid_ticks_2")[0] == 2.0 and math.isnan(col(t, "book_bid_ticks_2")[1])
    assert col(t, "book_ask_ticks_1") == [1.0, 0.5, 0.5]
    assert col(t, "book_ask_ticks_2")[0] == 2.0
    assert col(t, "book_bid_logsize_1") == pytest.approx([math.log(2), math.log(5), math.log(3)])
    assert col(t, "book_ask_logsize_2") == pytest.approx([math.log(8), 0.0, 0.0])
    change = col(t, "book_mid_change_ticks")
    assert math.isnan(change[0]) and change[1:] == [0.0, 0.75]
    assert feature_schema_hash(dataclasses.replace(P, book_levels=0)) == feature_schema_hash(P)
    assert feature_schema_hash(p) != feature_schema_hash(P)
    with pytest.raises(TapeflowError, match="book_levels"):
        training_examples(book, TRADES.slice(0, 0), dataclasses.replace(P, book_levels=3))


@pytest.fixture(scope="module")
def sim_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table]:
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.simulator import simulate
    from tapeflow.wire.capture import merge

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    summary = simulate(seed, 1, 20 * 60 * S, tmp_path_factory.mktemp("sim"), "equity", progress=False)
    chunks: list = []
    snapshots, _ = snapshots_for_format("sim", list(summary.files), levels=10, interval_ns=S,
                                        on_chunk=chunks.append)
    return snapshots, merge(chunks)[TRADE.name]


def _replace(table: pa.Table, name: str, values: object) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    column = pa.array(values, field.type) if isinstance(values, np.ndarray) else values
    return table.set_column(i, field, column)


def _perturb_after(snapshots: pa.Table, trades_: pa.Table, t_ns: int) -> tuple[pa.Table, pa.Table]:
    """Every book row after t_ns takes another row's levels; every trade arriving after t_ns is resized,
    its side flipped, and one more trade is appended."""
    grid = snapshots.column("ts_event_ns").to_numpy()
    k = int(np.searchsorted(grid, t_ns, side="right"))
    later = np.arange(k, len(grid))
    order = np.concatenate([np.arange(k), later[::-1]])
    book_cols = ["bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos"]
    moved = snapshots.take(pa.array(order))
    perturbed = snapshots
    for c in book_cols:
        perturbed = _replace(perturbed, c, moved.column(c))
    recv = trades_.column("ts_recv_ns").to_numpy()
    first = int(np.argmax(recv > t_ns)) if (recv > t_ns).any() else len(recv)
    size = trades_.column("size_nanos").to_numpy().copy()
    side = trades_.column("aggressor_side").to_numpy().copy()
    size[first:] = size[first:] * 3 + 1
    side[first:] = np.where(side[first:] == B, A, B)
    tr = _replace(_replace(trades_, "size_nanos", size), "aggressor_side", side)
    extra = _replace(tr.slice(len(recv) - 1, 1), "ts_recv_ns", np.array([int(recv.max()) + 1]))
    return perturbed, pa.concat_tables([tr, extra])


def test_no_look_ahead(sim_day: tuple[pa.Table, pa.Table]) -> None:
    """Features, and with ``book_levels`` the raw book inputs and the deeplob model's windows of them."""
    from tapeflow.ml.dataset import Scaler, segment, windows

    p = ExampleParams(book_levels=10)
    snapshots, trades_ = sim_day
    base = training_examples(snapshots, trades_, p)
    seg = segment(base, 10, p, "base")
    assert seg.book is not None and seg.book.shape == (base.num_rows, 41)
    scaler = Scaler.fit(seg.book[: len(seg.book) // 4])  # fixed: the windows alone are compared
    grid = snapshots.column("ts_event_ns").to_numpy()
    recv = trades_.column("ts_recv_ns").to_numpy()
    # decision times just before a trade arrives (so a one-step look-ahead would see it) and mid-day
    picks = [recv[len(recv) // 4], recv[len(recv) // 2], recv[3 * len(recv) // 4]]
    times = [int(grid[np.searchsorted(grid, r, side="left") - 1]) for r in picks]
    times.append(int(grid[len(grid) // 2]))
    for t_ns in times:
        book2, trades2 = _perturb_after(snapshots, trades_, t_ns)
        other = training_examples(book2, trades2, p)
        upto = int(np.searchsorted(grid, t_ns, side="right"))
        for name in feature_names(p):
            a = base.column(name).to_numpy()[:upto]
            b = other.column(name).to_numpy()[:upto]
            assert a.tobytes() == b.tobytes(), f"{name} at or before t changed when only later input did"
        rows = np.arange(upto)
        seg2 = segment(other, 10, p, "other")
        assert (windows(scaler.transform(seg.book), rows, 32).tobytes()
                == windows(scaler.transform(seg2.book), rows, 32).tobytes())
        # the perturbation reaches the future: the labels' returns and later features move
        before = slice(upto - 60, upto)
        assert not np.array_equal(base.column("smoothed_return_60s").to_numpy()[before],
                                  other.column("smoothed_return_60s").to_numpy()[before])
        assert base.column("ofi_60s").to_pylist()[upto:] != other.column("ofi_60s").to_pylist()[upto:]
        assert not np.array_equal(base.column("book_bid_logsize_3").to_numpy()[upto:],
                                  other.column("book_bid_logsize_3").to_numpy()[upto:])


def test_book_inputs_joined_from_the_lake_equal_the_library_and_see_nothing_later(
        sim_day: tuple[pa.Table, pa.Table]) -> None:
    """The ``model`` asset's join (lake rows of the default dataset + the partition's snapshots) gives
    the library's ``book_levels`` = 10 table, hash included; no look-ahead, as in the test above:
    every snapshot after ``t`` perturbed, the joined rows up to ``t`` stay bit-identical."""
    from tapeflow.ml.rows import example_rows, examples_from_rows, with_book_inputs

    snapshots, trades_ = sim_day
    p = ExampleParams(book_levels=10)
    want = training_examples(snapshots, trades_, p)

    def lake(book: pa.Table, tr: pa.Table) -> pa.Table:  # written to the record and read back
        return examples_from_rows(example_rows(training_examples(book, tr), "sim", "X"))

    got = with_book_inputs(lake(snapshots, trades_), snapshots, 10)
    assert got.schema.metadata[HASH_KEY] == feature_schema_hash(p).encode() == want.schema.metadata[HASH_KEY]
    assert got.column_names == want.column_names
    for name in want.column_names:  # NaN where the book is one-sided, null where no label: equal too
        assert got.column(name).type == want.column(name).type, name
        np.testing.assert_array_equal(got.column(name).to_numpy(zero_copy_only=False),
                                      want.column(name).to_numpy(zero_copy_only=False), err_msg=name)
    grid = snapshots.column("ts_event_ns").to_numpy()
    for t_ns in (int(grid[len(grid) // 3]), int(grid[2 * len(grid) // 3])):
        book2, trades2 = _perturb_after(snapshots, trades_, t_ns)
        other = with_book_inputs(lake(book2, trades2), book2, 10)
        upto = int(np.searchsorted(grid, t_ns, side="right"))
        for name in feature_names(p):
            a, b = got.column(name).to_numpy()[:upto], other.column(name).to_numpy()[:upto]
            assert a.tobytes() == b.tobytes(), f"{name} at or before t changed when only later input did"
        assert not np.array_equal(got.column("book_ask_logsize_2").to_numpy()[upto:],
                                  other.column("book_ask_logsize_2").to_numpy()[upto:])
    # examples not built from these snapshot rows (a rebuilt book): refused, saying what to do
    with pytest.raises(TapeflowError, match="rematerialize training_examples"):
        with_book_inputs(lake(snapshots, trades_), snapshots.slice(1), 10)
    with pytest.raises(TapeflowError, match="default dataset"):
        with_book_inputs(want, snapshots, 10)


def test_simulator_day_table(sim_day: tuple[pa.Table, pa.Table]) -> None:
    snapshots, trades_ = sim_day
    t = training_examples(snapshots, trades_, source="sim/equity/1")
    p = ExampleParams()
    expected = ["ts_event_ns", "warmed_up", "two_sided", *feature_names(p)]
    for h in p.horizons_s:
        expected += [f"return_{h}s", f"smoothed_return_{h}s", f"label_{h}s"]
    assert t.schema.names == expected
    assert t.num_rows == snapshots.num_rows > 1000
    two_sided = t.column("two_sided").to_numpy(zero_copy_only=False)
    print(f"one-sided book rows: {int((~two_sided).sum())} of {t.num_rows}")
    warm = t.filter(pa.compute.and_(t.column("warmed_up"), t.column("two_sided")))
    assert warm.num_rows > 0.8 * t.num_rows
    for name in feature_names(p):
        values = warm.column(name).to_numpy()
        assert not np.isnan(values).any(), name
    for h in p.horizons_s:
        labels = t.column(f"label_{h}s").to_numpy(zero_copy_only=False)
        # absent past the end and at one-sided rows; present everywhere else but where the whole
        # window is one-sided
        ts = t.column("ts_event_ns").to_numpy()
        must_lack = (ts + h * S > ts[-1]) | ~two_sided
        assert np.isnan(labels[must_lack]).all()
        assert np.isnan(labels[~must_lack]).mean() < 0.05
        known = labels[~np.isnan(labels)]
        shares = {c: float(np.mean(known == v)) for c, v in (("down", -1), ("flat", 0), ("up", 1))}
        print(f"label_{h}s class shares {shares}")
        assert sum(shares.values()) == pytest.approx(1.0)
    assert t.schema.metadata[b"tapeflow.source"] == b"sim/equity/1"
