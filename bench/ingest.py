"""``tapeflow ingest`` throughput: DBN MBO and Binance JSON into the lake and embedded ClickHouse.

Inputs (real files under ``TAPEFLOW_REAL_DATA``, default ``../shared/data``):

- the CME ES MBO day (``esh4-glbx-mdp3-20231225.mbo.dbn.zst``, 68,792 records): small enough that
  fixed costs (opening chdb, table DDL, one fsync'd file per partition) weigh on the rate;
- the same records repeated 20 times, each copy shifted one day later, written once as a 20-day
  DBN file in a temporary directory (1,375,840 records, 21 lake partitions): the steady rate;
- the Binance USD-M BTCUSDT capture (532,924 events: depth deltas, trades, bookTickers).

Each is timed as the whole ``ingest`` call (decode -> lake + chdb, a fresh lake and emptied tables
every run) and as its write path alone (the same decoded chunks replayed through ``ingest`` by an
in-memory format, decode excluded). Medians of 3 after a warm-up; rates per CPU second of this
process (the warehouse thread included) and per wall second. A section then takes the 20 days
apart (decode, split, the lake's Parquet files, opening chdb, and the engine's insert by each path
it accepts: the writer's ArrowStream stream, clickhouse-connect's ``insert_arrow``, ``INSERT ...
SELECT FROM file(Parquet)``, and the Arrow parse alone into a ``Null`` table) and adds the parts
up into the CPU floor of the whole ingest on two cores. A last section shows the lake's zstd
level trade-off on the real files: bytes per stored row and write rate at levels 1, 3 and 9.

Run alone: ``python -m bench.ingest``.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench import Report, median_time

ES_MBO = "databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
BINANCE = "binance/usdm_btcusdt_20240808.gz"
COPIES = 20
NS_PER_DAY = 86_400 * 10**9
# README's benchmark table, measured before issue 8 (tapeflow ingest alone, same files)
BEFORE_DBN = "0.107 M/s"
BEFORE_JSON = "0.208 M/s"


def _real(relative: str) -> Path | None:
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / relative
    return path if path.exists() else None


def repeated_dbn(source: Path, copies: int, out: Path) -> Path:
    """A DBN MBO file holding ``source``'s records ``copies`` times, copy k shifted k days later."""
    import numpy as np
    import zstandard

    from tapeflow.venues.databento import messages as m

    with open(source, "rb") as fh:
        raw = zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()
    header_bytes = 8 + struct.unpack("<I", raw[4:8])[0]  # "DBN" + version, u32 metadata length
    records = np.frombuffer(raw[header_bytes:], dtype=m.record_dtype(m.MBO, 56))
    days = []
    for k in range(copies):
        copy = records.copy()
        for field in ("ts_event", "ts_recv"):
            copy[field] += np.uint64(k * NS_PER_DAY)
        days.append(copy)
    body = raw[:header_bytes] + np.concatenate(days).tobytes()
    out.write_bytes(zstandard.ZstdCompressor(level=3).compress(body))
    return out


def _replayed(chunks: list) -> object:
    """A format whose decoder hands back already decoded chunks: the write path alone."""
    from tapeflow.venues.base import VenueFormat

    def decode(paths: Sequence[Path]) -> Iterator:
        yield from chunks

    return VenueFormat(name="replayed", decode=decode, description="bench: decoded chunks in memory")


