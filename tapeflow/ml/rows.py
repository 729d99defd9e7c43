"""``training_examples`` tables <-> ``training_example`` rows (the lake and warehouse record).

The record stores prices as exact integers with the ``UNDEF`` sentinel and absent labels as
``NO_LABEL`` (records have no nulls); :func:`examples_from_rows` gives back the library's table
(float prices with NaN, null labels) with the schema hash in its metadata, so a model reads the same
table whether it was computed now or read from the lake.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from kernels.metrics import UNDEF
from tapeflow.errors import TapeflowError
from tapeflow.ml.book_inputs import book_inputs
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


def with_book_inputs(examples: pa.Table, snapshots: pa.Table, levels: int, *, where: str = "") -> pa.Table:
    """Examples read from the lake (:func:`examples_from_rows`) with the raw book-level inputs of
    ``levels`` per side (``tapeflow.ml.book_inputs``) joined on the grid: the table
    ``training_examples(snapshots, trades, ExampleParams(book_levels=levels))`` gives for the same
    rows, its schema hash included, without a second copy of the book in the lake.

    The examples' grid is the snapshots' own (one example per ``book_snapshot`` row), so each row
    ``t`` takes the inputs of the snapshot at ``t``, which read that row and the one before it
    (the mid's change), never a later one.

    Args:
        examples: one instrument-day's examples of the default dataset.
        snapshots: the ``book_snapshot`` rows they were built from, in time order.
        levels: book levels per side (at most the snapshots' depth).
        where: the partition, for the error message.

    Raises:
        TapeflowError: the examples are not of the default dataset, or their grid is not the
            snapshots' (examples built before the book was rebuilt: rebuild them).
    """
    base = ExampleParams()
    got = (examples.schema.metadata or {}).get(HASH_KEY, b"").decode()
    want = feature_schema_hash(base)
    if got != want:
        raise TapeflowError(f"book inputs join the default dataset's examples ({want[:12]}), "
                            f"these have schema hash {got[:12] or 'none'}")
    if not 0 < levels <= base.levels:
        raise TapeflowError(f"book_levels {levels} is outside 1..{base.levels} (the snapshot levels)")
    grid = examples.column("ts_event_ns").to_numpy()
    snap_ts = snapshots.column("ts_event_ns").to_numpy()
    if len(grid) != len(snap_ts) or not np.array_equal(grid, snap_ts):
        raise TapeflowError(f"training_examples{' of ' + where if where else ''} were not built from "
                            f"these book_snapshots rows "
                            f"({len(grid)} examples, {len(snap_ts)} snapshots on another grid): "
                            f"rematerialize training_examples")
    params = replace(base, book_levels=levels)
    book = book_inputs(snapshots, levels)
    at = examples.schema.get_field_index(feature_names(base)[-1]) + 1
    out = examples
    for i, (name, values) in enumerate(book.items()):  # the library's column order
        out = out.add_column(at + i, name, pa.array(values, pa.float64()))
    return out.replace_schema_metadata({
        HASH_KEY: feature_schema_hash(params).encode(),
        b"tapeflow.feature_params": json.dumps(asdict(params), sort_keys=True).encode(),
        b"tapeflow.source": (examples.schema.metadata or {}).get(b"tapeflow.source", b"")})


def lake_examples(lake: Path, venue: str, symbol: str, date: str, params: ExampleParams | None = None
                  ) -> pa.Table:
    """One instrument-day's examples read from the lake's ``training_example`` rows, in time order;
    with ``params.book_levels`` > 0 the raw book inputs of the partition's ``book_snapshot`` rows are
    joined (:func:`with_book_inputs`). The lake holds the default dataset only.

    Raises:
        TapeflowError: ``params`` differ from the default dataset in more than ``book_levels``, or the
            examples are not on the snapshots' grid.
    """
    from tapeflow.schemas.records import BOOK_SNAPSHOT
    from tapeflow.storage import lake as lake_store

    params = params or ExampleParams()
    if replace(params, book_levels=0) != ExampleParams():
        raise TapeflowError(f"the lake holds the default dataset's examples; "
                            f"{feature_schema_hash(params)[:12]} is another one")
    rows = lake_store.read(TRAINING_EXAMPLE, lake, venue, symbol, date)
    examples = examples_from_rows(rows.select(TRAINING_EXAMPLE.column_names).sort_by("ts_event_ns"))
    if not params.book_levels:
        return examples
    snaps = lake_store.read(BOOK_SNAPSHOT, lake, venue, symbol, date)
    snaps = snaps.select(BOOK_SNAPSHOT.column_names).sort_by("ts_event_ns")
    return with_book_inputs(examples, snaps, params.book_levels, where=f"{venue}/{symbol}/{date}")
