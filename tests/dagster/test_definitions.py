"""The Definitions load, and hold the shape the batch runtime promises."""

from __future__ import annotations

import dagster as dg
import pytest


def test_definitions_load_with_groups_blocking_checks_and_single_run_backfills() -> None:
    from quality import check_names
    from tests.dagster.conftest import definitions

    repo = definitions().get_repository_def()
    graph = repo.asset_graph
    groups = {graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups == {"ingest", "book", "derived", "signals", "quality", "warehouse", "ml", "options"}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.backfill_policy == dg.BackfillPolicy.single_run(), key
        # the options group is partitioned by underlying-day (deribit.BTC), every other by instrument-day
        second = "underlying" if node.group_name == "options" else "instrument"
        assert node.partitions_def is not None and node.partitions_def.partitions_defs[1].name == second
        assert node.partitions_def.partitions_defs[0].partitions_def.start.date().isoformat() == "2023-12-01"
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {("book_snapshots", n) for n in check_names("book_snapshots")} <= checks
    assert {("trades", n) for n in check_names("trades")} <= checks
    # every quality check blocks; the options' no-arbitrage count only warns, and the cross-strike
    # planted-truth score only reports
    assert {k for k in graph.asset_check_keys if not graph.get_check_spec(k).blocking} == {
        dg.AssetCheckKey(dg.AssetKey("option_surfaces"), "no_arbitrage"),
        dg.AssetCheckKey(dg.AssetKey("option_flow_signals"), "planted_cross_strike")}
    job = repo.get_job("tapeflow_days")
    assert job.executor_def.name == "in_process"
    assert "option_surfaces" not in {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {k.to_user_string() for k in repo.get_job("option_days").asset_layer.selected_asset_keys} == {
        "option_tickers", "option_surfaces", "option_flow_signals"}
    assert {s.name for s in repo.sensor_defs} == {"landing_sensor", "gap_repair_sensor",
                                                  "alert_run_failure_sensor", "alert_check_sensor",
                                                  "databento_gap_repair_sensor", "options_sensor",
                                                  "drift_sensor"}
    assert [s.name for s in repo.schedule_defs] == ["daily_schedule", "retrain_schedule"]
    # the champion retrains in its own job, after the daily backfill, not inside it
    assert "champion" not in {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert {k.to_user_string() for k in repo.get_job("retrain_days").asset_layer.selected_asset_keys} == {
        "champion"}


@pytest.mark.parametrize(("venue", "symbol", "key"), [
    ("binance-usdm", "BTCUSDT", "binance-usdm.BTCUSDT"),
    ("GLBX.MDP3", "ESH4", "GLBX%2EMDP3.ESH4"),
    ("kraken", "XBT/USD", "kraken.XBT%2FUSD"),
    ("odd|venue", "A,B...[C]", "odd%7Cvenue.A%2CB%2E%2E%2E%5BC%5D"),
])
def test_instrument_keys_are_reversible_and_valid_partition_keys(venue: str, symbol: str, key: str) -> None:
    from assets.partitions import DAY_BY_INSTRUMENT, instrument_key, parse_instrument_key

    assert instrument_key(venue, symbol) == key
    assert parse_instrument_key(key) == (venue, symbol)
    # dagster's multi-partition keys join dimensions with "|", ranges and lists use "," "[" "]" "..."
    assert not any(bad in key for bad in ("|", ",", "[", "]", "...", "\n", "\t"))
    parsed = DAY_BY_INSTRUMENT.get_partition_key_from_str(f"2024-01-01|{key}")
    assert parsed.keys_by_dimension == {"date": "2024-01-01", "instrument": key}


def test_runs_cover_exactly_the_wanted_days_with_as_few_runs_as_contiguity_allows() -> None:
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from dagster_project.runs import partition_runs

    instruments = ["sim.A", "sim.B", "sim.C"]
    wanted = [(d, "sim", s) for d in ("2024-01-01", "2024-01-02") for s in "ABC"]
    wanted.append(("2024-01-03", "sim", "B"))
    runs = partition_runs(wanted, instruments)
    assert [(r.tags.get(ASSET_PARTITION_RANGE_START_TAG), r.tags.get(ASSET_PARTITION_RANGE_END_TAG),
             r.partition_key) for r in runs] == [
        ("2024-01-01|sim.A", "2024-01-02|sim.C", None),  # six contiguous keys: one run
        (None, None, "2024-01-03|sim.B"),
    ]
