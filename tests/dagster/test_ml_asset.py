"""The ``training_examples`` asset on a simulated instrument-day: its rows equal the library run over
the raw file's own 1 s book (``snapshots_for_format``, the ``tapeflow book`` path), and its metadata
carries the feature schema hash and the source partitions."""

from __future__ import annotations

import random

import dagster as dg
import numpy as np
import pytest

from tests.dagster.conftest import Deployment, materializations, register

S = 1_000_000_000
ASSETS = ("order_events", "book_deltas", "trades", "book_snapshots", "training_examples")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    from assets.partitions import partition_key
    from tapeflow.simulator import simulate
    from tests.dagster.conftest import definitions

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    root = tmp_path_factory.mktemp("ml")
    summary = simulate(seed, 1, 4 * 60 * S, root / "landing", "equity", progress=False)
    dep = Deployment(root)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert len(days) == 1
    venue, symbol, date = days[0]
    assets = [a for a in definitions().assets if set(ASSETS) & {k.path[-1] for k in a.keys}]
    result = dg.materialize(assets, partition_key=partition_key(date, venue, symbol),
                            resources=dep.resources(), instance=instance, raise_on_error=False,
                            selection=[dg.AssetKey(n) for n in ASSETS])
    return dep, summary, result, (venue, symbol, date)


def test_rows_equal_the_library_over_the_raw_file(built) -> None:
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.ml import training_examples
    from tapeflow.ml.rows import example_rows
    from tapeflow.schemas.ml import TRAINING_EXAMPLE
    from tapeflow.schemas.records import TRADE
    from tapeflow.storage import lake
    from tapeflow.wire.capture import merge

    dep, summary, result, (venue, symbol, _) = built
    assert result.success
    chunks: list = []
    snaps, _ = snapshots_for_format("sim", list(summary.files), levels=10, interval_ns=S,
                                    on_chunk=chunks.append)
    trades = merge(chunks)[TRADE.name].sort_by("ts_recv_ns")
    expected = example_rows(training_examples(snaps, trades), venue, symbol)
    stored = lake.read(TRAINING_EXAMPLE, dep.lake).select(TRAINING_EXAMPLE.column_names)
    stored = stored.sort_by("ts_event_ns")
    assert stored.num_rows == expected.num_rows > 200
    for name in TRAINING_EXAMPLE.column_names:
        np.testing.assert_array_equal(stored.column(name).to_numpy(zero_copy_only=False),
                                      expected.column(name).to_numpy(zero_copy_only=False), err_msg=name)


def test_metadata_carries_lineage(built) -> None:
    from assets.partitions import partition_key
    from tapeflow.ml import ExampleParams, feature_schema_hash

    _, _, result, (venue, symbol, date) = built
    [meta] = materializations(result)["training_examples"].values()
    assert meta["feature_schema_hash"] == feature_schema_hash(ExampleParams())
    key = str(partition_key(date, venue, symbol))
    assert meta["source_partitions"] == [f"book_snapshots/{key}", f"trades/{key}"]
    assert meta["dagster/row_count"] > 200
    shares = meta["class_shares"]["10s"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
