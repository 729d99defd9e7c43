"""CaptureSource: micro-batches cut in arrival order within their bounds, partitions per stream, and a
resume from any snapshot that continues exactly where the partition stood (no row lost or repeated)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from flows.sources import CaptureResume, CaptureSource, LiveSource
from tapeflow.errors import ConfigError
from tapeflow.live.batching import cut_batches, partition_paths
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import binance_prefix, sim_market

SECOND = 1_000_000_000


def _drain(part: object, limit: int | None = None) -> list[dict[str, pa.Table]]:
    batches: list[dict[str, pa.Table]] = []
    while limit is None or len(batches) < limit:
        try:
            batches.extend(part.next_batch())  # type: ignore[attr-defined]
        except StopIteration:
            break
    return batches


def _joined(batches: list[dict[str, pa.Table]]) -> dict[str, pa.Table]:
    names = {n for b in batches for n in b}
    return {n: pa.concat_tables([b[n] for b in batches if n in b]) for n in names}


@pytest.mark.realdata
@pytest.mark.parametrize(("events", "span_ns"), [(500, None), (5000, SECOND // 10), (1, SECOND)])
def test_batches_respect_bounds_and_keep_every_row_in_order(events: int, span_ns: int | None) -> None:
    path = binance_prefix(3000)
    decoded = merge(list(get_format("binance").decode([path])))
    batches = list(cut_batches(decoded, events, span_ns))
    assert all(0 < sum(t.num_rows for t in b.values()) <= events for b in batches)
    if span_ns is not None:
        # capture time as the cut sees it (running max per table: a REST snapshot's buffered diffs
        # arrived before it): one batch spans less than the bound
        running = {n: np.maximum.accumulate(t["ts_recv_ns"].to_numpy()) for n, t in decoded.items()}
        at = dict.fromkeys(running, 0)
        for b in batches:
            recv = []
            for n, t in b.items():
                recv.append(running[n][at[n]:at[n] + t.num_rows])
                at[n] += t.num_rows
            span = np.concatenate(recv)
            assert span.max() - span.min() < span_ns
    joined = _joined(batches)
    assert set(joined) == {n for n, t in decoded.items() if t.num_rows}
    for name, table in joined.items():
        assert table.equals(decoded[name]), name
    # batches alternate between tables the way the rows arrived: trades ride with their depth diffs
    if events == 500:
        assert sum("trade" in b and "book_delta" in b for b in batches) > len(batches) // 2


def test_order_events_lead_their_aggregated_book_rows() -> None:
    decoded = merge(list(get_format("sim").decode(list(sim_market())[:1])))
    assert list(decoded)[0] == "book_delta"  # merge sorts by name: L2 rows would come first
    first = next(cut_batches(decoded, 1, None))
    assert list(first) == ["order_event"]


def test_partitions_follow_folders(tmp_path: Path) -> None:
    files = [tmp_path / "a" / "1.csv", tmp_path / "b" / "1.csv", tmp_path / "a" / "2.csv"]
    groups = partition_paths(files)
    assert groups == {str(tmp_path / "a"): [files[0], files[2]], str(tmp_path / "b"): [files[1]]}
    folders = sorted({str(p.parent) for p in sim_market()})
    assert CaptureSource("sim", list(sim_market())).list_parts() == folders


@pytest.mark.parametrize("cut_after", [1, 9])
def test_resume_continues_exactly(cut_after: int) -> None:
    source = CaptureSource("sim", list(sim_market())[:1], batch_events=997, batch_ns=None)
    (part_key,) = source.list_parts()
    batches = _drain(source.build_part("source", part_key, None))
    whole = _joined(batches)
    first = source.build_part("source", part_key, None)
    head = _drain(first, cut_after)
    state = pickle.loads(pickle.dumps(first.snapshot()))
    assert isinstance(state, CaptureResume)
    tail = _drain(source.build_part("source", part_key, state))
    assert len(head) == min(cut_after, len(batches))
    got = _joined(head + tail)
    assert set(got) == set(whole) == {"order_event", "trade", "book_delta"}
    for name in whole:
        assert got[name].equals(whole[name]), name


def test_finished_partition_stays_finished() -> None:
    source = CaptureSource("sim", list(sim_market())[:1])
    (key,) = source.list_parts()
    part = source.build_part("source", key, None)
    rows = sum(t.num_rows for b in _drain(part) for t in b.values())
    state = part.snapshot()
    assert state.done and dict(state.emitted)["order_event"] > 0
    assert sum(dict(state.emitted).values()) == rows
    assert _drain(source.build_part("source", key, state)) == []


def test_bad_source_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope"):
        CaptureSource("nope", [tmp_path])
    with pytest.raises(ConfigError, match="missing.gz"):
        CaptureSource("sim", [tmp_path / "missing.gz"])
    with pytest.raises(ConfigError, match="at least one"):
        CaptureSource("sim", [])
    with pytest.raises(ConfigError, match="batch_events"):
        CaptureSource("sim", list(sim_market()), batch_events=0)
    with pytest.raises(ConfigError, match="no live connector for venue 'lobster'"):
        LiveSource("lobster", ["AMZN"])
    with pytest.raises(ConfigError, match="at least one symbol"):
        LiveSource("binance", [])
