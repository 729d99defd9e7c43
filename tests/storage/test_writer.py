"""The one writer: replace, merge and append through one API, to the lake and ClickHouse (chdb) alike;
streaming loads equal one-shot writes; nothing is visible before a commit.

chdb opens one data directory per process, so the module shares one (``dsn``) and each test drops
the tables (``wh``), with the fixtures of ``tests/conftest.py``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tapeflow.errors import StorageError
from tapeflow.schemas.records import BOOK_DELTA, F_LAST
from tapeflow.storage import lake
from tapeflow.storage.batches import batch_token
from tapeflow.storage.parts import BASE, STAGING, list_parts
from tapeflow.storage.warehouse import Warehouse
from tapeflow.storage.writer import Writer, write
from tests.storage.samples import DAY_NS, synthetic_deltas


def multiset(table: pa.Table) -> Counter[int]:
    table = table.select(BOOK_DELTA.column_names).cast(BOOK_DELTA.arrow_schema())
    return Counter(pl.from_arrow(table).hash_rows(seed=0).to_list()) if table.num_rows else Counter()


def stores(root: Path, wh: Warehouse) -> tuple[Counter[int], Counter[int]]:
    return multiset(lake.read(BOOK_DELTA, root)), multiset(wh.fetch(BOOK_DELTA))


def deltas(n_messages: int, seed: int, *, symbol: str = "BTCUSDT", day_shift: int = 0) -> pa.Table:
    t = synthetic_deltas(n_messages, seed=seed).to_pydict()
    n = len(t["symbol"])
    t |= {"symbol": [symbol] * n, "ts_event_ns": [x + day_shift * DAY_NS for x in t["ts_event_ns"]],
          "ts_recv_ns": [x + day_shift * DAY_NS for x in t["ts_recv_ns"]]}
    return BOOK_DELTA.table(t)


def test_replace_merge_and_append_mean_the_same_in_both_stores(tmp_path: Path, wh: Warehouse) -> None:
    a = deltas(300, 1)
    row = a.slice(7, 1)
    flags = BOOK_DELTA.column_names.index("flags")
    new_flags = pa.array([F_LAST | 4], pa.uint8())
    same_key = row.set_column(flags, row.schema.field(flags), new_flags)  # same key, new content
    b = pa.concat_tables([a.slice(100, 200), deltas(100, 2), same_key, row, row])  # overlaps a; repeats
    with Writer(tmp_path, wh) as writer:
        writer.replace(BOOK_DELTA, a)
        assert stores(tmp_path, wh) == (multiset(a), multiset(a))
        writer.merge(BOOK_DELTA, b)
        # a's rows b does not repeat, then all of b: shared-key rows both kept, repeated rows kept twice
        repeated = multiset(b)
        expected = Counter({h: n for h, n in multiset(a).items() if h not in repeated}) + repeated
        assert expected[multiset(row).most_common(1)[0][0]] == 2
        assert stores(tmp_path, wh) == (expected, expected)
        writer.merge(BOOK_DELTA, b)  # merging the same rows again changes nothing
        assert stores(tmp_path, wh) == (expected, expected)
        c = deltas(50, 3)
        writer.replace(BOOK_DELTA, c)
        assert stores(tmp_path, wh) == (multiset(c), multiset(c))
        token = batch_token("book_delta", a)
        for _ in range(2):  # a redelivered batch lands once in each store
            writer.append(BOOK_DELTA, a, token=token)
            writer.flush()
        assert stores(tmp_path, wh) == (multiset(c) + multiset(a), multiset(c) + multiset(a))
        writer.append(BOOK_DELTA, row)  # a plain append: no token, no dedup
    got_lake, got_wh = stores(tmp_path, wh)
    assert got_lake == got_wh == multiset(c) + multiset(a) + multiset(row)


def test_streaming_load_in_many_chunks_equals_one_shot_write(tmp_path: Path, wh: Warehouse) -> None:
    # two symbols over two days, interleaved in arrival order; chunk edges cut through venue events
    # (rows sharing a capture time), so the spilled runs overlap in time and their ties must keep order
    parts = [deltas(2_000, 4), deltas(2_000, 5, symbol="ETHUSDT"), deltas(1_000, 6, day_shift=1)]
    rows = pa.concat_tables(parts)
    arrival = np.argsort(np.random.default_rng(9).integers(0, 3, rows.num_rows), kind="stable")
    shuffled = rows.take(pa.array(arrival))
    one = write(BOOK_DELTA, shuffled, tmp_path / "one")
    with Writer(tmp_path / "many", wh, spill_rows=3_000) as writer:
        with writer.load(BOOK_DELTA, "replace") as load:
            for start in range(0, shuffled.num_rows, 997):
                load.add(shuffled.slice(start, 997))
            result = load.commit()
    assert len(result.partitions) == len(one) == 3
    for a, b in zip(one, result.partitions, strict=True):
        assert (a.venue, a.symbol, a.date, a.rows) == (b.venue, b.symbol, b.date, b.rows)
        assert pq.read_table(a.path).equals(pq.read_table(b.path))  # same rows in the same order
        groups = [pq.ParquetFile(p).metadata.num_row_groups for p in (a.path, b.path)]
        assert groups[0] == groups[1]
    assert lake.read(BOOK_DELTA, tmp_path / "many").equals(lake.read(BOOK_DELTA, tmp_path / "one"))
    assert multiset(wh.fetch(BOOK_DELTA)) == multiset(rows)
    # O(rows): each row went to disk twice (its spilled run, small and less compressed, then the
    # partition), never once per chunk as when every pass rewrote the partition (~70x here)
    assert result.spilled_bytes > 0
    assert result.spilled_bytes + result.bytes_written <= 3.5 * sum(w.bytes_written for w in one)
    assert not any((tmp_path / "many" / STAGING).iterdir())


def test_a_partition_the_input_moved_past_is_written_before_the_commit_and_only_once(
        tmp_path: Path, wh: Warehouse) -> None:
    days = [deltas(400, 20 + k, day_shift=k) for k in range(3)]  # a file read in time order
    one = write(BOOK_DELTA, pa.concat_tables(days), tmp_path / "one")
    with Writer(tmp_path / "many", wh) as writer, writer.load(BOOK_DELTA, "replace") as load:
        for day in days:
            for start in range(0, day.num_rows, 500):
                load.add(day.slice(start, 500))
        # days 0 and 1 are finished: each becomes a sorted run in staging (on a lake thread) before
        # the commit; nothing is visible yet
        staging = tmp_path / "many" / STAGING
        deadline = time.monotonic() + 60
        while not (staging.is_dir() and len(list(staging.iterdir())) >= 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert staging.is_dir() and len(list(staging.iterdir())) == 2
        assert lake.read(BOOK_DELTA, tmp_path / "many").num_rows == 0
        result = load.commit()
    assert result.spilled_bytes == 0  # each run became its partition's file as it was: written once
    assert [(w.date, w.rows) for w in result.partitions] == [(w.date, w.rows) for w in one]
    for a, b in zip(one, result.partitions, strict=True):
        assert pq.read_table(a.path).equals(pq.read_table(b.path))
    assert multiset(wh.fetch(BOOK_DELTA)) == multiset(pa.concat_tables(days))
    assert not any((tmp_path / "many" / STAGING).iterdir())


def test_replace_empties_listed_partitions_the_rows_do_not_touch(tmp_path: Path, wh: Warehouse) -> None:
    btc, eth = deltas(100, 7), deltas(100, 8, symbol="ETHUSDT")
    day = lake.day_of(btc.column("ts_event_ns")[0].as_py())
    with Writer(tmp_path, wh) as writer:
        writer.replace(BOOK_DELTA, pa.concat_tables([btc, eth]))
        both = [("synthetic", "BTCUSDT", day), ("synthetic", "ETHUSDT", day)]
        writer.replace(BOOK_DELTA, btc, partitions=both)
    assert stores(tmp_path, wh) == (multiset(btc), multiset(btc))
    assert not lake.partition_dir(tmp_path, BOOK_DELTA, "synthetic", "ETHUSDT", day).exists()


def test_nothing_is_visible_before_a_commit_and_an_abort_leaves_no_trace(tmp_path: Path,
                                                                        wh: Warehouse) -> None:
    a, b = deltas(100, 10), deltas(100, 11)
    with Writer(tmp_path, wh, spill_rows=500) as writer:
        writer.replace(BOOK_DELTA, a)
        with pytest.raises(RuntimeError, match="decoder died"), writer.load(BOOK_DELTA, "replace") as load:
            load.add(b)  # spills runs to staging and stages rows in ClickHouse
            assert stores(tmp_path, wh) == (multiset(a), multiset(a))
            raise RuntimeError("decoder died")
        with pytest.raises(StorageError, match="already"):
            load.add(b)
    assert stores(tmp_path, wh) == (multiset(a), multiset(a))
    assert not any((tmp_path / STAGING).iterdir())
    assert [r[0] for r in wh.client.query("SHOW TABLES").result_rows if r[0].startswith("_stage")] == []


def test_a_merge_keeps_the_tokens_of_the_rows_it_keeps(tmp_path: Path) -> None:
    live, batch = deltas(100, 12), deltas(100, 13)
    token = batch_token("book_delta", live)
    with Writer(tmp_path) as writer:
        writer.append(BOOK_DELTA, live, token=token)
    write(BOOK_DELTA, batch, tmp_path, mode="merge")  # a backfill merged into the live partition
    with Writer(tmp_path) as writer:
        writer.append(BOOK_DELTA, live, token=token)  # a late redelivery of the live batch
        writer.flush()
        assert writer.stats.skipped == 1
    assert multiset(lake.read(BOOK_DELTA, tmp_path)) == multiset(live) + multiset(batch)
    (directory,) = {w.parent for w in (tmp_path / "book_delta").rglob("*.parquet")}
    assert [p.name for p in list_parts(directory)] == [BASE]


def test_unknown_modes_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="'upsert'"):
        Writer(tmp_path).load(BOOK_DELTA, "upsert")  # type: ignore[arg-type]
