"""What a data engineer sees in Dagster, read back from the instance the UI reads.

Per-partition materialization metadata (not the run's totals), checks that could not be judged
shown Skipped, partitions that start where the data starts, and sensor runs tagged as such.
Expected numbers come from the raw files or the lake, never from the metadata code.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from dagster_project.definitions import day_assets
from tests.dagster.conftest import (
    SIM_DAY,
    Deployment,
    check_status,
    copy_landing,
    definitions,
    open_instance,
    sim_lines,
)

SYMBOLS = ("SIM-BTCUSDT", "SIM-ETHUSDT")
NS = 1_000_000_000


def _latest(instance: dg.DagsterInstance, asset: str, key: str) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _iso(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, NS)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=nanos // 1000).isoformat()


@pytest.fixture(scope="module")
def two_instruments(sensor_day: Deployment
                    ) -> Iterator[tuple[Deployment, dg.DagsterInstance, dict[str, str]]]:
    """One run over both instruments of the simulated day, as the landing sensor asks for it (the
    session's shared materialization, read only)."""
    with open_instance(sensor_day) as instance:
        yield sensor_day, instance, {s: f"{SIM_DAY}|sim.{s}" for s in SYMBOLS}


def test_each_partition_of_a_range_run_reports_its_own_rows_rejects_gaps_and_span(two_instruments) -> None:
    from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, ORDER_EVENT, TRADE
    from tapeflow.storage import lake

    dep, instance, keys = two_instruments
    assert len(instance.get_runs()) == 1  # one run covered both partitions
    trades_per_symbol = {}
    for symbol, key in keys.items():
        lines = sim_lines(dep.landing / "sim" / symbol / f"{SIM_DAY}.events.csv.gz")
        kinds = Counter(r[3] for r in lines)
        # Databento MBO semantics: an E line is a trade, a fill and a cancel; H a lone trade
        events = kinds["R"] + kinds["S"] + kinds["A"] + kinds["D"] + 3 * kinds["E"] + kinds["H"]
        trades_per_symbol[symbol] = kinds["E"] + kinds["H"]
        trades, orders = _latest(instance, "trades", key), _latest(instance, "order_events", key)
        assert trades["dagster/row_count"] == kinds["E"] + kinds["H"]
        assert orders["dagster/row_count"] == events
        assert trades["rejected_rows"] == 0 and trades["rejected_by_reason"] == {}
        assert orders["gap_rows"] == 0 and trades["partitions_in_run"] == 2
        traded = [int(r[0]) for r in lines if r[3] in "EH"]
        assert (trades["first_event"], trades["last_event"]) == (_iso(min(traded)), _iso(max(traded)))
        assert trades["span_s"] == round((max(traded) - min(traded)) / 1e9, 3)
        for asset, record in (("book_snapshots", BOOK_SNAPSHOT), ("bars", BAR), ("order_events", ORDER_EVENT),
                              ("trades", TRADE)):
            rows = lake.read(record, dep.lake, venue="sim", symbol=symbol, date=SIM_DAY).num_rows
            assert _latest(instance, asset, key)["dagster/row_count"] == rows > 0, asset
        page = _latest(instance, "data_docs", key)
        assert page["suites"] == 8 and page["page"].endswith("index.html")
    # the two partitions differ: each reports its own count, neither the run's total
    assert trades_per_symbol[SYMBOLS[0]] != trades_per_symbol[SYMBOLS[1]]


def test_checks_that_cannot_be_judged_show_skipped_not_passed(two_instruments) -> None:
    _, instance, _ = two_instruments
    # a first day has no 5-day baseline; the simulated feed has no venue BBO to judge trades against
    for asset, check in (("trades", "rows_vs_baseline"), ("trades", "volume_vs_baseline"),
                         ("trades", "trade_inside_book"), ("bars", "volume_vs_baseline"),
                         ("order_events", "rows_vs_baseline")):
        assert check_status(instance, asset, check) == "SKIPPED", (asset, check)
    assert check_status(instance, "order_events", "sequence_gaps") == "SUCCEEDED"


def test_sensor_runs_carry_the_sensor_name_the_run_list_shows(two_instruments) -> None:
    _, instance, _ = two_instruments
    [run] = instance.get_run_records()
    # the UI's "Launched by" column shows a sensor for this tag, "Manually launched" without it
    assert run.dagster_run.tags["dagster/sensor_name"] == "landing_sensor"
    assert run.dagster_run.tags["tapeflow/trigger"] == "landing"


def test_partitions_start_where_the_data_starts_or_as_configured(two_instruments, tmp_path: Path) -> None:
    from dagster_project.definitions import PARTITIONS_START, partitions_start
    from tapeflow.errors import ConfigError

    dep, instance, keys = two_instruments
    today = dt.date(2024, 3, 1)
    env = {"TAPEFLOW_LAKE": str(dep.lake), "TAPEFLOW_JOURNAL": str(dep.root / "journal")}
    assert partitions_start(env, today=today) == SIM_DAY  # the source index: the simulated day
    assert partitions_start({**env, PARTITIONS_START: "2023-06-01"}, today=today) == "2023-06-01"
    with pytest.raises(ConfigError, match="2023-13-01"):
        partitions_start({**env, PARTITIONS_START: "2023-13-01"})
    empty = {"TAPEFLOW_LAKE": str(tmp_path / "lake"), "TAPEFLOW_JOURNAL": str(tmp_path / "journal")}
    assert partitions_start(empty, today=today) == "2024-03-01"
    journal = tmp_path / "journal" / "binance-usdm"
    journal.mkdir(parents=True)
    (journal / "2023-11-05.jsonl").write_text("")
    assert partitions_start(empty, today=today) == "2023-11-05"

    repo = definitions(partitions_start(env)).get_repository_def()
    partitions = repo.get_job("tapeflow_days").partitions_def
    days = partitions.get_partition_keys(dynamic_partitions_store=instance)
    assert str(days[0]) == keys[SYMBOLS[0]]  # the simulated day is the first partition, not 2012's
    expected = ((dt.datetime.now(dt.UTC).date() - dt.date.fromisoformat(SIM_DAY)).days + 1) * len(SYMBOLS)
    assert len(days) == expected
    done = instance.get_materialized_partitions(dg.AssetKey("trades"))
    assert done == set(keys.values())


def test_a_source_older_than_the_partitions_waits_for_a_reload(sim_files: Path, tmp_path: Path) -> None:
    from dagster_project.sensors import landing_sensor

    dep = copy_landing(sim_files, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    late = definitions("2024-01-02")  # loaded before the simulated day's files arrived
    tick = landing_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources(),
                                                  definitions=late))
    assert tick.run_requests == [] and "wait" in tick.skip_reason.skip_message
    # reloaded: the partitions now start at the data, and the waiting days are requested
    again = landing_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources(),
                                                   cursor=tick.cursor, definitions=definitions(SIM_DAY)))
    [run] = again.run_requests
    assert run.tags["dagster/asset_partition_range_start"] == f"{SIM_DAY}|sim.{SYMBOLS[0]}"
    assert again.cursor is not None and '"waiting": []' in again.cursor
    assert np.array_equal(sorted(again.dynamic_partitions_requests[0].partition_keys),
                          [f"sim.{s}" for s in SYMBOLS])


