"""The live stages' per-batch shortcuts: one-instrument check, emit skipping, schemas of the tables built."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.derived import LiveBars, LiveMetrics
from tapeflow.derived.metrics import by_instrument, single_value
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, METRIC, QUOTE
from tests.derived.test_live_bars import B, S, trades

A = ord("A")


def _groups_by_hand(table: pa.Table) -> list[tuple[str, str, list[int]]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (v, s) in enumerate(zip(table.column("venue").to_pylist(), table.column("symbol").to_pylist(),
                                   strict=True)):
        groups.setdefault((v, s), []).append(i)
    return [(v, s, rows) for (v, s), rows in groups.items()]


def test_by_instrument_tells_one_instrument_from_many() -> None:
    # Same-length symbols that differ in one byte, one row among many, lengths that sum up alike
    # ("ab" + "ab" vs "a" + "bab"), sliced and multi-chunk columns: the string-buffer check must
    # agree with a plain Python grouping.
    cases = [
        ["ab"] * 20, ["ab"] * 19 + ["ac"], ["ac"] + ["ab"] * 19, ["a", "bab"] * 10, ["ab"] * 3,
        ["ab", "ac", "ab"], [""] * 12, ["é"] * 12, ["ab"] * 10 + ["abc"] * 10,
    ]
    for symbols in cases:
        rows = [(k * S, 100, 1, B, sym) for k, sym in enumerate(symbols)]
        table = trades(rows)
        tables = [table, table.slice(1), pa.concat_tables([table.slice(0, 5), table.slice(5)])]
        for t in tables:
            expected = _groups_by_hand(t)
            got = [(v, s, sub.column("sequence").to_pylist()) for v, s, sub in by_instrument(t)]
            seq = t.column("sequence").to_pylist()
            assert got == [(v, s, [seq[i] for i in rows]) for v, s, rows in expected], symbols
            values = set(t.column("symbol").to_pylist())
            assert single_value(t.column("symbol")) == (values.pop() if len(values) == 1 else None), symbols


def test_bars_emitted_exactly_when_the_watermark_passes_their_end_one_trade_per_batch() -> None:
    # One-trade batches (the emit scan is skipped while nothing can close); expected emissions
    # computed here from the policy: bar [k, k+1 s) goes out with the first batch after which
    # max ts - lateness >= its end; a late trade into an emitted bar restates it in its own batch.
    lateness = S // 3
    rng = np.random.default_rng(5)
    ts = np.cumsum(rng.integers(0, S // 2, 300)).tolist()
    ts[150] = ts[149] - S  # late: behind the watermark, its bar already emitted
    live = LiveBars(("1s",), allowed_lateness_ns=lateness, restate_horizon_ns=3600 * S)
    emitted: set[int] = set()
    revisions: dict[int, int] = {}
    top = None
    for i, t in enumerate(ts):
        got = live.add(trades([(t, 100 + i, 1, B if i % 2 else A)]))
        got_keys = [(r["ts_event_ns"], r["revision"]) for r in got.to_pylist()]
        top = t if top is None else max(top, t)
        bucket = t // S * S
        expected = []
        if bucket in emitted:
            revisions[bucket] += 1
            expected.append((bucket, revisions[bucket]))
        seen = {x // S * S for x in ts[:i + 1]}
        for b in sorted(seen - emitted):
            if b + S <= top - lateness:
                emitted.add(b)
                revisions[b] = 0
                expected.append((b, 0))
        assert got_keys == sorted(expected), i
    assert live.stats.restated == 1


def test_live_tables_have_the_record_schemas() -> None:
    live = LiveBars(("1s", "1m"), allowed_lateness_ns=0)
    empty = live.add(trades([(5 * S, 100, 1, B)]))
    full = live.add(trades([(70 * S, 101, 2, A)]))
    assert empty.num_rows == 0 and full.num_rows == 2
    for t in (empty, full, live.close()):
        assert t.schema.equals(BAR.arrow_schema(), check_metadata=True)
    metrics = LiveMetrics("1s", levels=2)
    snap = BOOK_SNAPSHOT.table({
        "ts_event_ns": [S], "ts_recv_ns": [S - 5], "sequence": [1], "bid_price_nanos": [[100, 99]],
        "bid_size_nanos": [[3, 4]], "ask_price_nanos": [[102]], "ask_size_nanos": [[5]], "flags": [0],
    }, constants={"venue": "v", "symbol": "s", "levels": 2})
    quotes = QUOTE.table({
        "ts_event_ns": [S - 5], "ts_recv_ns": [S - 5], "sequence": [1], "bid_price_nanos": [100],
        "bid_size_nanos": [3], "ask_price_nanos": [102], "ask_size_nanos": [5], "flags": [0],
    }, constants={"venue": "v", "symbol": "s"})
    held = metrics.add(snap, quotes, trades([]))
    out = metrics.close()
    assert held.num_rows == 0 and out.num_rows == 1
    for t in (held, out):
        assert t.schema.equals(METRIC.arrow_schema(), check_metadata=True)
    row = out.to_pylist()[0]
    # by hand: mid 100 + 2 // 2, microprice floor((100*5 + 102*3) / 8) = 100, depths 7 and 5
    assert (row["mid_price_nanos"], row["spread_nanos"], row["microprice_nanos"]) == (101, 2, 100)
    assert (row["bid_depth_nanos"], row["ask_depth_nanos"]) == (7, 5)
    assert row["imbalance"] == (7 - 5) / 12
