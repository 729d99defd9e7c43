"""The derived derivatives metrics as a Dagster asset over the lake: the live stage's definition."""

from __future__ import annotations

import random
from pathlib import Path

import dagster as dg

from tests.dagster.conftest import Deployment, definitions


def test_asset_writes_the_batch_definition_of_the_days_rows(tmp_path: Path) -> None:
    import pyarrow as pa

    from assets import checks, common
    from assets.derivatives import CONFIG, _stored
    from assets.partitions import INSTRUMENTS_NAME, instrument_key, partition_key
    from quality import check_names
    from tapeflow.batch.targets import Target
    from tapeflow.derivatives.live_clusters import ClusterConfig, batch_clusters
    from tapeflow.derivatives.live_derived import LiveDerived, batch_derived
    from tapeflow.schemas.derivatives import (
        DERIVATIVE_BASIS,
        LIQUIDATION,
        LIQUIDATION_CLUSTER,
        OPEN_INTEREST_CHANGE,
    )
    from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE
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
    t = Target("2024-01-02", "binance-usdm", "BTCUSDT")
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
    want_clusters = batch_clusters(_liq_table(liqs), ClusterConfig())  # the shipped file's values
    assert want_clusters.num_rows > 0
    assert sorted(map(repr, clusters.to_pylist())) == sorted(map(repr, want_clusters.to_pylist()))
    # the suites of the three datasets ran as blocking checks of the asset and passed (no fund: the
    # insurance_stress checks report nothing, Dagster shows them skipped)
    suites = (("basis", "derivative_basis"), ("oi_change", "open_interest_change"),
              ("clusters", "liquidation_clusters"))
    signals = lake.read(SIGNAL, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date="2024-01-02")
    if signals.num_rows:  # the random rows may cross no threshold: no signal row to check (skipped)
        suites += (("signals", "derivative_signals"),)
    names = {f"{p}_{c}" for p, suite in suites for c in check_names(suite)}
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name: e.passed for e in evaluations} == dict.fromkeys(names, True)
    # a basis one nano of mark off in the stored rows: the checks of the stored rows (as a run of
    # the checks alone reads them) fail basis_basis_formula, and only that check
    stored = lake.read(DERIVATIVE_BASIS, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date="2024-01-02")
    marks = stored.column("mark_price_nanos").to_pylist()
    marks[next(i for i, v in enumerate(marks) if v != UNDEF_PRICE)] += 1
    at = stored.column_names.index("mark_price_nanos")
    bad = stored.set_column(at, stored.schema.field(at), pa.array(marks, pa.int64()))
    common.write(DERIVATIVE_BASIS, {t: bad}, dep.lake, [t])
    plans = {k: {t: checks.plan(k, table, dep.lake, t, inputs=inputs)}
             for k, (table, inputs) in _stored(dep.lake, t).items() if table.num_rows}
    verdicts = {r.check_name: r.passed for r in checks.finish_all(plans, dep.lake)}
    assert verdicts == {n: n != "basis_basis_formula" for n in names}


