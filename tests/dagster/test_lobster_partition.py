"""A real LOBSTER instrument-day through the landing folder and the Dagster assets (real data).

A level-N LOBSTER message file cannot rebuild the book alone (the book does not start empty and
events beyond the N-level window are absent): the ``book`` assets anchor the L3 rebuild to the
orderbook file's rows, which the ingest keeps apart as ``vendor_book_snapshot``. The oracle is the
orderbook file itself, read with numpy (row i: the book after message i). Skipped (saying why)
when ``TAPEFLOW_REAL_DATA`` does not hold the files.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from dagster_project.definitions import day_assets
from tests.dagster.conftest import Deployment, check_results, definitions, materializations, register

PRICE_NANOS = 100_000  # LOBSTER prices are dollars x 10000
SHARE = 1_000_000_000
EMPTY_ASK, EMPTY_BID = 9_999_999_999, -9_999_999_999  # LOBSTER's empty levels
DAY = "2012-06-21"
CASES = [("AAPL_2012-06-21_level10_first999", "AAPL", 10),
         ("LOBSTER_SampleFile_AMZN_2012-06-21_1", "AMZN", 1)]


def _files(real_data: Path, folder: str) -> list[Path]:
    d = real_data / "lobster" / folder
    paths = sorted(d.glob("*_message_*.csv")) + sorted(d.glob("*_orderbook_*.csv"))
    if len(paths) != 2:
        pytest.skip(f"LOBSTER {folder} (message + orderbook files) not under {real_data}")
    return paths


def _lists(table: pa.Table, name: str, levels: int) -> np.ndarray:
    """A list column as int64[rows, levels], -1 beyond each row's list."""
    out = np.full((table.num_rows, levels), -1, np.int64)
    for i, row in enumerate(table.column(name).to_pylist()):
        out[i, :len(row)] = row[:levels]
    return out


@pytest.mark.realdata
@pytest.mark.parametrize(("folder", "symbol", "levels"), CASES)
def test_lobster_book_assets_publish_the_orderbook_files_book(real_data: Path, tmp_path: Path,
                                                              folder: str, symbol: str, levels: int) -> None:
    """Every published snapshot and BBO row equals the orderbook file's row of its ``sequence``."""
    from assets.partitions import instrument_key
    from tapeflow.schemas.batch import VENDOR_BOOK_SNAPSHOT
    from tapeflow.schemas.records import BBO, BOOK_SNAPSHOT, ORDER_EVENT
    from tapeflow.storage import lake

    paths = _files(real_data, folder)
    landing = tmp_path / "landing" / "lobster"
    landing.mkdir(parents=True)
    for f in paths:  # linked, never copied
        (landing / f.name).symlink_to(f)
    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    assert register(instance, dep) == [("lobster", symbol, DAY)]
    key = f"{DAY}|{instrument_key('lobster', symbol)}"
    result = dg.materialize(day_assets(definitions(DAY)), partition_key=key, resources=dep.resources(),
                            instance=instance, raise_on_error=False)
    meta = materializations(result)
    book = np.loadtxt(paths[1], delimiter=",", dtype=np.int64, ndmin=2)

    def part(record):
        return lake.read(record, dep.lake, venue="lobster", symbol=symbol, date=DAY)

    # the orderbook rows are kept apart from the rebuilt snapshots, one per orderbook line
    assert part(VENDOR_BOOK_SNAPSHOT).num_rows == len(book)
    assert part(ORDER_EVENT).num_rows > 0
    book = book[:, :4 * levels]  # the levels the test compares (the assets publish 10)
    ask_px = np.where(book[:, 0::4] == EMPTY_ASK, -1, book[:, 0::4] * PRICE_NANOS)
    bid_px = np.where(book[:, 2::4] == EMPTY_BID, -1, book[:, 2::4] * PRICE_NANOS)
    want = {"ask_price_nanos": ask_px, "ask_size_nanos": np.where(ask_px < 0, -1, book[:, 1::4] * SHARE),
            "bid_price_nanos": bid_px, "bid_size_nanos": np.where(bid_px < 0, -1, book[:, 3::4] * SHARE)}
    snaps = part(BOOK_SNAPSHOT)
    seq = snaps.column("sequence").to_numpy()
    # the 1 s grid: 09:30:01 (the first message is at 09:30:00.004) to the second closing the last
    span_s = int(np.ceil(np.loadtxt(paths[0], delimiter=",", usecols=(0,))[-1])) - 34_200
    assert snaps.num_rows == span_s
    assert meta["book_snapshots"][key]["dagster/row_count"] == snaps.num_rows
    for name, expected in want.items():
        got = _lists(snaps, name, levels)
        bad = np.flatnonzero((got != expected[seq]).any(axis=1))
        assert not len(bad), f"{name}: {len(bad)} of {len(seq)} snapshots differ, first at {seq[bad[:1]]}"
    assert not (snaps.column("flags").to_numpy() & 4).any()
    assert meta["book_snapshots"][key]["maybe_bad_rows"] == 0
    # the BBO at each change: the orderbook file's best bid/offer after that message
    bbo = part(BBO)
    q_seq = bbo.column("sequence").to_numpy()
    assert bbo.num_rows > 0
    for name, expected in want.items():
        got = bbo.column(name).to_numpy()
        assert (got == expected[q_seq, 0]).all(), f"bbo {name} differs from the orderbook file"
    evaluations = check_results(result)
    assert [k for k, ev in evaluations.items() if not ev.passed and ev.severity.value == "ERROR"] == []
    assert result.success
    # the warehouse holds what the lake holds: the rebuilt book, not the vendor's rows
    loaded = meta["clickhouse_tables"][key]["rows_by_table"]
    assert (loaded["book_snapshot"], loaded["bbo"]) == (snaps.num_rows, bbo.num_rows)
    if symbol == "AAPL":  # the book alone again: it reads the kept vendor rows, never its own output
        again = dg.materialize([a for a in definitions(DAY).assets if "book_snapshots" in
                                {k.to_user_string() for k in getattr(a, "keys", ())}],
                               partition_key=key, resources=dep.resources(), instance=instance,
                               selection=["book_snapshots", "bbo"], raise_on_error=False)
        assert again.success
        assert part(BOOK_SNAPSHOT).equals(snaps) and part(BBO).equals(bbo)
