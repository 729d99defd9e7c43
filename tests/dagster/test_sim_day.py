"""A simulated instrument-day materialized in-process: ingest -> book -> bars -> checks -> ClickHouse.

Expected counts come from the raw ``sim`` file (its lines by message type), never from the code
under test; parity is checked against the live flow's own stages fed in micro-batches.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.dagster.conftest import (
    SIM_DAY,
    Deployment,
    check_results,
    check_status,
    copy_landing,
    materializations,
    materialize,
    register,
    sim_lines,
)

SYMBOL = "SIM-ETHUSDT"
KEY = f"{SIM_DAY}|sim.{SYMBOL}"
NS = 1_000_000_000
INTERVAL_NS = {"s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86400 * NS}


@pytest.fixture(scope="module")
def built(sim_files: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Deployment, dg.DagsterInstance, dg.ExecuteInProcessResult]:
    from assets.partitions import partition_key

    dep = copy_landing(sim_files, tmp_path_factory.mktemp("day"))
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert days == [("sim", "SIM-BTCUSDT", SIM_DAY), ("sim", SYMBOL, SIM_DAY)]
    return dep, instance, materialize(dep, instance, partition_key=partition_key(SIM_DAY, "sim", SYMBOL))


def _file(dep: Deployment) -> Path:
    return dep.landing / "sim" / SYMBOL / f"{SIM_DAY}.events.csv.gz"


def test_materialization_metadata_counts_match_the_raw_file(built) -> None:
    dep, _, result = built
    assert result.success
    lines = sim_lines(_file(dep))
    kinds = Counter(r[3] for r in lines)
    # Databento MBO semantics: an E line is a trade, a fill and a cancel; H a lone trade
    events = kinds["R"] + kinds["S"] + kinds["A"] + kinds["D"] + 3 * kinds["E"] + kinds["H"]
    meta = {name: by_key[KEY] for name, by_key in materializations(result).items()}
    assert meta["order_events"]["dagster/row_count"] == events
    assert meta["trades"]["dagster/row_count"] == kinds["E"] + kinds["H"]
    assert meta["dead_letters"]["dagster/row_count"] == 0
    assert meta["trades"]["rejected_rows"] == 0 and meta["order_events"]["gap_rows"] == 0
    # the 1 s capture-time grid runs from the first arrival to the first instant at/after the last
    recv = [int(r[1]) for r in lines]
    first, last = -(-recv[0] // NS), -(-max(recv) // NS)
    assert meta["book_snapshots"]["dagster/row_count"] == last - first + 1
    trades_ts = [int(r[0]) for r in lines if r[3] in "EH"]
    by_interval = meta["bars"]["bars_by_interval"]
    time_frames = [i for i in by_interval if ":" not in i]
    for interval in time_frames:
        step = int(interval[:-1]) * INTERVAL_NS[interval[-1]]
        assert by_interval[interval] == len({t // step for t in trades_ts}), interval
    assert len(time_frames) == 15
    assert by_interval["tick:100"] == -(-len(trades_ts) // 100)
    assert {i.split(":")[0] for i in by_interval if ":" in i} == {"tick", "volume", "dollar"}
    for name in ("trades", "order_events", "book_snapshots", "bars"):
        assert meta[name]["bytes_written"] > 0 and meta[name]["first_event"].startswith(SIM_DAY)
    assert "|" in meta["order_events"]["preview"]


def test_every_check_passes_on_a_clean_day_and_what_cannot_be_judged_is_skipped(built) -> None:
    from quality import check_names

    _, instance, result = built
    evaluations = check_results(result)
    expected = {("trades", n) for n in check_names("trades")} | {("book_snapshots", n) for n in
                                                                    check_names("book_snapshots")}
    # a first day has no baseline, and the sim feed no venue BBO to judge trades against
    skipped = {("trades", "rows_vs_baseline"), ("trades", "volume_vs_baseline"),
               ("trades", "trade_inside_book"), ("book_snapshots", "rows_vs_baseline")}
    assert expected - skipped <= set(evaluations) and not skipped & set(evaluations)
    failed = [k for k, ev in evaluations.items() if not ev.passed]
    assert failed == []
    assert {k: check_status(instance, *k) for k in skipped} == dict.fromkeys(skipped, "SKIPPED")
    assert check_status(instance, "trades", "schema") == "SUCCEEDED"


def test_warehouse_holds_the_lake_rows_once_even_after_rematerializing(built) -> None:
    from assets.partitions import partition_key
    from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, ORDER_EVENT, TRADE
    from tapeflow.storage import lake
    from tapeflow.storage.warehouse import Warehouse

    dep, instance, _ = built
    records = (TRADE, ORDER_EVENT, BOOK_SNAPSHOT, BAR)
    lake_rows = {r.name: lake.read(r, dep.lake, venue="sim", symbol=SYMBOL, date=SIM_DAY).num_rows
                 for r in records}
    again = materialize(dep, instance, partition_key=partition_key(SIM_DAY, "sim", SYMBOL))
    assert again.success
    with Warehouse(dep.dsn) as wh:
        counts = {r.name: wh.count(r, f"symbol = '{SYMBOL}'") for r in records}
    assert counts == lake_rows and all(counts.values())


def test_batch_day_equals_the_live_flow_over_micro_batches(built) -> None:
    """Snapshots and bars of the materialized day equal what the live stages emit for the same feed."""
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.book.stage import BookStage
    from tapeflow.derived import LiveBars
    from tapeflow.schemas import concat
    from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, ORDER_EVENT, TRADE
    from tapeflow.storage import lake
    from tapeflow.venues import get_format

    dep, _, _ = built
    stage, live_bars = BookStage("auto"), LiveBars()
    snaps, bars = [], []
    for chunk in get_format("sim").decode([_file(dep)]):
        events, trades = chunk.get(ORDER_EVENT), chunk.get(TRADE)
        for start in range(0, events.num_rows, 5_000):  # live-sized micro-batches
            snaps.append(stage.apply({ORDER_EVENT.name: events.slice(start, 5_000)})[BOOK_SNAPSHOT.name])
        bars.append(live_bars.add(trades))
    snaps.append(stage.close()[BOOK_SNAPSHOT.name])
    bars.append(live_bars.close())
    live_snaps = concat(BOOK_SNAPSHOT, snaps)
    batch_snaps = lake.read(BOOK_SNAPSHOT, dep.lake, venue="sim", symbol=SYMBOL, date=SIM_DAY)
    assert batch_snaps.num_rows > 100
    assert batch_snaps.equals(live_snaps)
    cli_snaps, _ = snapshots_for_format("sim", [_file(dep)], levels=10, interval_ns=NS)
    assert batch_snaps.equals(cli_snaps)

    final = _final_revisions(concat(BAR, bars))
    batch_bars = lake.read(BAR, dep.lake, venue="sim", symbol=SYMBOL, date=SIM_DAY)
    time_frames = pc.invert(pc.match_substring(batch_bars.column("interval"), ":"))
    batch_bars = batch_bars.filter(time_frames)  # the live flow builds time bars only
    key = [("interval", "ascending"), ("ts_event_ns", "ascending")]
    assert batch_bars.num_rows == final.num_rows
    assert batch_bars.drop_columns(["revision"]).sort_by(key).equals(
        final.drop_columns(["revision"]).sort_by(key))


def _final_revisions(bars: pa.Table) -> pa.Table:
    rows = {}
    for i, (interval, ts, rev) in enumerate(zip(bars.column("interval").to_pylist(),
                                                bars.column("ts_event_ns").to_pylist(),
                                                bars.column("revision").to_pylist(), strict=True)):
        if (interval, ts) not in rows or rev >= rows[(interval, ts)][0]:
            rows[(interval, ts)] = (rev, i)
    return bars.take(pa.array(np.array(sorted(i for _, i in rows.values()), np.int64)))