def test_asset_writes_the_signals_beside_the_other_detectors_rows(tmp_path: Path) -> None:
    from assets.derivatives import CONFIG
    from assets.partitions import INSTRUMENTS_NAME, instrument_key, partition_key
    from tapeflow.derivatives.derived_signals import NAME, batch_signals
    from tapeflow.derivatives.live_clusters import ClusterConfig
    from tapeflow.schemas.derivatives import INDEX_PRICE, LIQUIDATION, MARK_PRICE
    from tapeflow.schemas.records import BID, SIGNAL, UNDEF_PRICE
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.storage import lake
    from tapeflow.storage.writer import write

    s, t0 = 10**9, 1_704_153_660 * 10**9  # 2024-01-02 00:01 UTC
    common = {"venue": "binance-usdm", "symbol": "BTCUSDT"}
    # mark 60,360 against index 60,000 from 3 s: 60 bps over the shipped 50, one basis_extreme;
    # 3 liquidations of 60,000 x 10: a 1.8M cluster over the shipped 1M
    tables = {
        "mark_price": MARK_PRICE.table({"ts_event_ns": [t0, t0 + 3 * s], "ts_recv_ns": [t0, t0 + 3 * s],
                                        "mark_price_nanos": [60_000 * s, 60_360 * s]}, constants=common),
        "index_price": INDEX_PRICE.table({"ts_event_ns": [t0, t0 + 5 * s], "ts_recv_ns": [t0, t0 + 5 * s],
                                          "index_price_nanos": [60_000 * s] * 2}, constants=common),
        "liquidation": LIQUIDATION.table({"ts_event_ns": [t0 + i * s for i in range(3)],
                                          "ts_recv_ns": [t0 + i * s for i in range(3)],
                                          "liquidation_id": ["a", "b", "c"], "side": [BID] * 3,
                                          "price_nanos": [60_000 * s] * 3, "size_nanos": [10 * s] * 3},
                                         constants=common),
    }
    dep = Deployment(tmp_path)
    for record in (MARK_PRICE, INDEX_PRICE, LIQUIDATION):
        write(record, tables[record.name], dep.lake)
    whale = SIGNAL.table({"ts_event_ns": [t0], "ts_recv_ns": [t0], "kind": ["whale"], "side": [1],
                          "price_nanos": [UNDEF_PRICE], "size_nanos": [s], "start_ns": [t0], "end_ns": [t0],
                          "confidence": [0.9], "score": [2.0], "detector": ["whale/1"], "params_hash": ["x"],
                          "flags": [0], "evidence": ["{}"]}, constants=common)
    write(SIGNAL, whale, dep.lake)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(INSTRUMENTS_NAME, [instrument_key("binance-usdm", "BTCUSDT")])
    asset = next(a for a in definitions().assets if "derivatives_derived" in {k.path[-1] for k in a.keys})
    key = partition_key("2024-01-02", "binance-usdm", "BTCUSDT")
    for _ in range(2):  # a re-run replaces its own rows, never doubles them
        result = dg.materialize([asset], partition_key=key, resources=dep.resources(), instance=instance)
        assert result.success
    got = lake.read(SIGNAL, dep.lake, venue="binance-usdm", symbol="BTCUSDT", date="2024-01-02").to_pylist()
    assert [r["detector"] for r in got if r["detector"] != NAME] == ["whale/1"]
    mine = sorted((r["kind"], r["ts_event_ns"] - t0) for r in got if r["detector"] == NAME)
    assert mine == [("basis_extreme", 3 * s), ("liquidation_cluster", 2 * s)]
    want = batch_signals(tables, load(DEFAULT_PATH), CONFIG, ClusterConfig()).to_pylist()
    assert sorted(map(repr, (r for r in got if r["detector"] == NAME))) == sorted(map(repr, want))
    # its own rows (not the whale's, which the derivative_signals suite would fail) were checked
    from quality import check_names

    checked = {e.check_name: e.passed for e in result.get_asset_check_evaluations()
               if e.check_name.startswith("signals_")}
    assert checked == {f"signals_{c}": True for c in check_names("derivative_signals")}


def test_asset_stores_the_insurance_stress_rows_and_checks_them(tmp_path: Path) -> None:
    from assets.partitions import INSTRUMENTS_NAME, instrument_key, partition_key
    from quality import check_names
    from tapeflow.derivatives.derived import insurance_stress
    from tapeflow.derivatives.live_stress import LiveStress, stress_record
    from tapeflow.schemas.derivatives import INSURANCE_FUND
    from tapeflow.schemas.records import INSURANCE_STRESS, SIGNAL
    from tapeflow.storage import lake
    from tapeflow.storage.writer import write

    s, t0 = 10**9, 1_704_153_660 * 10**9  # 2024-01-02 00:01 UTC
    balances = [100, 96, 92, 85, 70]  # drawdowns 0, 4, 8, 15, 30 %: levels 0, 0, 1, 2, 3
    funds = INSURANCE_FUND.table({"ts_event_ns": [t0 + i * s for i in range(5)],
                                  "ts_recv_ns": [t0 + i * s + 7 for i in range(5)], "asset": ["USDT"] * 5,
                                  "balance_nanos": [b * s for b in balances]},
                                 constants={"venue": "okx", "symbol": "BTC-USDT"})  # the fund's partition
    dep = Deployment(tmp_path)
    write(INSURANCE_FUND, funds, dep.lake)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(INSTRUMENTS_NAME, [instrument_key("okx", "BTC-USDT")])
    asset = next(a for a in definitions().assets if "derivatives_derived" in {k.path[-1] for k in a.keys})
    result = dg.materialize([asset], partition_key=partition_key("2024-01-02", "okx", "BTC-USDT"),
                            resources=dep.resources(), instance=instance)
    assert result.success
    got = lake.read(INSURANCE_STRESS, dep.lake, venue="okx", symbol="BTC-USDT", date="2024-01-02")
    assert got.column("level").to_pylist() == [0, 0, 1, 2, 3]
    want = stress_record(insurance_stress(funds))
    assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, want.to_pylist()))
    stage = LiveStress()  # the live stage's rows, as the flow stores them: the same
    (live,) = [stress_record(t) for n, t in stage.update({"insurance_fund": funds})
               if n == "insurance_stress"]
    assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, live.to_pylist()))
    # every check of the insurance_stress suite ran on the stored rows, and passed; so did those of
    # its signals (levels 2 and 3 reach the shipped stress_level 2: two insurance_stress rows)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    signals = {f"signals_{c}" for c in check_names("derivative_signals")}
    assert checks == dict.fromkeys([*check_names("insurance_stress"), *signals], True)
    stored = lake.read(SIGNAL, dep.lake, venue="okx", symbol="BTC-USDT", date="2024-01-02")
    assert stored.column("kind").to_pylist() == ["insurance_stress"] * 2
