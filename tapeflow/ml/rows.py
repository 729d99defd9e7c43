"""``training_examples`` tables <-> ``training_example`` rows (the lake and warehouse record).

The record stores prices as exact integers with the ``UNDEF`` sentinel and absent labels as
``NO_LABEL`` (records have no nulls); :func:`examples_from_rows` gives back the library's table
(float prices with NaN, null labels) with the schema hash in its metadata, so a model reads the same
table whether it was computed now or read from the lake.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels.metrics import UNDEF
from tapeflow.errors import TapeflowError
from tapeflow.ml.examples import HASH_KEY, ExampleParams, feature_names, feature_schema_hash
from tapeflow.schemas.ml import HORIZONS_S, NO_LABEL, TRAINING_EXAMPLE

_PRICES = ("spread_nanos", "mid_price_nanos", "microprice_minus_mid_nanos")


def example_rows(examples: pa.Table, venue: str, symbol: str) -> pa.Table:
    """The ``training_example`` rows of one instrument's examples (default ``ExampleParams`` only).

    Raises:
        TapeflowError: the examples were built with other parameters (their columns or hash differ).
    """
    want = feature_schema_hash(ExampleParams())
    got = (examples.schema.metadata or {}).get(HASH_KEY, b"").decode()
    if got != want:
        raise TapeflowError(f"training_example rows hold the default dataset ({want[:12]}), "
                            f"these examples have schema hash {got[:12] or 'none'}")
    cols: dict[str, object] = {}
    for name in TRAINING_EXAMPLE.column_names[4:]:
        if name == "feature_schema_hash":
            continue
        values = examples.column(name if name != "ts_recv_ns" else "ts_event_ns")
        if name in _PRICES:
            v = values.to_numpy()
            exact = np.full(len(v), UNDEF, np.int64)
            defined = ~np.isnan(v)
            exact[defined] = v[defined].astype(np.int64)
            cols[name] = exact
        elif name.startswith("label_"):
            cols[name] = values.fill_null(NO_LABEL).cast(pa.int32())
        else:
            cols[name] = values
    ts = examples.column("ts_event_ns")
    cols["ts_event_ns"] = ts
    cols["ts_recv_ns"] = ts
    return TRAINING_EXAMPLE.table(cols, constants={"venue": venue, "symbol": symbol,
                                                   "feature_schema_hash": want})


def examples_from_rows(rows: pa.Table) -> pa.Table:
    """One instrument's ``training_example`` rows back as a ``training_examples`` table.

    Raises:
        TapeflowError: not ``training_example`` rows, several instruments, or another schema hash.
    """
    if rows.schema.names[: len(TRAINING_EXAMPLE.column_names)] != TRAINING_EXAMPLE.column_names:
        raise TapeflowError("examples_from_rows needs training_example rows")
    want = feature_schema_hash(ExampleParams())
    hashes = set(rows.column("feature_schema_hash").to_pylist())
    if hashes - {want}:
        raise TapeflowError(f"rows carry schema hashes {sorted(h[:12] for h in hashes)}, "
                            f"this code builds {want[:12]}")
    if len(set(zip(rows.column("venue").to_pylist(), rows.column("symbol").to_pylist(), strict=True))) > 1:
        raise TapeflowError("examples_from_rows takes one instrument's rows")
    cols: dict[str, pa.Array] = {}
    skip = {"ts_recv_ns", "venue", "symbol", "feature_schema_hash"}
    for name in TRAINING_EXAMPLE.column_names:
        if name in skip:
            continue
        col = rows.column(name)
        if name in _PRICES:
            v = col.to_numpy()
            cols[name] = pa.array(np.where(v == UNDEF, np.nan, v.astype(np.float64)), pa.float64())
        elif name.startswith("label_"):
            v = col.to_numpy()
            cols[name] = pa.array(v.astype(np.int8), pa.int8(), mask=v == NO_LABEL)
        else:
            cols[name] = col.combine_chunks()
    order = ["ts_event_ns", "warmed_up", "two_sided", *feature_names(ExampleParams())]
    for h in HORIZONS_S:
        order += [f"return_{h}s", f"smoothed_return_{h}s", f"label_{h}s"]
    return pa.table({n: cols[n] for n in order}).replace_schema_metadata({HASH_KEY: want.encode()})
