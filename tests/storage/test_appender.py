"""Exactly-once appends to the lake: flat cost per flush, tiered merges, tokens, restated keys.

Costs are counted in bytes and rows the writer commits, never in time.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from tapeflow.schemas.records import BAR, BOOK_DELTA
from tapeflow.storage import lake
from tapeflow.storage.batches import batch_token
from tapeflow.storage.parts import BASE, STAGING, list_parts
from tapeflow.storage.writer import Writer
from tests.flows.test_sinks import bars
from tests.storage.samples import T0, synthetic_deltas

FLUSHES = 200


def batches(n: int, rows_each: int = 600, seed: int = 11) -> list[pa.Table]:
    """``n`` consecutive slices of one synthetic depth stream (one partition, time ordered)."""
    stream = synthetic_deltas(max(n * rows_each // 25, 10), seed=seed)
    assert stream.num_rows >= n * rows_each
    return [stream.slice(i * rows_each, rows_each) for i in range(n)]


def multiset(table: pa.Table) -> Counter[int]:
    return Counter(pl.from_arrow(table).hash_rows(seed=0).to_list()) if table.num_rows else Counter()


def partition(root: Path) -> Path:
    return lake.partition_dir(root, BOOK_DELTA, "synthetic", "BTCUSDT", lake.day_of(T0))


def test_bytes_per_flush_stay_flat_as_the_day_grows(tmp_path: Path) -> None:
    parts = batches(FLUSHES)
    flat = Writer(tmp_path / "new")
    old = Writer(tmp_path / "old")  # the design this replaces: rewrite the whole partition every flush
    new_bytes, appended, old_bytes, new_rewritten = [], [], [], []
    for table in parts:
        s = flat.stats
        before = (s.appended_bytes, s.rewritten_bytes, s.rewritten_rows)
        flat.append(BOOK_DELTA, table, token=batch_token("book_delta", table))
        flat.flush()
        appended.append(s.appended_bytes - before[0])
        new_bytes.append(s.appended_bytes + s.rewritten_bytes - before[0] - before[1])
        new_rewritten.append(s.rewritten_rows - before[2])
        before_old = old.stats.appended_bytes + old.stats.rewritten_bytes
        old.append(BOOK_DELTA, table, token=batch_token("book_delta", table))
        old.compact()
        old_bytes.append(old.stats.appended_bytes + old.stats.rewritten_bytes - before_old)
    first, last = slice(0, 64), slice(FLUSHES - 64, FLUSHES)  # 64 = 8 * 8: whole merge cycles
    # what one flush appends does not depend on what is already there
    assert min(appended) > 0 and max(appended) <= 1.3 * min(appended)
    # merges included, the last 64 flushes cost what the first 64 did, and never more than one
    # append per merge level (log8(200) < 3) on top of the appends
    assert sum(new_bytes[last]) <= 1.2 * sum(new_bytes[first])
    assert sum(new_bytes) <= 4 * sum(appended)
    assert sum(new_rewritten) <= 3 * sum(t.num_rows for t in parts)
    # the old design: each flush rewrites the day so far, so its cost grows linearly with the day
    assert np.corrcoef(np.arange(FLUSHES), old_bytes)[0, 1] > 0.99
    assert sum(old_bytes[last]) >= 4 * sum(old_bytes[first]) and old_bytes[-1] >= 15 * old_bytes[0]
    assert sum(old_bytes) >= 10 * sum(new_bytes)
    # both hold the same rows; the tiered merge keeps the partition to a few files
    rows_new, rows_old = lake.read(BOOK_DELTA, tmp_path / "new"), lake.read(BOOK_DELTA, tmp_path / "old")
    assert multiset(rows_new) == multiset(rows_old)
    assert len(list_parts(partition(tmp_path / "new"))) <= 3 * 7


def test_no_flush_rewrites_more_than_max_merge_bytes(tmp_path: Path) -> None:
    parts = batches(FLUSHES, rows_each=300)
    cap = 100_000
    writer = Writer(tmp_path, max_merge_bytes=cap)
    cost = []
    for table in parts:
        before = writer.stats.appended_bytes + writer.stats.rewritten_bytes
        writer.append(BOOK_DELTA, table, token=batch_token("book_delta", table))
        writer.flush()
        cost.append(writer.stats.appended_bytes + writer.stats.rewritten_bytes - before)
    # a merge may rewrite up to cap bytes of parts; whatever the day's length, a flush costs no more
    assert max(cost) <= 1.1 * cap + 2 * min(cost)
    assert writer.stats.rewritten_bytes > 0
    assert multiset(lake.read(BOOK_DELTA, tmp_path)) == multiset(pa.concat_tables(parts))
    writer.close()
    assert [p.name for p in list_parts(partition(tmp_path))] == [BASE]


def test_appended_partition_reads_like_one_sorted_write(tmp_path: Path) -> None:
    parts = batches(40, rows_each=300)
    # shuffled arrival: batches overlap in time, so the reader (and compaction) must merge-sort
    order = np.random.default_rng(3).permutation(len(parts))
    with Writer(tmp_path / "live", fanout=3) as writer:
        for i in order:
            writer.append(BOOK_DELTA, parts[i], token=batch_token("book_delta", parts[i]))
            writer.flush()
            so_far = [parts[j] for j in order[: list(order).index(i) + 1]]
            expected = lake.sort_stable(BOOK_DELTA, pa.concat_tables(so_far))
            assert lake.read(BOOK_DELTA, tmp_path / "live").equals(expected)
    # close compacted it into one file that holds the same rows in the same order
    assert [p.name for p in list_parts(partition(tmp_path / "live"))] == [BASE]
    whole = lake.sort_stable(BOOK_DELTA, pa.concat_tables([parts[j] for j in order]))
    assert lake.read(BOOK_DELTA, tmp_path / "live").equals(whole)
    assert not any((tmp_path / "live" / STAGING).iterdir())


def test_redelivered_batches_are_skipped_across_writers_and_compactions(tmp_path: Path) -> None:
    parts = batches(30, rows_each=200)
    tokens = [batch_token("book_delta", t) for t in parts]
    with Writer(tmp_path, fanout=4) as writer:
        for table, token in zip(parts[:20], tokens[:20], strict=True):
            writer.append(BOOK_DELTA, table, token=token)
            writer.flush()
    # a resumed flow re-emits batches 10..29 into a new writer: the first 10 are already there
    with Writer(tmp_path, fanout=4) as writer:
        for table, token in zip(parts[10:], tokens[10:], strict=True):
            writer.append(BOOK_DELTA, table, token=token)
        writer.flush()
        assert writer.stats.skipped == 10
        # and again, with the partition mid-way between compactions
        for table, token in zip(parts[15:25], tokens[15:25], strict=True):
            writer.append(BOOK_DELTA, table, token=token)
    assert multiset(lake.read(BOOK_DELTA, tmp_path)) == multiset(pa.concat_tables(parts))
    # a plain append (no token) is the recovery test's control: it repeats
    with Writer(tmp_path) as writer:
        writer.append(BOOK_DELTA, parts[0])
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == sum(t.num_rows for t in parts) + parts[0].num_rows


def test_identical_rows_in_one_and_in_two_batches_all_survive(tmp_path: Path) -> None:
    row = batches(1, rows_each=1)[0]
    twice = pa.concat_tables([row, row])  # one batch holding two identical venue records
    with Writer(tmp_path) as writer:
        writer.append(BOOK_DELTA, twice, token=batch_token("book_delta", twice))
        writer.append(BOOK_DELTA, row, token=batch_token("book_delta", row))  # another batch, same row
        writer.flush()
        writer.append(BOOK_DELTA, twice, token=batch_token("book_delta", twice))  # redelivered: skipped
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == 3


def test_a_restated_bar_replaces_its_key_in_the_buffer_and_on_disk(tmp_path: Path) -> None:
    first, other = bars(0, 50), bars(0, 60, opens=(10**9,))
    with Writer(tmp_path) as writer:
        for t in (first, other):
            writer.append(BAR, t, token=batch_token("bar", t))
        writer.flush()
        for t in (bars(1, 55), bars(2, 57)):  # two restatements in one flush: the last wins
            writer.append(BAR, t, token=batch_token("bar", t))
        writer.flush()
        assert revisions(lake.read(BAR, tmp_path)) == [(0, 60), (2, 57)]
        for t in (first, other, bars(1, 55), bars(2, 57)):  # redelivery in order: nothing changes
            writer.append(BAR, t, token=batch_token("bar", t))
    assert revisions(lake.read(BAR, tmp_path)) == [(0, 60), (2, 57)]


def revisions(got: pa.Table) -> list[tuple[int, int]]:
    return sorted(zip(got["revision"].to_pylist(), got["close_price_nanos"].to_pylist(), strict=True))


def test_a_finished_day_is_compacted_when_the_next_begins(tmp_path: Path) -> None:
    day1 = batches(3, rows_each=100)
    later = pa.concat_tables(day1).to_pydict()
    shift = lake.NS_PER_DAY
    later |= {"ts_event_ns": [t + shift for t in later["ts_event_ns"]],
              "ts_recv_ns": [t + shift for t in later["ts_recv_ns"]]}
    day2 = BOOK_DELTA.table(later)
    with Writer(tmp_path) as writer:
        for t in day1:
            writer.append(BOOK_DELTA, t, token=batch_token("book_delta", t))
            writer.flush()
        assert len(list_parts(partition(tmp_path))) == 3
        writer.append(BOOK_DELTA, day2, token=batch_token("book_delta", day2))
        writer.flush()
        assert [p.name for p in list_parts(partition(tmp_path))] == [BASE]
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == 2 * sum(t.num_rows for t in day1)


def test_hive_readers_see_every_appended_part(tmp_path: Path) -> None:
    parts = batches(5, rows_each=100)
    writer = Writer(tmp_path)
    for t in parts:
        writer.append(BOOK_DELTA, t, token=batch_token("book_delta", t))
        writer.flush()
    keys = pa.schema([("venue", pa.string()), ("symbol", pa.string()), ("date", pa.string())])
    hive = ds.partitioning(keys, flavor="hive")
    dataset = ds.dataset(tmp_path / "book_delta", format="parquet", partitioning=hive)
    assert dataset.count_rows() == 500
    scanned = pl.scan_parquet(tmp_path / "book_delta" / "*" / "*" / "*" / "*.parquet", hive_partitioning=True)
    assert scanned.select(pl.len()).collect().item() == 500
    writer.close()  # compaction: the five parts become one file
    with pytest.raises(FileNotFoundError):
        dataset.to_table()  # a dataset listed before the swap fails loudly; it never mixes versions
    fresh = ds.dataset(tmp_path / "book_delta", format="parquet", partitioning=hive)
    assert fresh.count_rows() == 500


def test_fanout_below_two_is_refused(tmp_path: Path) -> None:
    from tapeflow.errors import StorageError

    with pytest.raises(StorageError, match="fanout"):
        Writer(tmp_path, fanout=1)