class _Runs:
    """A temporary lake and one chdb directory (one per process) shared by every timed run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dsn = f"chdb://{root / 'warehouse'}"
        self.events = 0

    def fresh(self) -> None:
        from tapeflow.schemas import ALL_RECORDS
        from tapeflow.storage.warehouse import Warehouse

        shutil.rmtree(self.root / "lake", ignore_errors=True)
        with Warehouse(self.dsn) as wh:  # emptied, not dropped: creating the tables is a first run's cost
            for name in ALL_RECORDS:
                wh.client.command(f"TRUNCATE TABLE IF EXISTS {name}")

    def ingest(self, fmt: object, path: Path) -> Callable[[], None]:
        from tapeflow.storage.ingest import ingest

        def run() -> None:
            summary = ingest(fmt, [path], lake=self.root / "lake", clickhouse=self.dsn, progress=False)
            self.events = summary.total_events

        return run


def _ingest_rows(report: Report, runs: _Runs, label: str, fmt_name: str, path: Path
                 ) -> tuple[float, float, float, float]:
    """Time the whole ingest and the write path alone; return (whole cpu, wall, write cpu, wall) rates."""
    from tapeflow.venues import get_format

    cpu, wall = median_time(runs.ingest(fmt_name, path), setup=runs.fresh)
    events = runs.events
    report.add(f"tapeflow ingest {label}", events, (cpu, wall), ours=True, note="decode + lake + chdb")
    chunks = list(get_format(fmt_name).decode([path]))
    w_cpu, w_wall = median_time(runs.ingest(_replayed(chunks), path), setup=runs.fresh)
    report.add(f"tapeflow ingest {label}, write path alone", events, (w_cpu, w_wall), ours=True,
               note="decoded chunks in memory -> lake + chdb")
    return events / cpu / 1e6, events / wall / 1e6, events / w_cpu / 1e6, events / w_wall / 1e6


def _breakdown(report: Report, runs: _Runs, path: Path) -> None:
    """Time each step of the ingest of ``path`` alone (CPU); note the floor they add up to."""
    import pyarrow.parquet as pq

    from tapeflow.schemas import concat
    from tapeflow.schemas.records import ORDER_EVENT
    from tapeflow.storage import lake
    from tapeflow.storage.compact import write_part
    from tapeflow.storage.stage import BlockStream, Stage
    from tapeflow.storage.warehouse import Warehouse
    from tapeflow.venues import get_format

    report.section(f"where the CPU of ingest goes: DBN MBO, ES x{COPIES}, each step alone")
    decode = median_time(lambda: list(get_format("dbn").decode([path])))
    table = concat(ORDER_EVENT, [c.tables["order_event"] for c in get_format("dbn").decode([path])])
    rows = table.num_rows
    split = median_time(lambda: list(lake.split(table)))
    partitions = [p for *_, p in lake.split(table)]
    files = runs.root / "breakdown"
    files.mkdir(exist_ok=True)

    def lake_files() -> None:
        for i, part in enumerate(partitions):
            stored = lake.sort_stable(ORDER_EVENT, part.drop_columns(list(lake.PARTITION_KEYS)))
            write_part(ORDER_EVENT, stored, files / f"part-{i}.parquet", tokens=[], seq=0)

    parquet = median_time(lake_files)
    for i, part in enumerate(partitions):  # with the partition columns, as the warehouse takes them
        pq.write_table(part, files / f"full-{i}.parquet", **lake.parquet_options(ORDER_EVENT))  # type: ignore[arg-type]
    opened = median_time(lambda: Warehouse(runs.dsn).close())
    steps = [("decode (DBN -> Arrow)", decode, "the venue decoder"),
             ("split into lake partitions", split, f"{len(partitions)} partitions"),
             ("lake: sort, Parquet encode (zstd 3), fsync", parquet, "one file per partition"),
             ("chdb: open and close the engine", opened, "once per ingest")]
    with Warehouse(runs.dsn) as wh:
        wh.ensure_tables([ORDER_EVENT])
        null = "_bench_null"
        wh.client.command(f"DROP TABLE IF EXISTS {null}")
        wh.client.command(ORDER_EVENT.clickhouse_ddl(null).split("ENGINE")[0] + "ENGINE = Null")

        def staged(fill: Callable[[Stage], object]) -> Callable[[], None]:
            def run() -> None:
                stage = wh.stage(ORDER_EVENT)
                try:
                    fill(stage)
                finally:
                    stage.drop()
            return run

        def streamed(stage: Stage, into: str | None = None) -> None:
            stream = BlockStream(wh, ORDER_EVENT, into or stage.name)
            for part in partitions:
                stream.add(part)
            stream.finish()

        inserts = [
            ("chdb insert: one ArrowStream stream, a block per partition", staged(streamed),
             "the writer's path"),
            ("chdb insert: insert_arrow, 65,536-row inserts", staged(lambda st: st.insert(table)),
             "clickhouse-connect"),
            ("chdb insert: INSERT ... SELECT FROM file(Parquet)",
             staged(lambda st: wh.client.command(
                 f"INSERT INTO {st.name} SELECT * FROM file('{files}/full-*.parquet', Parquet)")),
             "from the Parquet files"),
            ("chdb: parse the ArrowStream only (Null table)", staged(lambda st: streamed(st, null)),
             "no MergeTree part written"),
        ]
        timed = {name: median_time(fn) for name, fn, _ in inserts}
        wh.client.command(f"DROP TABLE {null}")
    for name, seconds, note in steps + [(n, timed[n], note) for n, _, note in inserts]:
        report.add(name, rows, seconds, ours=True, note=note)
    chdb_cpu = timed[inserts[0][0]][0]
    floor = decode[0] + split[0] + parquet[0] + opened[0] + chdb_cpu
    report.note(f"the parts of a whole ingest add up to {floor:.2f} CPU s for {rows:,} events "
                f"({rows / floor / 1e6:.2f} M per CPU second): on two cores kept fully busy, at most "
                f"{2 * rows / floor / 1e6:.2f} M events/s before any copy or hand-off between them "
                f"(the engine's insert {chdb_cpu:.2f} s, decode {decode[0]:.2f} s, "
                f"Parquet {parquet[0]:.2f} s)")
    shutil.rmtree(files, ignore_errors=True)


def _zstd_levels(report: Report, tables: dict[str, object]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bench import best_time
    from tapeflow.schemas import ALL_RECORDS
    from tapeflow.storage import lake

    report.section("lake Parquet: zstd level trade-off (rows/s written, bytes per stored row)")
    for name, table in tables.items():
        record = ALL_RECORDS[table.schema.metadata[b"tapeflow.record"].decode()]  # type: ignore[attr-defined]
        stored = lake.sort_stable(record, table).drop_columns(list(lake.PARTITION_KEYS))  # type: ignore[arg-type]
        for level in (1, 3, 9):
            sink: list[int] = []
            options = lake.parquet_options(record, level)

            def write(rows: pa.Table = stored, options: dict = options, sink: list[int] = sink) -> None:
                buf = pa.BufferOutputStream()
                pq.write_table(rows, buf, row_group_size=lake.ROW_GROUP_ROWS, **options)
                sink.append(buf.getvalue().size)

            timing = best_time(write)
            mark = " (the lake's)" if level == lake.ZSTD_LEVEL else ""
            report.add(f"{name}, zstd {level}{mark}", stored.num_rows, timing, ours=True,
                       note=f"{sink[-1] / stored.num_rows:.2f} bytes/row")


def run(report: Report) -> None:
    """Time ingest of the real DBN MBO and Binance files (and 20 days of MBO) into lake + chdb."""
    from tapeflow.schemas import concat
    from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT
    from tapeflow.venues import get_format

    report.section("tapeflow ingest -> lake + embedded ClickHouse (events/s)")
    es, binance = _real(ES_MBO), _real(BINANCE)
    if es is None and binance is None:
        report.note(f"skipped: {ES_MBO} and {BINANCE} not found (set TAPEFLOW_REAL_DATA)")
        return
    with tempfile.TemporaryDirectory(prefix="tapeflow-bench-ingest-") as tmp:
        runs = _Runs(Path(tmp))
        samples: dict[str, object] = {}
        if es is not None:
            big = repeated_dbn(es, COPIES, Path(tmp) / f"es_x{COPIES}.mbo.dbn.zst")
            label = f"DBN MBO, ES x{COPIES}"
            whole_cpu, whole, write_cpu, write = _ingest_rows(report, runs, label, "dbn", big)
            report.figure(f"tapeflow ingest DBN MBO -> lake + chdb (ES x{COPIES}, 1.38 M events)", whole,
                          "M events/s", goal=3.0, before=BEFORE_DBN,
                          note=f"wall; {whole_cpu:.2f} M/s per CPU second")
            report.figure(f"ingest write path alone, DBN MBO (ES x{COPIES})", write, "M events/s", goal=None,
                          note=f"wall, decode excluded; {write_cpu:.2f} M/s per CPU second")
            small_cpu, small, _, _ = _ingest_rows(report, runs, "DBN MBO, ES day (68,792)", "dbn", es)
            report.figure("tapeflow ingest DBN MBO, the real ES file (68,792 events)", small, "M events/s",
                          goal=3.0, before=BEFORE_DBN,
                          note=f"wall; {small_cpu:.2f} M/s per CPU second; fixed costs (chdb open, DDL, "
                          "an fsynced file per partition) weigh on a file this small")
            samples["order_event, ES MBO day"] = concat(
                ORDER_EVENT, [c.tables["order_event"] for c in get_format("dbn").decode([es])])
        if binance is not None:
            whole_cpu, whole, write_cpu, write = _ingest_rows(report, runs, "Binance JSON, USD-M capture",
                                                              "binance", binance)
            report.figure("tapeflow ingest Binance JSON -> lake + chdb (532,924 events)", whole, "M events/s",
                          goal=1.0, before=BEFORE_JSON, note=f"wall; {whole_cpu:.2f} M/s per CPU second")
            report.figure("ingest write path alone, Binance JSON", write, "M events/s", goal=None,
                          note=f"wall, decode excluded; {write_cpu:.2f} M/s per CPU second")
            samples["book_delta, Binance USD-M"] = concat(
                BOOK_DELTA, [c.tables["book_delta"] for c in get_format("binance").decode([binance])
                             if "book_delta" in c.tables])
        report.note("median of 3 after a warm-up; every run starts from an empty lake and empty (existing) "
                    "tables; the chdb engine is opened and closed by each run, as by the CLI")
        if es is not None:  # last: chdb removes the tables it drops in the background, in later runs' time
            _breakdown(report, runs, big)
    _zstd_levels(report, samples)


if __name__ == "__main__":
    r = Report()
    run(r)
    print(r.render())
