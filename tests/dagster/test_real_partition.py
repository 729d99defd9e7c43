"""A real instrument-day through the landing folder: CME ES MBO (DBN), counted with databento_dbn."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import databento_dbn
import pytest
import zstandard

from tests.conftest import need
from tests.dagster.conftest import Deployment, check_results, materializations, materialize, register

ES = "databento/glbx/esh4-glbx-mdp3-{day}.mbo.dbn.zst"
DAY, DAY2 = "2023-12-24", "2023-12-25"
NS_PER_DAY = 86_400_000_000_000
DAY_INDEX = 1_703_376_000 // 86_400  # 2023-12-24
MINUTE_NS = 60_000_000_000


def _records(path: Path) -> list[databento_dbn.MBOMsg]:
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    decoder = databento_dbn.DBNDecoder()
    decoder.write(raw)
    return [r for r in decoder.decode() if isinstance(r, databento_dbn.MBOMsg)]


@pytest.mark.realdata
def test_es_mbo_days_from_the_landing_folder(real_data: Path, tmp_path: Path) -> None:
    """Both ES days as one single-run backfill: the holiday's crossed pre-open no longer blocks."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from assets.partitions import instrument_key
    from tapeflow.schemas.records import BAR, BBO, BOOK_SNAPSHOT, METRIC, ORDER_EVENT, TRADE
    from tapeflow.storage import lake

    files = [need(real_data / ES.format(day=d)) for d in ("20231224", "20231225")]
    landing = tmp_path / "landing" / "dbn"
    landing.mkdir(parents=True)
    for f in files:  # linked, never copied
        (landing / f.name).symlink_to(f)
    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert days == [("GLBX.MDP3", "ESH4", DAY), ("GLBX.MDP3", "ESH4", DAY2)]
    key = instrument_key("GLBX.MDP3", "ESH4")
    result = materialize(dep, instance, tags={ASSET_PARTITION_RANGE_START_TAG: f"{DAY}|{key}",
                                              ASSET_PARTITION_RANGE_END_TAG: f"{DAY2}|{key}"})
    assert result.success
    evaluations = check_results(result)
    assert [k for k, ev in evaluations.items() if not ev.passed and ev.severity.value == "ERROR"] == []
    meta = materializations(result)
    assert {"features", "daily_baselines", "clickhouse_tables", "data_docs"} <= set(meta)

    def part(record, date):
        return lake.read(record, dep.lake, venue="GLBX.MDP3", symbol="ESH4", date=date)

    # independent: the vendor's decoder, records whose exchange time falls on each day
    records = [r for f in files for r in _records(f)]
    on = {d: [r for r in records if r.ts_event // NS_PER_DAY == i] for d, i in ((DAY, DAY_INDEX),
                                                                            (DAY2, DAY_INDEX + 1))}
    assert [part(ORDER_EVENT, d).num_rows for d in (DAY, DAY2)] == [len(on[DAY]), len(on[DAY2])]
    keys = {d: f"{d}|{key}" for d in (DAY, DAY2)}
    assert len(on[DAY]) == 17_450
    for d in (DAY, DAY2):  # each partition reports its own rows, not the run's
        assert meta["order_events"][keys[d]]["dagster/row_count"] == len(on[d])
        assert meta["dead_letters"][keys[d]]["dagster/row_count"] == 0
        assert meta["order_events"][keys[d]]["gap_rows"] == 0
        assert meta["clickhouse_tables"][keys[d]]["rows_by_table"]["order_event"] == len(on[d])
    assert len(on[DAY]) + len(on[DAY2]) == len(records)
    # one published state on Dec 24 (the snapshot's F_LAST record): one grid instant
    assert part(BOOK_SNAPSHOT, DAY).num_rows == sum(1 for r in on[DAY] if r.flags & 128) == 1

    # the MBO file has no trade file: trades are its T events, and the day gets bars and features
    raw_trades = [r for r in on[DAY2] if r.action == databento_dbn.Action.TRADE]
    trades = part(TRADE, DAY2)
    assert trades.num_rows == len(raw_trades) == 2_973
    assert meta["trades"][keys[DAY2]]["trades_from_order_events"] is True
    assert meta["trades"][keys[DAY2]]["dagster/row_count"] == len(raw_trades)
    bars = part(BAR, DAY2).column("interval").to_pylist()
    assert bars.count("1m") == len({r.ts_event // MINUTE_NS for r in raw_trades}) == 60
    assert meta["bars"][keys[DAY2]]["bar_thresholds"]["source"] == "day"
    assert part(METRIC, DAY2).num_rows > 0

    # the pre-open book crosses until the opening match: counted, not failed
    open_ns = raw_trades[0].ts_recv
    snaps = part(BOOK_SNAPSHOT, DAY2).to_pylist()
    crossed = [r for r in snaps if r["bid_price_nanos"] and r["ask_price_nanos"]
               and r["bid_price_nanos"][0] >= r["ask_price_nanos"][0]]
    assert len(crossed) > 1_000 and all(r["ts_recv_ns"] < open_ns for r in crossed)
    check = evaluations[("book_snapshots", "crossed_book")]
    assert check.passed and check.metadata["pre_open_crossed"].value == len(crossed)
    quotes = part(BBO, DAY2).to_pylist()
    crossed_quotes = sum(1 for q in quotes if q["bid_price_nanos"] >= q["ask_price_nanos"])
    assert crossed_quotes > 0 and all(q["ts_recv_ns"] < open_ns for q in quotes
                                      if q["bid_price_nanos"] >= q["ask_price_nanos"])
    assert evaluations[("bbo", "crossed_book")].metadata["pre_open_crossed"].value == crossed_quotes
    assert evaluations[("features", "crossed_book")].passed


@pytest.mark.realdata
def test_es_start_of_week_book_from_the_lake_is_the_snapshot(real_data: Path, tmp_path: Path) -> None:
    from tapeflow.book.l3 import l3_book_snapshots
    from tapeflow.schemas.records import ORDER_EVENT
    from tapeflow.storage import lake
    from tapeflow.storage.writer import write
    from tapeflow.venues.databento.parse import decode_all

    path = need(real_data / ES.format(day="20231224"))
    records = _records(path)
    bids = [r.price for r in records if r.action == "A" and r.side == "B"]
    asks = [r.price for r in records if r.action == "A" and r.side == "A"]
    write(ORDER_EVENT, decode_all([path])["order_event"], tmp_path)
    events = lake.read(ORDER_EVENT, tmp_path, venue="GLBX.MDP3", symbol="ESH4", date=DAY)
    snap = l3_book_snapshots(events, levels=1).to_pylist()[-1]
    assert (snap["bid_price_nanos"][0], snap["ask_price_nanos"][0]) == (max(bids), min(asks))
