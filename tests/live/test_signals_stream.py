"""The streaming detectors (``tapeflow.signals.stream``) fed in micro-batches equal the batch
detectors over the whole input: the look-back is cut (whole baseline blocks) and refractory
periods chain across batch cuts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.schemas.records import ASK, BID, BOOK_SNAPSHOT
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_tables
from tapeflow.signals.stream import StreamingSignals
from tests.signals.prints import print_table

S = 1_000_000_000
KEY = [(c, "ascending") for c in ("kind", "side", "ts_event_ns", "detector")]


def _trades(seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 3000  # 2.5 h of ordinary prints, one every 3 s: the look-back (5 blocks of 125) is cut often
    ts = list(np.arange(n) * 3 * S)
    side = list(rng.choice([BID, ASK], n))
    size = list(np.maximum(1, rng.lognormal(np.log(100), 0.3, n)).astype(np.int64))
    price = [10_000] * n
    # sweeps: pairs 20 s apart (inside the 60 s refractory period) all through the day, so a batch
    # cut often falls between the alert and the candidate it suppresses
    for k, t0 in enumerate(range(600, 8800, 700)):
        for dt in (0, 20):
            ts += [(t0 + dt) * S + S // 2] * 5
            side += [BID if k % 2 else ASK] * 5
            size += [300] * 5
            price += [10_000 + i for i in range(5)]
    return print_table(ts, price, size, side)


@pytest.mark.parametrize("batch_rows", [97, 1000])
def test_streaming_whales_equal_the_batch_detector(batch_rows: int) -> None:
    thresholds = load(DEFAULT_PATH)
    trades = _trades(5)
    batch = detect_tables(trades, BOOK_SNAPSHOT.empty_table(), thresholds).sort_by(KEY)
    stream = StreamingSignals("sim", "SIMA")
    parts = [stream.add(trades.slice(i, batch_rows), None, thresholds)
             for i in range(0, trades.num_rows, batch_rows)]
    parts.append(stream.add(None, None, thresholds, final=True))
    live = pa.concat_tables(parts).sort_by(KEY)
    print(f"{batch.num_rows} alerts, {stream.dropped_prints} prints cut from the look-back")
    assert stream.dropped_prints > 0  # the look-back was cut
    assert batch.num_rows >= 10
    # the refractory period suppressed the second of each pair: fewer alerts than candidates
    assert batch.num_rows < 2 * len(range(600, 8800, 700))
    assert live.to_pylist() == batch.to_pylist()


GRID_NS = 100_000_000
LEVELS = 11


def _grid(seed: int) -> pa.Table:
    # 8 min of a 100 ms grid (4800 rows: the 5-block look-back of 600 rows is cut), with noise in
    # the depth and a pull of six bid levels every 20 s, some a second apart (inside the 5 s
    # refractory period) so a cut can fall between an alert and the candidate it suppresses
    rng = np.random.default_rng(seed)
    rows = 4800
    k = np.arange(LEVELS)
    bid_p = np.tile(1000 - k, (rows, 1))
    ask_p = np.tile(1001 + k, (rows, 1))
    bid_s = rng.integers(8, 13, (rows, LEVELS))
    ask_s = rng.integers(8, 13, (rows, LEVELS))
    for start in range(300, rows - 40, 200):
        bid_s[start:start + 5, 1:7] = 0
        if start % 400 == 300:
            bid_s[start + 10:start + 15, 1:7] = 0
    ts = 1_704_205_800_000_000_000 + np.arange(rows) * GRID_NS
    cols = {"ts_event_ns": ts, "ts_recv_ns": ts + 1000, "sequence": np.arange(rows),
            "levels": np.full(rows, LEVELS, np.uint16), "flags": np.zeros(rows, np.uint8),
            "bid_price_nanos": list(bid_p), "bid_size_nanos": list(bid_s),
            "ask_price_nanos": list(ask_p), "ask_size_nanos": list(ask_s)}
    return BOOK_SNAPSHOT.table(cols, constants={"venue": "sim", "symbol": "SIMA"})


@pytest.mark.parametrize("batch_rows", [37, 700])
def test_streaming_withdrawals_equal_the_batch_detector(batch_rows: int) -> None:
    thresholds = load(DEFAULT_PATH)
    grid = _grid(9)
    # detect_tables runs withdrawals only for instruments with trades: one ordinary print
    one = _trades(5).slice(0, 1)
    batch = detect_tables(one, grid, thresholds)
    batch = batch.filter(pc.equal(batch.column("kind"), "withdrawal")).sort_by(KEY)
    stream = StreamingSignals("sim", "SIMA")
    parts = [stream.add(one if i == 0 else None, grid.slice(i, batch_rows), thresholds)
             for i in range(0, grid.num_rows, batch_rows)]
    parts.append(stream.add(None, None, thresholds, final=True))
    live = pa.concat_tables(parts)
    live = live.filter(pc.equal(live.column("kind"), "withdrawal")).sort_by(KEY)
    print(f"{batch.num_rows} withdrawals, {stream.dropped_rows} grid rows cut from the look-back")
    assert stream.dropped_rows > 0
    assert batch.num_rows >= 10
    assert live.to_pylist() == batch.to_pylist()


def test_the_stream_carries_the_withdrawal_baseline_instead_of_recomputing_it(monkeypatch) -> None:
    # each 600-row block's usual depth is computed once per side, and the look-back is never run
    # through block_quantiles again (0.5 CPU s per batch, 85 % of the stage's cost, when it was)
    # stream_absorption is imported before the patch so that it keeps the real _median: the count
    # below is the withdrawal's and the L3 detectors' medians, not absorption's own carried cache
    # (which binds the name at import, so the count otherwise depended on which test imported it first)
    from tapeflow.signals import stream_absorption, withdrawal  # noqa: F401

    thresholds = load(DEFAULT_PATH)
    grid = _grid(9)
    one = _trades(5).slice(0, 1)
    batch = detect_tables(one, grid, thresholds)
    batch = batch.filter(pc.equal(batch.column("kind"), "withdrawal")).sort_by(KEY)
    medians: list[int] = []
    real_median = withdrawal._median

    def counted(x: np.ndarray) -> float:
        medians.append(len(x))
        return real_median(x)

    def refused(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the stream recomputed the look-back's baseline")

    monkeypatch.setattr(withdrawal, "_median", counted)
    monkeypatch.setattr(withdrawal, "block_quantiles", refused)
    stream = StreamingSignals("sim", "SIMA")
    parts = [stream.add(one if i == 0 else None, grid.slice(i, 100), thresholds)
             for i in range(0, grid.num_rows, 100)]
    parts.append(stream.add(None, None, thresholds, final=True))
    live = pa.concat_tables(parts)
    live = live.filter(pc.equal(live.column("kind"), "withdrawal")).sort_by(KEY)
    blocks = -(-grid.num_rows // 600)
    print(f"{len(parts)} batches, {len(medians)} block medians for {blocks} blocks x 2 sides")
    assert stream.dropped_rows > 0
    # per block: the withdrawal's usual depth per side, and the L3 detectors' median depth at the
    # touch (tapeflow.signals.stream_orders, the same carried arithmetic)
    assert len(medians) == 3 * blocks
    assert live.to_pylist() == batch.to_pylist()


@pytest.mark.parametrize("rows", [1, 599, 600, 2401, 4200, 7001])
def test_the_carried_block_median_is_block_quantiles_bit_for_bit(rows: int) -> None:
    from kernels.signals_windows import block_quantiles
    from tapeflow.signals.withdrawal import BlockBaseline, block_medians

    seed = int(np.random.default_rng().integers(1 << 31))
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    # fractional depths of many magnitudes and some NaN: the medians' arithmetic must match, not
    # just land on the same integers
    then = rng.lognormal(20, 3, rows) * rng.choice([1.0, 1 / 3, 0.1], rows)
    then[rng.random(rows) < 0.05] = np.nan
    want = block_quantiles(then, 600, 4, (0.5,))[:, 0]
    got = BlockBaseline().usual(1, then, 0, 2)
    assert np.array_equal(got, want, equal_nan=True)
    # and the NumPy block medians of usual_depth (walls, spikes) and the stealth baselines
    assert np.array_equal(block_medians(then, 600, 4), want, equal_nan=True)
    stealth = block_quantiles(then, 60, 10, (0.5,))[:, 0]
    assert np.array_equal(block_medians(then, 60, 10), stealth, equal_nan=True)


def test_a_look_back_not_cut_on_a_block_is_refused() -> None:
    from tapeflow.signals.withdrawal import BlockBaseline

    with pytest.raises(ValueError, match="not on a 600-row block"):
        BlockBaseline().usual(1, np.ones(1200), 1207, 2)


def test_the_stream_computes_band_depths_of_new_grid_rows_only(monkeypatch) -> None:
    # each batch runs band_depths over its new rows and the lag + 1 rows they look back on, not the
    # whole 5-block look-back (13 of the stage's 24 ms per 5,000-event batch when it did)
    # stream_absorption is imported before the patch so that it keeps the real _median: the count
    # below is the withdrawal's and the L3 detectors' medians, not absorption's own carried cache
    # (which binds the name at import, so the count otherwise depended on which test imported it first)
    from tapeflow.signals import stream_absorption, withdrawal  # noqa: F401

    thresholds = load(DEFAULT_PATH)
    grid = _grid(9)
    one = _trades(5).slice(0, 1)
    seen: list[int] = []
    real = withdrawal.band_depths

    def counted(prices: np.ndarray, *args: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        seen.append(len(prices))
        return real(prices, *args)

    monkeypatch.setattr(withdrawal, "band_depths", counted)
    stream = StreamingSignals("sim", "SIMA")
    batches = range(0, grid.num_rows, 100)
    for i in batches:
        stream.add(one if i == 0 else None, grid.slice(i, 100), thresholds)
    lag = thresholds.for_instrument("withdrawal", "SIMA")["window_ns"] // GRID_NS
    print(f"{sum(seen)} rows through band_depths for {grid.num_rows} grid rows in {len(batches)} batches")
    assert stream.dropped_rows > 0
    assert sum(seen) <= 2 * (grid.num_rows + len(batches) * (lag + 1))


def test_a_batch_of_grid_rows_without_a_level_gap_keeps_the_tick() -> None:
    # a batch whose rows show one level per side has no gap to read the tick from: the tick stays
    # the finest gap seen (detect._tick's fallback of 1 stuck as the day's tick when it was taken)
    thresholds = load(DEFAULT_PATH)
    grid = _grid(9)
    scaled = {c: grid.column(c) for c in grid.column_names}
    for name in ("bid_price_nanos", "ask_price_nanos"):
        scaled[name] = pa.array([[5 * p for p in row] for row in grid.column(name).to_pylist()],
                                grid.schema.field(name).type)
    grid = pa.table(scaled, schema=grid.schema)
    thin = grid.slice(600, 1).to_pylist()[0]
    for side in ("bid", "ask"):
        thin[f"{side}_price_nanos"] = thin[f"{side}_price_nanos"][:1]
        thin[f"{side}_size_nanos"] = thin[f"{side}_size_nanos"][:1]
    stream = StreamingSignals("sim", "SIMA")
    stream.add(_trades(5).slice(0, 1), grid.slice(0, 600), thresholds)
    assert stream.tick == 5
    stream.add(None, pa.Table.from_pylist([thin], schema=grid.schema), thresholds)
    assert stream.tick == 5


def test_the_stream_computes_the_print_baseline_of_the_judged_tail_only(monkeypatch, tmp_path) -> None:
    # the whale's print baseline (block_quantiles) runs over the blocks the newly judged prints
    # look back on, not over the whole 12-minute look-back the parent windows keep
    from tapeflow.signals import whale

    # time runs 30x faster here: the local-flow window of a sweep shrinks with it (10 s -> 1/3 s)
    edited = tmp_path / "t.toml"
    text = DEFAULT_PATH.read_text()
    assert text.count("local_window_ns = 10_000_000_000\nmin_local_share = 0.3") == 1
    edited.write_text(text.replace("local_window_ns = 10_000_000_000\nmin_local_share = 0.3",
                                   "local_window_ns = 333_333_333\nmin_local_share = 0.3"))
    thresholds = load(edited)
    # a print every 0.1 s: the parent windows' 12 minutes hold far more prints than 5 blocks
    trades = _trades(5)
    for name in ("ts_event_ns", "ts_recv_ns"):
        trades = trades.set_column(trades.schema.get_field_index(name), name,
                                   pa.array(trades.column(name).to_numpy() // 30))
    batch = detect_tables(trades, BOOK_SNAPSHOT.empty_table(), thresholds).sort_by(KEY)
    seen: list[int] = []
    real = whale.block_quantiles

    def counted(x: np.ndarray, *args: object) -> np.ndarray:
        seen.append(len(x))
        return real(x, *args)

    monkeypatch.setattr(whale, "block_quantiles", counted)
    stream = StreamingSignals("sim", "SIMA")
    parts = [stream.add(trades.slice(i, 100), None, thresholds) for i in range(0, trades.num_rows, 100)]
    parts.append(stream.add(None, None, thresholds, final=True))
    block = thresholds.for_instrument("whale", "SIMA")["baseline_trades"] // 4
    print(f"{len(seen)} baseline calls of at most {max(seen[1:-1])} prints; {batch.num_rows} alerts")
    assert batch.num_rows >= 5
    assert pa.concat_tables(parts).sort_by(KEY).to_pylist() == batch.to_pylist()
    # 4 blocks looked back on, the block of the last print before the judged second, the new prints
    assert max(seen[1:-1]) <= 6 * block + 100
