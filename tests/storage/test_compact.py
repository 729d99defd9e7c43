"""Merging sorted runs: the batch-by-batch merge equals one stable sort of the runs' concatenation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tapeflow.schemas.records import BAR, BOOK_DELTA
from tapeflow.storage import lake
from tapeflow.storage.compact import Run, merge_runs, write_part
from tapeflow.storage.parts import read_meta
from tests.flows.test_sinks import bars
from tests.storage.samples import synthetic_deltas


def stored(table: pa.Table) -> pa.Table:
    return table.drop_columns(list(lake.PARTITION_KEYS))


@pytest.mark.parametrize("batch_rows", [2, 7, 1_000])
def test_merging_overlapping_runs_with_long_ties_equals_one_stable_sort(tmp_path: Path,
                                                                        batch_rows: int) -> None:
    rng = np.random.default_rng(batch_rows)
    rows = synthetic_deltas(40, seed=2)
    # capture times from a tiny set: long runs of equal keys that cross batch and run edges
    recv = rows.column("ts_recv_ns").to_numpy() // (2 * 10**7) * (2 * 10**7)
    rows = rows.set_column(1, rows.schema.field(1), pa.array(recv))
    cuts = np.sort(rng.choice(np.arange(1, rows.num_rows), 6, replace=False))
    pieces = np.split(np.arange(rows.num_rows), cuts)
    runs, expected = [], []
    for i, idx in enumerate(pieces):
        piece = lake.sort_stable(BOOK_DELTA, stored(rows.take(pa.array(idx))))
        expected.append(piece)
        if i % 2:  # half the runs on disk, half in memory
            path = tmp_path / f"run{i}.parquet"
            write_part(BOOK_DELTA, piece, path, tokens=[], seq=0)
            runs.append(Run(path=path))
        else:
            runs.append(Run(table=piece))
    out = tmp_path / "merged.parquet"
    n = merge_runs(BOOK_DELTA, runs, out, tokens=["a", "b"], seq=9, batch_rows=batch_rows)
    assert n == rows.num_rows
    assert pq.read_table(out).equals(lake.sort_stable(BOOK_DELTA, pa.concat_tables(expected)))
    meta = read_meta(out)
    assert (meta.tokens, meta.seq, meta.rows) == (("a", "b"), 9, rows.num_rows)


def test_a_filter_drops_rows_as_they_are_read_and_other_keys_sort_in_memory(tmp_path: Path) -> None:
    old = stored(pa.concat_tables([bars(0, 50, opens=(0, 10**9)), bars(0, 70, opens=(2 * 10**9,))]))
    new = stored(bars(1, 55))
    out = tmp_path / "bars.parquet"

    def not_restated(t: pa.Table) -> pa.Table:
        return t.filter(pa.compute.not_equal(t.column("ts_event_ns"), new.column("ts_event_ns")[0]))

    merge_runs(BAR, [Run(table=old, keep=not_restated), Run(table=new)], out, tokens=[], seq=0)
    got = pq.read_table(out)
    assert got.column("close_price_nanos").to_pylist() == [55, 50, 70]  # by interval, then open time
    assert got.column("revision").to_pylist() == [1, 0, 0]


def test_an_empty_merge_writes_an_empty_part(tmp_path: Path) -> None:
    out = tmp_path / "empty.parquet"
    assert merge_runs(BOOK_DELTA, [Run(table=stored(BOOK_DELTA.empty_table()))], out, tokens=[], seq=3) == 0
    assert pq.read_table(out).num_rows == 0 and read_meta(out).seq == 3
