"""The derived derivatives metrics as a Dagster asset over the lake: the live stage's definition."""

from __future__ import annotations

import random
from pathlib import Path

import dagster as dg

from tests.dagster.conftest import Deployment, definitions


def test_asset_writes_the_batch_definition_of_the_days_rows(tmp_path: Path) -> None:
    from assets.derivatives import CLUSTERS, CONFIG
    from assets.partitions import INSTRUMENTS_NAME, instrument_key, partition_key
    from tapeflow.derivatives.live_clusters import batch_clusters
    from tapeflow.derivatives.live_derived import LiveDerived, batch_derived
    from tapeflow.schemas.derivatives import (
        DERIVATIVE_BASIS,
        LIQUIDATION,
        LIQUIDATION_CLUSTER,
        OPEN_INTEREST_CHANGE,
    )
    from tapeflow.storage import lake
    from tapeflow.storage.writer import write
    from tests.derivatives.test_live_clusters import _liquidations
    from tests.derivatives.test_live_clusters import _table as _liq_table
    from tests.derivatives.test_live_derived import _RECORDS, _stream, _tables

    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    shift = (1_704_153_660 - 1_700_000_000) * 10**9  # to 2024-01-02 00:01 UTC, inside the partitions
    rows = [(n, r | {"symbol": "BTCUSDT", "ts_event_ns": r["ts_event_ns"] + shift,
                     "ts_recv_ns": r["ts_recv_ns"] + shift}) for n, r in _stream(seed, n=300)]
    tables = _tables(rows)
    dep = Deployment(tmp_path)
    for name, table in tables.items():
        write(_RECORDS[name], table, dep.lake)
    liqs = [r | {"venue": "binance-usdm", "symbol": "BTCUSDT", "ts_event_ns": r["ts_event_ns"] + shift,
                 "ts_recv_ns": r["ts_recv_ns"] + shift} for r in _liquidations(seed, n=150)]
    write(LIQUIDATION, _liq_table(liqs), dep.lake)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(INSTRUMENTS_NAME, [instrument_key("binance-usdm", "BTCUSDT")])
    asset = next(a for a in definitions().assets if "derivatives_derived" in {k.path[-1] for k in a.keys})
    key = partition_key("2024-01-02", "binance-usdm", "BTCUSDT")
    result = dg.materialize([asset], partition_key=key, resources=dep.resources(), instance=instance)
    assert result.success
    want = batch_derived(tables, CONFIG)
    # the live stage on the same rows, as they arrived: the same records
    stage = LiveDerived(CONFIG)
    live = stage.update(tables) + stage.flush()
    for record in (DERIVATIVE_BASIS, OPEN_INTEREST_CHANGE):
        got = lake.read(record, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date="2024-01-02")
        assert got.num_rows == want[record.name].num_rows > 100
        assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, want[record.name].to_pylist()))
        mine = [t for n, t in live if n == record.name]
        assert sum(t.num_rows for t in mine) == got.num_rows
    clusters = lake.read(LIQUIDATION_CLUSTER, dep.lake, venue="binance-usdm", symbol="BTCUSDT",
                         date="2024-01-02")
    want_clusters = batch_clusters(_liq_table(liqs), CLUSTERS)
    assert want_clusters.num_rows > 0
    assert sorted(map(repr, clusters.to_pylist())) == sorted(map(repr, want_clusters.to_pylist()))
