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
DAY = "2023-12-24"
NS_PER_DAY = 86_400_000_000_000


def _records(path: Path) -> list[databento_dbn.MBOMsg]:
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    decoder = databento_dbn.DBNDecoder()
    decoder.write(raw)
    return [r for r in decoder.decode() if isinstance(r, databento_dbn.MBOMsg)]


@pytest.mark.realdata
def test_es_mbo_day_from_the_landing_folder(real_data: Path, tmp_path: Path) -> None:
    from assets.partitions import partition_key

    files = [need(real_data / ES.format(day=d)) for d in ("20231224", "20231225")]
    landing = tmp_path / "landing" / "dbn"
    landing.mkdir(parents=True)
    for f in files:  # linked, never copied
        (landing / f.name).symlink_to(f)
    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert days == [("GLBX.MDP3", "ESH4", "2023-12-24"), ("GLBX.MDP3", "ESH4", "2023-12-25")]

    result = materialize(dep, instance, partition_key=partition_key(DAY, "GLBX.MDP3", "ESH4"))
    assert result.success
    # independent: the vendor's decoder, records whose exchange time falls on the day
    day = [r for f in files for r in _records(f) if r.ts_event // NS_PER_DAY * NS_PER_DAY
           == 1_703_376_000 * 1_000_000_000]
    meta = materializations(result)
    assert meta["order_events"][0]["dagster/row_count"] == len(day) == 17_450
    assert meta["dead_letters"][0]["dagster/row_count"] == 0 and meta["order_events"][0]["gap_rows"] == 0
    assert meta["clickhouse_tables"][0]["rows_by_table"]["order_event"] == len(day)
    # one published state (the snapshot's F_LAST record) on the day: one grid instant
    assert meta["book_snapshots"][0]["dagster/row_count"] == sum(1 for r in day if r.flags & 128) == 1
    evaluations = check_results(result).items()
    blocking = [k for k, ev in evaluations if not ev.passed and ev.severity.value == "ERROR"]
    assert blocking == []


@pytest.mark.realdata
def test_es_start_of_week_book_from_the_lake_is_the_snapshot(real_data: Path, tmp_path: Path) -> None:
    from tapeflow.book_l3 import l3_book_snapshots
    from tapeflow.schemas.records import ORDER_EVENT
    from tapeflow.storage import lake
    from tapeflow.venues.databento.parse import decode_all

    path = need(real_data / ES.format(day="20231224"))
    records = _records(path)
    bids = [r.price for r in records if r.action == "A" and r.side == "B"]
    asks = [r.price for r in records if r.action == "A" and r.side == "A"]
    lake.write(ORDER_EVENT, decode_all([path])["order_event"], tmp_path)
    events = lake.read(ORDER_EVENT, tmp_path, venue="GLBX.MDP3", symbol="ESH4", date=DAY)
    snap = l3_book_snapshots(events, levels=1).to_pylist()[-1]
    assert (snap["bid_price_nanos"][0], snap["ask_price_nanos"][0]) == (max(bids), min(asks))
