"""The book stage against builders that do not use it: grid_rows + the plain-Python reference books.

Batch and live both run the book stage, so their parity tests no longer compare two builders; these
tests keep an independent one: the grid rule written in numpy (:func:`grid_rows`) and the books of
``kernels.reference`` / ``kernels.reference_l3``, on random streams with out-of-order arrival
times, and random micro-batch splits (with a pickled state mid-stream) against the whole replay.
"""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.reference import l2_replay_reference
from kernels.reference_l3 import l3_replay_reference
from tapeflow.book.grid import grid_rows
from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
from tapeflow.book.l3 import l3_book_snapshots
from tapeflow.book.stage import BookStage
from tapeflow.schemas.records import (
    BOOK_DELTA,
    BOOK_SNAPSHOT,
    F_GAP,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    F_SUPERSEDED,
    ORDER_EVENT,
    QUOTE,
    UNDEF_PRICE,
    VALID,
)
from tests.kernels.l2_streams import random_walk

MS = 1_000_000
L2_COLS = ("side", "action", "price_nanos", "size_nanos", "flags")
L3_COLS = ("order_id", "action", "side", "price_nanos", "size_nanos", "flags")


def _arrivals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Capture times mostly rising by 0-40 ms, some stepping back (a late row) or repeating."""
    step = rng.integers(0, 40 * MS, n)
    step[rng.random(n) < 0.05] = 0
    recv = 1_700_000_000_000_000_000 + np.cumsum(step)
    late = rng.random(n) < 0.03
    recv[late] -= rng.integers(1, 200 * MS, int(late.sum()))
    return recv.astype(np.int64)


def _l2_table(seed: int, n: int) -> pa.Table:
    s = random_walk(seed, n, gap_frac=0.002, far_frac=0.03, crossing=seed % 2 == 1)
    rng = np.random.default_rng(seed)
    recv = _arrivals(rng, len(s["side"]))
    return BOOK_DELTA.table({"ts_event_ns": recv - 5 * MS, "ts_recv_ns": recv,
                             "sequence": np.arange(len(recv)), "side": s["side"], "action": s["action"],
                             "price_nanos": s["price"], "size_nanos": s["size"], "flags": s["flags"]},
                            constants={"venue": "v", "symbol": f"S{seed}"})


def _l3_table(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    oid = rng.integers(1, 60, n).astype(np.uint64) * np.uint64(0x1_0000_0001)
    act = rng.choice(np.frombuffer(b"AAAAACCCMMFTN", np.uint8), n)
    side = rng.choice(np.frombuffer(b"BBBAAA", np.uint8), n)
    price = rng.integers(95, 106, n).astype(np.int64) * 250_000_000
    size = rng.integers(1, 12, n).astype(np.int64) * 1_000_000_000
    flags = rng.choice(np.array([0, F_LAST, F_LAST, F_LAST, F_GAP | F_LAST, F_SUPERSEDED], np.uint8), n)
    flags[:20] = F_SNAPSHOT
    flags[19] |= F_LAST
    recv = _arrivals(rng, n)
    return ORDER_EVENT.table({"ts_event_ns": recv, "ts_recv_ns": recv, "sequence": np.arange(n),
                              "order_id": oid, "action": act, "side": side, "price_nanos": price,
                              "size_nanos": size, "flags": flags},
                             constants={"venue": "v", "symbol": f"E{seed}"})


def _expected(table: pa.Table, ref: dict[str, np.ndarray], rows: np.ndarray, ts: np.ndarray) -> dict:
    def lists(px: str, sz: str) -> tuple[list, list]:
        keep = ref[px] != UNDEF_PRICE
        return ([list(r[k]) for r, k in zip(ref[px], keep, strict=True)],
                [list(r[k]) for r, k in zip(ref[sz], keep, strict=True)])

    bid_px, bid_sz = lists("snap_bid_px", "snap_bid_sz")
    ask_px, ask_sz = lists("snap_ask_px", "snap_ask_sz")
    return {"ts_event_ns": ts.tolist(), "ts_recv_ns": table["ts_recv_ns"].to_numpy()[rows].tolist(),
            "sequence": table["sequence"].to_numpy()[rows].tolist(),
            "bid_price_nanos": bid_px, "bid_size_nanos": bid_sz, "ask_price_nanos": ask_px,
            "ask_size_nanos": ask_sz,
            "flags": np.where(ref["snap_status"] == VALID, 0, F_MAYBE_BAD_BOOK).tolist()}


def _got(snaps: pa.Table) -> dict:
    return {k: v for k, v in snaps.to_pydict().items() if k not in ("venue", "symbol", "levels")}


def _published_grid(table: pa.Table, interval_ns: int | None) -> tuple[np.ndarray, np.ndarray]:
    published = np.flatnonzero(table["flags"].to_numpy() & F_LAST)
    if interval_ns is None:
        return published, table["ts_event_ns"].to_numpy()[published]
    grid, pick = grid_rows(table["ts_recv_ns"].to_numpy()[published], interval_ns)
    return published[pick], grid


@pytest.mark.parametrize("kind", ["l2", "l3"])
def test_snapshots_equal_grid_rows_over_the_reference_book(kind: str) -> None:
    for seed in range(4):
        if kind == "l2":
            table, cols, replay = _l2_table(seed, 3000), L2_COLS, l2_replay_reference
        else:
            table, cols, replay = _l3_table(seed, 2000), L3_COLS, l3_replay_reference
        for interval_ns in (250 * MS, 1_000 * MS, None):
            rows, ts = _published_grid(table, interval_ns)
            ref = replay(*(table[c].to_numpy() for c in cols), levels=4, snapshot_rows=rows)
            build = book_snapshots if kind == "l2" else l3_book_snapshots
            got = build(table, levels=4, interval_ns=interval_ns)
            assert len(rows) > 20
            assert _got(got) == _expected(table, ref, rows, ts), (seed, interval_ns)


def test_quotes_equal_the_reference_bbo_at_published_rows() -> None:
    table = _l2_table(7, 3000)
    published = np.flatnonzero(table["flags"].to_numpy() & F_LAST)
    ref = l2_replay_reference(*(table[c].to_numpy() for c in L2_COLS))
    got = quotes_from_deltas(table)
    assert got["sequence"].to_pylist() == published.tolist()
    for col, key in (("bid_price_nanos", "bid_px"), ("bid_size_nanos", "bid_sz"),
                     ("ask_price_nanos", "ask_px"), ("ask_size_nanos", "ask_sz")):
        assert got[col].to_pylist() == ref[key][published].tolist(), col
    flags = np.where(ref["status"][published] == VALID, 0, F_MAYBE_BAD_BOOK)
    assert got["flags"].to_pylist() == flags.tolist()


def _feed(stage: BookStage, record: str, table: pa.Table, cuts: list[int]) -> dict[str, pa.Table]:
    outs, lo = [], 0
    for hi in [*cuts, table.num_rows]:
        outs.append(stage.apply({record: table.slice(lo, hi - lo)}))
        if lo <= table.num_rows // 2 < hi:
            stage = pickle.loads(pickle.dumps(stage))  # a recovery snapshot continues where it stood
        lo = hi
    outs.append(stage.close())
    return {k: pa.concat_tables([o[k] for o in outs]) for k in (QUOTE.name, BOOK_SNAPSHOT.name)}


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 3), st.lists(st.integers(1, 1499), max_size=30), st.sampled_from(["l2", "l3"]),
       st.sampled_from([100 * MS, 1_000 * MS, None]))
def test_any_split_equals_the_whole_replay(seed: int, cuts: list[int], kind: str,
                                           interval_ns: int | None) -> None:
    table = _l2_table(seed, 1500) if kind == "l2" else _l3_table(seed, 1500)
    record = BOOK_DELTA.name if kind == "l2" else ORDER_EVENT.name
    cuts = sorted(set(c for c in cuts if c < table.num_rows))
    whole = BookStage(kind, 5, interval_ns).replay({record: table})
    split = _feed(BookStage(kind, 5, interval_ns), record, table, cuts)
    assert whole[BOOK_SNAPSHOT.name].num_rows > 0 and whole[QUOTE.name].num_rows > 0
    assert split[BOOK_SNAPSHOT.name].equals(whole[BOOK_SNAPSHOT.name])
    assert split[QUOTE.name].equals(whole[QUOTE.name])


def test_one_row_batches_equal_the_whole_replay() -> None:
    """Every row ends its batch, so every late row becomes the pending book at a batch boundary."""
    for kind, table, record in (("l2", _l2_table(11, 1200), BOOK_DELTA.name),
                                ("l3", _l3_table(12, 1200), ORDER_EVENT.name)):
        recv = table["ts_recv_ns"].to_numpy()
        assert (np.diff(recv) < 0).sum() > 10  # late rows to carry across a boundary
        whole = BookStage(kind, 5, 100 * MS).replay({record: table})
        split = _feed(BookStage(kind, 5, 100 * MS), record, table, list(range(1, table.num_rows)))
        assert split[BOOK_SNAPSHOT.name].equals(whole[BOOK_SNAPSHOT.name]), kind
        assert split[QUOTE.name].equals(whole[QUOTE.name]), kind
