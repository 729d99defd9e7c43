"""The fused instrument pipeline (book -> degraded -> bars -> metrics in one call): any batch split,
and a pickled state resumed mid-stream, give the batch rebuild's snapshots and bars and the same
rows as one whole batch; routing splits mixed batches per instrument without losing a row."""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from hypothesis import given, settings
from hypothesis import strategies as st

from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.derived.bars import STANDARD_INTERVALS, time_bars
from tapeflow.live.batching import cut_batches
from tapeflow.live.pipeline import InstrumentPipeline, pipeline_factory, split_by_instrument
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import same_rows, sim_market

SECOND = 1_000_000_000
SYMBOL = "SIM-BTCUSDT"
BAR_KEYS = ("interval", "ts_event_ns")


@functools.cache
def _inputs() -> tuple[dict[str, pa.Table], np.ndarray, dict[str, pa.Table]]:
    """One simulated instrument's rows, the table of each row in arrival order (as ``cut_batches``
    merges them), and the batch rebuild of the whole market for that instrument."""
    paths = sim_market()
    decoded = merge(list(get_format("sim").decode(list(paths))))
    mine = {n: t.filter(pc.equal(t["symbol"], SYMBOL)) for n, t in decoded.items()
            if n in ("order_event", "trade", "book_delta")}
    names = sorted(mine)
    order = [names.index(next(iter(b))) for b in cut_batches(mine, 1, None)]
    snaps, _ = snapshots_for_format("sim", list(paths), levels=10, interval_ns=SECOND)
    snaps = snaps.filter(pc.equal(snaps["symbol"], SYMBOL))
    return mine, np.asarray(order), {"book_snapshot": snaps, "trade": mine["trade"]}


def _batches(cuts: list[int]) -> list[dict[str, pa.Table]]:
    """The instrument's rows cut at these positions of the arrival order."""
    tables, owner, _ = _inputs()
    names = sorted(tables)
    before = np.zeros((len(owner) + 1, len(names)), np.int64)  # rows of each table before position i
    before[1:] = np.cumsum(owner[:, None] == np.arange(len(names))[None, :], axis=0)
    bounds = sorted({0, len(owner), *cuts})
    out = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        out.append({n: tables[n].slice(int(before[a, i]), int(before[b, i] - before[a, i]))
                    for i, n in enumerate(names) if before[b, i] > before[a, i]})
    return out


def _new() -> InstrumentPipeline:
    from tapeflow.derived import LiveBars, LiveMetrics

    return pipeline_factory("auto", 10, SECOND, new_bars=lambda: LiveBars(STANDARD_INTERVALS),
                            new_metrics=lambda: LiveMetrics("1s", 10), raw=True, bbo_as_quote=False)()


def _run(cuts: list[int], pickle_at: int | None) -> dict[str, pa.Table]:
    pipeline, items = _new(), []
    for k, batch in enumerate(_batches(cuts)):
        if k == pickle_at:
            pipeline = pickle.loads(pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL))
        items.extend(pipeline.apply(batch))
    items.extend(pipeline.close())
    parts: dict[str, list[pa.Table]] = {}
    for name, table in items:
        parts.setdefault(name, []).append(table)
    return {n: concat(ALL_RECORDS[n], ts) for n, ts in parts.items()}


@functools.cache
def _whole() -> dict[str, pa.Table]:
    return _run([], None)


def _final_bars(bars: pa.Table) -> pa.Table:
    last = {}
    for row in bars.to_pylist():
        key = (row["interval"], row["ts_event_ns"])
        if key not in last or row["revision"] >= last[key]["revision"]:
            last[key] = row
    rows = sorted(last.values(), key=lambda r: (r["interval"], r["ts_event_ns"]))
    return pa.Table.from_pylist(rows, schema=bars.schema).drop_columns(["revision"])


def test_one_batch_equals_the_batch_rebuild() -> None:
    out = _whole()
    _, _, want = _inputs()
    assert out["book_snapshot"].equals(want["book_snapshot"])
    batch_bars = pa.concat_tables([time_bars(want["trade"], i) for i in STANDARD_INTERVALS])
    batch_bars = batch_bars.sort_by([(k, "ascending") for k in BAR_KEYS]).drop_columns(["revision"])
    assert _final_bars(out["bar"]).equals(batch_bars)
    assert out["metric"].num_rows == want["book_snapshot"].num_rows
    assert out["trade"].equals(want["trade"])


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_any_split_and_a_resume_give_the_rows_of_one_batch(data: st.DataObject) -> None:
    _, owner, _ = _inputs()
    cuts = data.draw(st.lists(st.integers(1, len(owner) - 1), max_size=40), label="cuts")
    pickle_at = data.draw(st.none() | st.integers(0, len(set(cuts)) + 1), label="pickle_at")
    got, want = _run(cuts, pickle_at), _whole()
    assert set(got) == set(want)
    assert got["book_snapshot"].equals(want["book_snapshot"])
    assert _final_bars(got["bar"]).equals(_final_bars(want["bar"]))
    for name in ("metric", "order_event", "trade", "book_delta"):
        if name in want:
            assert same_rows(got[name], want[name]), name  # NaN realized vol equals NaN


def test_routing_splits_a_mixed_batch_per_instrument() -> None:
    decoded = merge(list(get_format("sim").decode(list(sim_market()))))
    batch = {n: decoded[n].slice(0, 3000) for n in ("order_event", "trade")}
    routed = dict(split_by_instrument(batch))
    assert sorted(routed) == ["sim/SIM-BTCUSDT", "sim/SIM-ETHUSDT"]
    for name, table in batch.items():
        parts = {k: t[name] for k, t in routed.items() if name in t}
        assert sum(p.num_rows for p in parts.values()) == table.num_rows
        for key, part in parts.items():
            assert set(part["symbol"].to_pylist()) == {key.split("/")[1]}