def test_a_subset_run_writes_and_checks_only_what_it_selected(sim_files: Path, tmp_path: Path) -> None:
    """On its own deployment (the runs write; the session's day is read-only): the lake's index
    names its landing files by path, so a copied lake would point at the shared landing folder."""
    from tests.dagster.conftest import check_results, materializations, register

    dep = copy_landing(sim_files, tmp_path)
    keys = {s: f"{SIM_DAY}|sim.{s}" for s in SYMBOLS}
    assets = day_assets(definitions())
    with dg.DagsterInstance.ephemeral() as instance:
        register(instance, dep)
        only_trades = dg.materialize(assets, selection=["trades"], partition_key=keys[SYMBOLS[0]],
                                     resources=dep.resources(), instance=instance, raise_on_error=False)
        assert only_trades.success
        assert set(materializations(only_trades)) == {"trades"}
        assert {asset for asset, _ in check_results(only_trades)} == {"trades"}
        # one check of an asset selected: the asset is built and only that check reports
        one_check = dg.AssetCheckKey(dg.AssetKey("bars"), "ohlc_consistent")
        selection = dg.AssetSelection.assets("bars").without_checks() | dg.AssetSelection.checks(one_check)
        subset = dg.materialize(assets, selection=selection, partition_key=keys[SYMBOLS[0]],
                                resources=dep.resources(), instance=instance, raise_on_error=False)
    assert subset.success and set(materializations(subset)) == {"bars"}
    assert set(check_results(subset)) == {("bars", "ohlc_consistent")}
