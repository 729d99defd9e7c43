"""LOBSTER books seeded and re-anchored from the orderbook file, against that file (real data).

A level-N LOBSTER message file cannot rebuild the book alone: the book does not start empty and
events beyond the N-level window are absent. Before the anchors, every metric row of the AMZN day
carried F_MAYBE_BAD_BOOK and five of its 13 half hours had a mid that never moved. The oracle here
is the orderbook file itself, read with numpy (row i: the book after message i), and the
Cont-Kukanov-Stoikov (2014) OFI regression computed in the test from the flow's own outputs.
Skipped (saying why) when ``TAPEFLOW_REAL_DATA`` does not hold the files.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sources import CaptureSource
from tapeflow.book.rebuild import snapshots_for_format

SECOND = 1_000_000_000
PRICE_NANOS = 100_000  # LOBSTER prices are dollars x 10000
SHARE = 1_000_000_000
TICK_NANOS = 10_000_000  # $0.01
OPEN_UTC_NS = 1_340_285_400 * SECOND  # 2012-06-21 09:30 New York


def _pair(folder: str) -> tuple[list[Path], np.ndarray]:
    root = os.environ.get("TAPEFLOW_REAL_DATA")
    d = Path(root or "/nonexistent") / "lobster" / folder
    paths = sorted(d.glob("*_message_*.csv")) + sorted(d.glob("*_orderbook_*.csv"))
    if len(paths) != 2:
        pytest.skip(f"LOBSTER {folder} not under TAPEFLOW_REAL_DATA ({root!r}): set it to the shared data")
    book = np.loadtxt(paths[1], delimiter=",", dtype=np.int64, ndmin=2)
    return paths, book


def _lists(table: pa.Table, name: str, levels: int, fill: int) -> np.ndarray:
    """A list column as int64[rows, levels], ``fill`` beyond each row's list."""
    out = np.full((table.num_rows, levels), fill, np.int64)
    for i, row in enumerate(table.column(name).to_pylist()):
        out[i, :len(row)] = row
    return out


@pytest.mark.parametrize(("folder", "levels"), [("LOBSTER_SampleFile_AMZN_2012-06-21_1", 1),
                                                ("AAPL_2012-06-21_level10_first999", 10)])
def test_rebuilt_book_after_every_message_is_the_orderbook_files(folder: str, levels: int) -> None:
    """Per-event snapshots (batch rebuild): every level of every row equals orderbook row ``sequence``."""
    paths, book = _pair(folder)
    snaps, _ = snapshots_for_format("lobster", paths, levels=levels, interval_ns=None)
    seq = snaps.column("sequence").to_numpy()
    # LOBSTER's empty levels (9999999999 / -9999999999, size 0) are no level: the list is shorter
    ask_px = np.where(book[:, 0::4] == 9_999_999_999, -1, book[:, 0::4] * PRICE_NANOS)
    bid_px = np.where(book[:, 2::4] == -9_999_999_999, -1, book[:, 2::4] * PRICE_NANOS)
    want = {"ask_price_nanos": ask_px, "ask_size_nanos": np.where(ask_px < 0, -1, book[:, 1::4] * SHARE),
            "bid_price_nanos": bid_px, "bid_size_nanos": np.where(bid_px < 0, -1, book[:, 3::4] * SHARE)}
    # a hidden execution (type 5) changes no book: it has no order event, so no snapshot of its own
    assert len(seq) > 0.9 * len(book)
    for name, expected in want.items():
        got = _lists(snaps, name, levels, -1)
        bad = np.flatnonzero((got != expected[seq]).any(axis=1))
        assert not len(bad), f"{name}: {len(bad)} of {len(seq)} rows differ, first at sequence {seq[bad[0]]}"
    assert not (snaps.column("flags").to_numpy() & 4).any()


@pytest.fixture(scope="module")
def amzn_flow() -> tuple[dict[str, pa.Table], np.ndarray, np.ndarray]:
    """The live flow over the AMZN message and orderbook files (10 s grid, rebuilt BBO as quotes)."""
    paths, book = _pair("LOBSTER_SampleFile_AMZN_2012-06-21_1")
    message_s = np.loadtxt(paths[0], delimiter=",", usecols=(0,))
    tables: list = []
    flow = build_market_flow(CaptureSource("lobster", paths), MarketSinks(tables=TestingSink(tables)),
                             levels=1, snapshot_interval_ns=10 * SECOND, intervals=(), raw=False,
                             bbo_as_quote=True)
    run_main(flow)
    return gather(tables), book, message_s


