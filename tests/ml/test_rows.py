"""training_example rows: exact round trip with the library's table, sentinels, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kernels.metrics import UNDEF
from tapeflow.errors import TapeflowError
from tapeflow.ml import ExampleParams, feature_schema_hash, training_examples
from tapeflow.ml.rows import example_rows, examples_from_rows
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.ml import NO_LABEL, TRAINING_EXAMPLE
from tests.ml.test_examples import T0, TRADES, P, S, snaps

BOOK = snaps([
    (T0, [(1000, 1)], [(1002, 3)]),
    (T0 + S, [(1000, 4)], []),  # one-sided: no mid, no spread
    (T0 + 2 * S, [(1002, 2)], [(1004, 6)]),
    (T0 + 3 * S, [(1002, 2)], [(1006, 6)]),
])


def test_round_trip_is_exact_and_uses_sentinels() -> None:
    ex = training_examples(BOOK, TRADES)
    rows = example_rows(ex, "v", "s")
    assert rows.schema.names == TRAINING_EXAMPLE.column_names
    assert ALL_RECORDS["training_example"] is TRAINING_EXAMPLE
    assert rows.column("mid_price_nanos").to_pylist()[1] == int(UNDEF)
    # row 0: its only next row is one-sided, so no mid in (t, t + 1 s]: absent too
    assert rows.column("label_1s").to_pylist() == [NO_LABEL, NO_LABEL, 1, NO_LABEL]
    assert set(rows.column("feature_schema_hash").to_pylist()) == {feature_schema_hash(ExampleParams())}
    back = examples_from_rows(rows)
    assert back.schema.names == ex.schema.names
    for name in ex.schema.names:
        a = ex.column(name).to_numpy(zero_copy_only=False)
        b = back.column(name).to_numpy(zero_copy_only=False)
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert ex.column(name).null_count == back.column(name).null_count, name


def test_refuses_other_parameters_and_mixed_rows() -> None:
    with pytest.raises(TapeflowError, match="schema hash"):
        example_rows(training_examples(BOOK, TRADES, P), "v", "s")
    rows = example_rows(training_examples(BOOK, TRADES), "v", "s")
    import pyarrow as pa

    other = rows.set_column(3, TRAINING_EXAMPLE.arrow_schema().field("symbol"),
                            pa.array(["s", "s", "t", "t"]))
    with pytest.raises(TapeflowError, match="one instrument"):
        examples_from_rows(other)
    with pytest.raises(TapeflowError, match="training_example rows"):
        examples_from_rows(BOOK)


def test_rows_through_the_lake_and_clickhouse(tmp_path: Path) -> None:
    """The record as stored: the chdb warehouse and the Parquet lake give back the same rows."""
    from tapeflow.storage import lake
    from tapeflow.storage.warehouse import Warehouse
    from tapeflow.storage.writer import Writer

    rows = example_rows(training_examples(BOOK, TRADES), "v", "s")
    with Warehouse(f"chdb://{tmp_path / 'ch'}") as wh:
        wh.ensure_tables([TRAINING_EXAMPLE])
        wh.load(TRAINING_EXAMPLE, rows)
        fetched = wh.fetch(TRAINING_EXAMPLE).sort_by("ts_event_ns")
    with Writer(tmp_path / "lake") as writer, writer.load(TRAINING_EXAMPLE, "replace") as load:
        load.add(rows)
        load.commit()
    stored = lake.read(TRAINING_EXAMPLE, tmp_path / "lake").select(TRAINING_EXAMPLE.column_names)
    for got in (fetched, stored):
        for name in TRAINING_EXAMPLE.column_names:
            np.testing.assert_array_equal(got.column(name).to_numpy(zero_copy_only=False),
                                          rows.column(name).to_numpy(zero_copy_only=False), err_msg=name)
