"""Live sinks: ClickHouse (chdb) drops a redelivered batch itself, restated bars replace, the lake skips
a replayed batch, the plain-append control duplicates; and the sinks inside a Bytewax flow.

chdb opens one data directory per process, so the module shares one and each test drops the tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main, run_main

from flows.sinks import (
    ClickHouseSink,
    DeadLetterSink,
    LakeSink,
    MetricsSink,
    StatusSink,
    TableSink,
    batch_token,
    record_of,
)
from tapeflow.errors import StorageError
from tapeflow.live.prom import FlowMetrics
from tapeflow.schemas.records import BAR, QUOTE, REJECTED, STATUS
from tapeflow.storage import lake
from tapeflow.storage.warehouse import Warehouse

T0 = 1_723_161_255_030_314_667


def quotes(n: int, *, offset: int = 0) -> pa.Table:
    # every row shares its order_by key (venue, symbol, ts_recv_ns, sequence): keys are no identity
    return QUOTE.table({
        "ts_event_ns": [T0] * n, "ts_recv_ns": [T0] * n, "sequence": [7] * n,
        "bid_price_nanos": [100 + offset + i for i in range(n)], "bid_size_nanos": [1] * n,
        "ask_price_nanos": [200] * n, "ask_size_nanos": [1] * n, "flags": [0] * n,
    }, constants={"venue": "bitmex", "symbol": "XBTUSD"})


def bars(revision: int, close: int, opens: tuple[int, ...] = (0,)) -> pa.Table:
    n = len(opens)
    cols = {c: [0] * n for c in BAR.column_names if c not in ("venue", "symbol", "interval")}
    cols |= {"ts_event_ns": [T0 + o for o in opens], "ts_recv_ns": [T0 + 10**9] * n,
             "close_price_nanos": [close] * n, "revision": [revision] * n, "interval": ["1s"] * n}
    return BAR.table(cols, constants={"venue": "binance-usdm", "symbol": "BTCUSDT"})


def status(n: int) -> pa.Table:
    return STATUS.table({"ts_event_ns": [T0 + i for i in range(n)], "ts_recv_ns": [T0 + i for i in range(n)],
                         "state": ["gap"] * n, "sequence": list(range(n)), "until_ns": [-1] * n,
                         "detail": [f"gap {i}" for i in range(n)]},
                        constants={"venue": "binance-usdm", "symbol": "BTCUSDT"})


def write(sink: TableSink, *batches: pa.Table) -> None:
    part = sink.build_part("out", "0", None)
    try:
        part.write_batch(list(batches))
    finally:
        part.close()


def test_clickhouse_drops_a_redelivered_batch_and_keeps_rows_sharing_keys(wh: Warehouse, dsn: str) -> None:
    a, b = quotes(5), quotes(3, offset=10)
    write(ClickHouseSink(dsn), a, b)
    # a resume re-emits both batches from a new process-level sink: ClickHouse drops them by token
    write(ClickHouseSink(dsn), a, b, a)
    assert wh.count(QUOTE) == 8
    assert sorted(wh.fetch(QUOTE)["bid_price_nanos"].to_pylist()) == [100, 101, 102, 103, 104, 110, 111, 112]
    ddl = wh.client.query("SHOW CREATE TABLE quote").result_rows[0][0]
    assert "non_replicated_deduplication_window = 10000" in ddl


def test_plain_append_control_duplicates(wh: Warehouse, dsn: str) -> None:
    a = quotes(5)
    write(ClickHouseSink(dsn, idempotent=False), a, a)
    write(ClickHouseSink(dsn, idempotent=False), a)
    assert wh.count(QUOTE) == 15


def test_restated_bar_replaces_and_replay_keeps_one(wh: Warehouse, dsn: str) -> None:
    first, restated, other = bars(0, 50), bars(1, 55), bars(0, 60, opens=(10**9,))
    write(ClickHouseSink(dsn), first, other)
    write(ClickHouseSink(dsn), restated)
    write(ClickHouseSink(dsn), first, other, restated)  # redelivery after a resume, in order
    got = wh.fetch(BAR)
    assert list(zip(got["revision"].to_pylist(), got["close_price_nanos"].to_pylist(), strict=True)) == [
        (1, 55), (0, 60)]
    both = pa.concat_tables([first, restated])  # one batch holding two revisions: the last wins
    write(ClickHouseSink(dsn), both)
    assert wh.fetch(BAR)["revision"].to_pylist() == [1, 0]


def test_status_and_dead_letters_go_to_both_stores(wh: Warehouse, dsn: str, tmp_path: Path) -> None:
    dead = REJECTED.table({"ts_event_ns": [-1, -1], "ts_recv_ns": [T0, T0 + 1], "reason": ["bad_json"] * 2,
                           "detail": ["x", "y"], "location": ["f:1", "f:2"], "raw": [b"{", b"["]},
                          constants={"venue": "binance-usdm", "symbol": ""})
    for _ in range(2):  # the second pass is a redelivery
        write(StatusSink(dsn, tmp_path), status(4), dead, quotes(2))
        write(DeadLetterSink(dsn, tmp_path), dead, status(4))
    assert wh.count(STATUS) == 4 and wh.count(REJECTED) == 2 and wh.count(QUOTE) == 0
    day = lake.day_of(T0)
    partition = tmp_path / "status" / "venue=binance-usdm" / "symbol=BTCUSDT" / f"date={day}"
    assert [p.name for p in partition.iterdir()] == ["part-0.parquet"]  # compacted into one file at close
    assert lake.read(STATUS, tmp_path)["detail"].to_pylist() == [f"gap {i}" for i in range(4)]
    assert lake.read(REJECTED, tmp_path)["raw"].to_pylist() == [b"{", b"["]


def test_lake_skips_a_replayed_batch_and_control_appends(tmp_path: Path) -> None:
    a, b = quotes(5), quotes(3, offset=10)
    write(LakeSink(tmp_path / "idem"), a, b)
    write(LakeSink(tmp_path / "idem"), b, a)
    assert lake.read(QUOTE, tmp_path / "idem").num_rows == 8
    write(LakeSink(tmp_path / "plain", idempotent=False), a, b)
    write(LakeSink(tmp_path / "plain", idempotent=False), b, a)
    assert lake.read(QUOTE, tmp_path / "plain").num_rows == 16
    other = bars(0, 60, opens=(10**9,))
    write(LakeSink(tmp_path / "bars"), bars(0, 50), other, bars(1, 55))
    write(LakeSink(tmp_path / "bars"), bars(0, 50), other, bars(1, 55))  # redelivered in order
    got = lake.read(BAR, tmp_path / "bars")
    assert list(zip(got["revision"].to_pylist(), got["close_price_nanos"].to_pylist(), strict=True)) == [
        (1, 55), (0, 60)]


def test_batch_token_is_content_and_order() -> None:
    a = quotes(5)
    assert batch_token("quote", a) == batch_token("quote", quotes(5))
    assert batch_token("quote", a) != batch_token("quote", a.take([1, 0, 2, 3, 4]))
    assert batch_token("quote", a) != batch_token("bar", a)


def test_unknown_table_and_unknown_columns_are_clear_errors() -> None:
    with pytest.raises(StorageError, match="quotes"):
        ClickHouseSink("chdb:x", tables=("quotes",))
    with pytest.raises(StorageError, match=r"\['a'\]"):
        record_of(pa.table({"a": [1]}))


def _flow(items: list[tuple[str, pa.Table]], sinks: list[TableSink]) -> Dataflow:
    flow = Dataflow("sinks")
    stream = op.input("in", flow, TestingSource(items))
    for i, sink in enumerate(sinks):
        op.output(f"out{i}", stream, sink)
    return flow


@pytest.mark.parametrize("entry", ["run_main", "cluster_main"])
def test_sinks_in_a_flow(wh: Warehouse, dsn: str, tmp_path: Path, entry: str) -> None:
    metrics = FlowMetrics()
    items = [("quote", quotes(5)), ("status", status(3)), ("quote", quotes(5)), ("bar", bars(0, 1)),
             ("bar", bars(1, 2))]
    flow = _flow(items, [ClickHouseSink(dsn, metrics=metrics), StatusSink(None, tmp_path)])
    if entry == "run_main":
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert wh.count(QUOTE) == 5 and wh.count(STATUS) == 3
    assert wh.fetch(BAR)["revision"].to_pylist() == [1]
    assert lake.read(STATUS, tmp_path).num_rows == 3
    assert metrics.events_out.labels("bitmex", "quote")._value.get() == 10


def test_metrics_sink_counts_items_on_every_worker() -> None:
    metrics = FlowMetrics()
    items = [("quote", quotes(5)), ("status", status(3)), ("quote", quotes(2)), ("bar", bars(0, 1))]
    flow = Dataflow("metrics")
    op.output("m", op.input("in", flow, TestingSource(items)), MetricsSink(metrics))
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert metrics.events_in.labels("bitmex")._value.get() == 7
    assert metrics.gaps.labels("binance-usdm")._value.get() == 3
    assert metrics.events_out.labels("binance-usdm", "bar")._value.get() == 1
    assert metrics.events_out.labels("bitmex", "quote")._value.get() == 7


_TWO_WORKERS = """
import sys
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, cluster_main
from flows.sinks import TableSink
from tapeflow.schemas.records import QUOTE
from tapeflow.storage.warehouse import Warehouse
from tests.flows.test_sinks import quotes