def test_every_metric_row_is_the_orderbook_files_top_of_book(amzn_flow: tuple) -> None:
    out, book, _ = amzn_flow
    metric = out["metric"]
    assert metric.num_rows == 2340  # 09:30:10 .. 16:00:00 every 10 s
    seq = metric.column("sequence").to_numpy()
    ask, ask_sz, bid, bid_sz = (book[seq, j] for j in range(4))
    col = {n: metric.column(n).to_numpy() for n in ("mid_price_nanos", "spread_nanos", "bid_depth_nanos",
                                                      "ask_depth_nanos", "flags")}
    assert (col["mid_price_nanos"] == (bid + ask) * PRICE_NANOS // 2).all()
    assert (col["spread_nanos"] == (ask - bid) * PRICE_NANOS).all()
    assert (col["bid_depth_nanos"] == bid_sz * SHARE).all()
    assert (col["ask_depth_nanos"] == ask_sz * SHARE).all()
    assert not (col["flags"] & 4).any()  # before the anchors: all 2,340 flagged
    # the row shown at each instant is the last message at or before it
    ts = metric.column("ts_event_ns").to_numpy()
    assert (metric.column("ts_recv_ns").to_numpy() <= ts).all()


def test_ofi_explains_mid_changes_as_the_reference_says(amzn_flow: tuple) -> None:
    """Level-1 OFI (Cont, Kukanov, Stoikov 2014) against mid changes, 10 s grid, 13 half hours:
    mean R^2 0.527 and mean beta x average depth 0.92 (reference), from the flow's outputs.

    Per half hour: OLS of the 10 s mid change (ticks) on the 10 s OFI (shares) of the flow's
    ``metric`` rows; average depth = mean of (bid size + ask size) / 2 over the flow's rebuilt
    best bid/offer changes (``quote`` rows) in the half hour (the reference averages over the
    orderbook file's rows: 0.920; over its changes 0.914).
    """
    out, _, _ = amzn_flow
    m = out["metric"]
    ts = m.column("ts_event_ns").to_numpy()
    mid = m.column("mid_price_nanos").to_numpy().astype(float) / TICK_NANOS
    ofi = m.column("ofi_nanos").to_numpy().astype(float) / SHARE
    q = out["quote"]
    q_ts = q.column("ts_event_ns").to_numpy()
    q_depth = (q.column("bid_size_nanos").to_numpy() + q.column("ask_size_nanos").to_numpy()) / 2 / SHARE
    r2s, scaled = [], []
    for w in range(13):
        lo, hi = OPEN_UTC_NS + w * 1800 * SECOND, OPEN_UTC_NS + (w + 1) * 1800 * SECOND
        rows = np.flatnonzero((ts > lo) & (ts <= hi))
        rows = rows[rows > 0]
        dp, x = mid[rows] - mid[rows - 1], ofi[rows]
        assert np.count_nonzero(dp) > 20 and np.count_nonzero(x) > 20, f"half hour {w}: a frozen book"
        xc, yc = x - x.mean(), dp - dp.mean()
        beta = (xc @ yc) / (xc @ xc)
        resid = yc - beta * xc
        r2s.append(1 - (resid @ resid) / (yc @ yc))
        scaled.append(beta * q_depth[(q_ts >= lo) & (q_ts < hi)].mean())
    print(f"R^2 per half hour {np.round(r2s, 3).tolist()}; mean R^2 {np.mean(r2s):.4f}, "
          f"mean beta x depth {np.mean(scaled):.4f}")
    assert abs(np.mean(r2s) - 0.527) <= 0.02
    assert abs(np.mean(scaled) - 0.92) <= 0.05


def test_the_partition_rebuild_is_anchored_in_any_slices() -> None:
    """The Dagster book assets' builder: whole days and slices give the same anchored rows."""
    from tapeflow.book.partition import rebuild_partition, rebuild_slices
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    paths, book = _pair("LOBSTER_SampleFile_AMZN_2012-06-21_1")
    tables = merge(list(get_format("lobster").decode(paths)))
    events, vendor = tables["order_event"], tables["book_snapshot"]
    snaps, quotes = rebuild_partition([events], [], levels=1, interval_ns=SECOND, anchors=[vendor])
    # 09:30:01 .. 16:00:00: the first message comes after 09:30:00
    assert snaps.num_rows == 23_400 and not (snaps.column("flags").to_numpy() & 4).any()
    seq = snaps.column("sequence").to_numpy()
    assert (_lists(snaps, "bid_price_nanos", 1, -1)[:, 0] == book[seq, 2] * PRICE_NANOS).all()
    assert (_lists(snaps, "ask_size_nanos", 1, -1)[:, 0] == book[seq, 1] * SHARE).all()
    event_slices = [events.slice(lo, 5_000) for lo in range(0, events.num_rows, 5_000)]
    vendor_slices = [vendor.slice(lo, 7_000) for lo in range(0, vendor.num_rows, 7_000)]
    pieces = list(rebuild_slices([event_slices], [], levels=1, interval_ns=SECOND, anchors=[vendor_slices]))
    assert pa.concat_tables([p[0] for p in pieces]).equals(snaps)
    assert pa.concat_tables([p[1] for p in pieces]).equals(quotes)
