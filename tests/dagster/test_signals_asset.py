"""The ``signals`` asset on a simulated instrument-day: its rows equal the batch detectors run over
the raw files (``detect_format``, the ``tapeflow signals detect`` path), its metadata counts them per
kind, and its truth check reports the scorer's precision and recall against the planted episodes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.dagster.conftest import Deployment, check_results, materializations, register

S = 1_000_000_000
# the rest of a row breaks ties: two alerts of one kind and side at one instant (hidden executions at
# two prices) come in the order their detector's pass found them, whole day or slices
KEY = [(c, "ascending") for c in ("venue", "symbol", "kind", "side", "ts_event_ns", "detector", "price_nanos",
                                  "size_nanos", "evidence")]
ASSETS = ("order_events", "book_deltas", "trades", "book_snapshots", "signals")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from assets.partitions import partition_key
    from tapeflow.simulator import simulate
    from tests.dagster.conftest import definitions

    root = tmp_path_factory.mktemp("signals")
    # 8 equity minutes with 12 planted episodes per kind and hour: a few alerts, some true
    summary = simulate(7311, 1, 8 * 60 * S, root / "landing", "equity", progress=False, episodes_per_hour=12)
    dep = Deployment(root)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert len(days) == 1
    venue, symbol, date = days[0]
    assets = [a for a in definitions().assets if set(ASSETS) & {k.path[-1] for k in a.keys}]
    result = dg.materialize(assets, partition_key=partition_key(date, venue, symbol),
                            resources=dep.resources(), instance=instance, raise_on_error=False,
                            selection=[dg.AssetKey(n) for n in ASSETS])
    return dep, summary, result


@pytest.fixture(scope="module")
def expected(built) -> pa.Table:
    """The batch detectors over the raw files (``detect_format``): the whole day at once."""
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import detect_format

    _, summary, _ = built
    return detect_format("sim", list(summary.files), load(DEFAULT_PATH)).sort_by(KEY)


def test_signals_asset_rows_equal_the_batch_detectors_and_metadata_counts_them(built, expected) -> None:
    from tapeflow.schemas.records import SIGNAL
    from tapeflow.storage import lake

    dep, summary, result = built
    assert result.success
    stored = lake.read(SIGNAL, dep.lake).select(SIGNAL.column_names).sort_by(KEY)
    print(f"signals: {stored.num_rows} rows {Counter(stored.column('kind').to_pylist())}")
    assert expected.num_rows > 0
    assert stored.to_pylist() == expected.to_pylist()
    [meta] = materializations(result)["signals"].values()
    by_kind = meta["by_kind"]
    counts = Counter(expected.column("kind").to_pylist())
    assert {k: v["count"] for k, v in by_kind.items()} == dict(counts)
    for kind, v in by_kind.items():
        conf = [r["confidence"] for r in expected.to_pylist() if r["kind"] == kind]
        assert v["mean_confidence"] == pytest.approx(sum(conf) / len(conf), abs=1e-4)
        assert v["rate_per_hour"] > counts[kind]  # 8 minutes of trades: more per hour than in all


def test_truth_check_reports_the_scorers_precision_and_recall(built, expected) -> None:
    from tapeflow.signals.score import score

    dep, summary, result = built
    ev = check_results(result)[("signals", "planted_truth")]
    assert ev.passed
    truth = pq.read_table(Path(summary.episodes_path))
    planted = sorted(set(truth.column("kind").to_pylist()))
    report = score(truth, expected, kinds=planted)
    meta = {k: v.value for k, v in ev.metadata.items()}
    for k in report.kinds:
        got = meta[k.kind]
        assert (got["episodes"], got["alerts"], got["hits"]) == (k.episodes, k.alerts, k.hits), k.kind
    assert any(k.episodes for k in report.kinds)
    # kinds with no planted truth (hidden executions, the stealth composite) are listed, not scored
    unplanted = sorted(set(expected.column("kind").to_pylist()) - set(planted))
    assert meta["not_scored"] == unplanted and not set(unplanted) & set(meta)


@pytest.mark.parametrize("slice_rows", [700])
def test_the_day_read_in_small_slices_gives_the_whole_days_rows(built, expected, slice_rows: int) -> None:
    # the asset's path (tapeflow.signals.sliced.detect_day) with slices of a few hundred rows: the
    # book rebuilt piece by piece, the grid spilled and read back, the streaming detectors' look-backs
    # cut; row for row the batch detectors over the raw files, the institutional record equal too
    from tapeflow.batch.targets import Target
    from tapeflow.schemas.records import ORDER_EVENT, SIGNAL
    from tapeflow.signals.config import DEFAULT_PATH, load
    from tapeflow.signals.detect import grid_and_levels
    from tapeflow.signals.history import day_inputs
    from tapeflow.signals.institutional import Baselines
    from tapeflow.signals.orders import detect_orders
    from tapeflow.signals.sliced import detect_day
    from tapeflow.storage import lake

    dep, _, _ = built
    [(venue, symbol, date, _)] = list(lake.partitions(ORDER_EVENT, dep.lake))
    t = Target(date, venue, symbol)
    thresholds = load(DEFAULT_PATH)
    sliced, whole = Baselines(), Baselines()
    day = detect_day(dep.lake, t, thresholds, baselines=sliced, slice_rows=slice_rows)
    got = day.table.select(SIGNAL.column_names).sort_by(KEY)
    events = lake.partition_rows(ORDER_EVENT, dep.lake, venue, symbol, date)
    print(f"{events} order events in {day.pieces} pieces, {day.grid_rows} grid rows "
          f"({day.look_back_cut_rows} cut from the look-back), {got.num_rows} rows")
    assert day.pieces >= events // slice_rows  # the day was fed in slices
    assert day.look_back_cut_rows > 0  # and the detectors forgot its start
    assert got.to_pylist() == expected.to_pylist()
    # the day's institutional record (per-bucket totals), as the whole day's
    trades, snaps, events = day_inputs(dep.lake, t, *grid_and_levels(thresholds))
    detect_orders(events, snaps, thresholds, baselines={(venue, symbol): whole})
    assert sliced.days and sliced.days.keys() == whole.days.keys()
    for d, record in whole.days.items():
        assert len(sliced.days[d]) == len(record)
        assert all(np.array_equal(a, b) for a, b in zip(sliced.days[d], record, strict=True)), d


def test_a_signals_rerun_keeps_the_derivative_rows_of_its_partition(built) -> None:
    # derivatives_derived's rows share the partition (its write is a scoped replace, as here);
    # re-running signals alone, twice, replaces the detectors' rows only: none lost, none doubled
    import json

    from assets import common
    from assets.partitions import partition_key
    from tapeflow.batch.targets import Target
    from tapeflow.derivatives.derived_signals import NAME, SCOPE
    from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE
    from tapeflow.storage import lake
    from tests.dagster.conftest import definitions

    dep, summary, _ = built
    before = lake.read(SIGNAL, dep.lake).select(SIGNAL.column_names)
    venue, symbol = before.column("venue")[0].as_py(), before.column("symbol")[0].as_py()
    t0 = before.column("ts_event_ns")[0].as_py()
    date = lake.day_of(t0)
    derived = SIGNAL.table({
        "ts_event_ns": [t0, t0 + S], "ts_recv_ns": [t0, t0 + S], "kind": ["basis_extreme", "oi_surge"],
        "side": [1, -1], "price_nanos": [UNDEF_PRICE] * 2, "size_nanos": [0, 0], "start_ns": [t0, t0 + S],
        "end_ns": [t0, t0 + S], "confidence": [0.5, 0.5], "score": [1.2, 3.4], "detector": [NAME] * 2,
        "params_hash": ["abc"] * 2, "flags": [0, 0], "evidence": [json.dumps({"i": 0}), json.dumps({"i": 1})],
    }, constants={"venue": venue, "symbol": symbol})
    target = Target(date, venue, symbol)
    common.write(SIGNAL, {target: derived}, dep.lake, [target], scope=SCOPE)
    instance = dg.DagsterInstance.ephemeral()
    register(instance, dep)
    asset = [a for a in definitions().assets if "signals" in {k.path[-1] for k in a.keys}]
    for _ in range(2):
        result = dg.materialize(asset, partition_key=partition_key(date, venue, symbol),
                                resources=dep.resources(), instance=instance,
                                selection=[dg.AssetKey("signals")])
        assert result.success
        stored = lake.read(SIGNAL, dep.lake).select(SIGNAL.column_names).sort_by(KEY)
        want = pa.concat_tables([before, derived]).sort_by(KEY)
        assert Counter(map(repr, stored.to_pylist())) == Counter(map(repr, want.to_pylist()))