items = [("quote", quotes(5, offset=10 * i)) for i in range(200)]
flow = Dataflow("two_workers")
stream = op.input("in", flow, TestingSource(items))
stream = op.map("v", op.key_on("k", stream, lambda item: str(item[1]["bid_price_nanos"][0].as_py() % 7)),
                lambda kv: kv[1])
op.output("out", stream, TableSink(dsn="chdb://" + sys.argv[1], idempotent=False))
for _ in range(4):  # the crash is a race: a few runs make it show reliably without the fix
    cluster_main(flow, [], 0, worker_count_per_proc=2)
with Warehouse("chdb://" + sys.argv[1]) as wh:
    print("rows", wh.count(QUOTE))
"""


def test_two_worker_flow_opens_chdb_in_a_worker_thread(tmp_path: Path) -> None:
    """chdb first opened inside a Bytewax worker thread of a 2-worker flow: without the sink's own
    ClickHouse thread this deadlocks or aborts ("double free"), so it runs in a child process."""
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", _TWO_WORKERS, str(tmp_path / "ch")], cwd=repo, timeout=120,
                          capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["rows", "4000"]


def _written_since(root: Path, seen: set[tuple[str, int]]) -> int:
    """Bytes of the part files committed since the last call (a rewrite is a new inode)."""
    new = 0
    for path in root.rglob("part-*.parquet"):
        stat = path.stat()
        if (str(path), stat.st_ino) not in seen:
            seen.add((str(path), stat.st_ino))
            new += stat.st_size
    return new


def test_lake_sink_cost_per_flush_stays_flat_as_the_day_grows(tmp_path: Path) -> None:
    flushes, rows = 200, 500
    part = LakeSink(tmp_path, flush_s=0).build_part("out", "0", None)  # flush_s=0: a flush per batch
    seen: set[tuple[str, int]] = set()
    cost = []
    for i in range(flushes):
        batch = quotes(rows, offset=i * rows).to_pydict()
        batch["ts_recv_ns"] = [T0 + (i * rows + j) * 1_000 for j in range(rows)]
        part.write_batch([QUOTE.table(batch)])
        cost.append(_written_since(tmp_path, seen))
    part.close()
    # the 64 flushes at the end of the day (each a part, merges included) write what the first 64 did:
    # nothing grows with the rows already in the partition (the old sink rewrote all of them each time)
    assert sum(cost[-64:]) <= 1.3 * sum(cost[:64])
    appends = sorted(cost)[: flushes // 2]  # most flushes only append their part
    assert max(appends) <= 1.05 * min(appends)
    back = lake.read(QUOTE, tmp_path)
    assert back.num_rows == flushes * rows
    assert len(list((tmp_path / "quote").rglob("*.parquet"))) == 1  # compacted at close
