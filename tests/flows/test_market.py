"""The market flow end to end over captures: one worker (``run_main``) and two (``cluster_main``)
give the same rows, and those rows equal the batch rebuild of the same files (snapshots, bars on
all 15 intervals, metrics); bad frames come out of the dead-letter sink, nothing else does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from flows.sources import CaptureSource
from tapeflow.book.l2 import quotes_from_deltas
from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.derived import metrics
from tapeflow.derived.bars import STANDARD_INTERVALS, time_bars
from tapeflow.live.health import FeedHealth, LatencyBreaker
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, METRIC
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import binance_prefix, same_rows, sim_market, sorted_rows

SECOND = 1_000_000_000
SNAP_KEYS = ("venue", "symbol", "ts_event_ns")
BAR_KEYS = ("venue", "symbol", "interval", "ts_event_ns", "revision")


def _run(source: CaptureSource, *, workers: int = 1, **kwargs: object) -> tuple[dict[str, pa.Table], dict]:
    tables: list = []
    dead: list = []
    status: list = []
    flow = build_market_flow(source, MarketSinks(tables=TestingSink(tables), dead_letters=TestingSink(dead),
                                                 status=TestingSink(status)), **kwargs)
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    # each side sink gets only its own table: the gathered dict says which tables reached it
    return gather(tables), {"dead_letters": gather(dead), "status": gather(status)}


def _final_bars(bars: pa.Table) -> pa.Table:
    """The last revision of every bar (what the idempotent sink keeps), without the revision."""
    rows = sorted_rows(bars, BAR_KEYS).to_pylist()
    last = {}
    for row in rows:
        last[(row["venue"], row["symbol"], row["interval"], row["ts_event_ns"])] = row
    table = pa.Table.from_pylist(list(last.values()), schema=BAR.arrow_schema())
    return table.drop_columns(["revision"])


def _batch_bars(trades: pa.Table) -> pa.Table:
    parts = [time_bars(trades, i) for i in STANDARD_INTERVALS]
    return sorted_rows(pa.concat_tables(parts), BAR_KEYS).drop_columns(["revision"])


@pytest.fixture(scope="module")
def sim_runs() -> dict[int, tuple[dict[str, pa.Table], dict]]:
    paths = sim_market()
    return {w: _run(CaptureSource("sim", paths, batch_events=2000), workers=w) for w in (1, 2)}


def test_sim_flow_equals_batch_rebuild(sim_runs: dict[int, tuple[dict[str, pa.Table], dict]]) -> None:
    paths = list(sim_market())
    out, side = sim_runs[1]
    decoded = merge(list(get_format("sim").decode(paths)))
    want, _ = snapshots_for_format("sim", paths, levels=10, interval_ns=SECOND)
    assert sorted_rows(out["book_snapshot"], SNAP_KEYS).equals(sorted_rows(want, SNAP_KEYS))
    assert _final_bars(out["bar"]).equals(_batch_bars(decoded["trade"]))
    assert set(out["bar"]["interval"].to_pylist()) == set(STANDARD_INTERVALS)
    # the decoded records pass through unchanged (row for row, per instrument in arrival order)
    for name in ("order_event", "trade", "book_delta"):
        assert sorted_rows(out[name], ("symbol",)).equals(sorted_rows(decoded[name], ("symbol",))), name
    assert out["metric"].num_rows == want.num_rows
    assert side == {"dead_letters": {}, "status": {}}


def test_two_workers_give_the_rows_of_one(sim_runs: dict[int, tuple[dict[str, pa.Table], dict]]) -> None:
    one, two = sim_runs[1][0], sim_runs[2][0]
    assert set(one) == set(two) == {"order_event", "trade", "book_delta", "book_snapshot", "bar", "metric"}
    keys = {"book_snapshot": SNAP_KEYS, "bar": BAR_KEYS, "metric": ("venue", "symbol", "ts_event_ns"),
            "trade": ("symbol",), "order_event": ("symbol",), "book_delta": ("symbol",)}
    for name, key in keys.items():
        assert same_rows(sorted_rows(two[name], key), sorted_rows(one[name], key)), name


@pytest.fixture(scope="module")
def bad_capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The Binance prefix with three broken lines spliced in; returns the file and location -> reason."""
    lines = binance_prefix(6000).read_bytes().splitlines(keepends=True)
    stamp = lines[100].split(b" ", 1)[0]
    bad = {
        200: (stamp + b' {"stream":"btcusdt@trade","data":{"e":"trade"\n', "truncated"),
        300: (b"not a capture line at all\n", "bad_capture_line"),
        400: (stamp + b' {"stream":"btcusdt@trade","data":{"e":"trade","E":1,"T":1,"s":"BTCUSDT","t":7,'
              b'"p":"-5","q":"1","m":true}}\n', "negative"),
    }
    out, where = [], {}
    for i, line in enumerate(lines):
        if i in bad:
            out.append(bad[i][0])
            where[f"bad.txt:{len(out)}"] = bad[i][1]
        out.append(line)
    path = tmp_path_factory.mktemp("bad") / "bad.txt"
    path.write_bytes(b"".join(out))
    return path, where


@pytest.mark.realdata
def test_binance_flow_equals_batch_and_bad_frames_are_dead_letters(bad_capture: tuple[Path, dict[str, str]]
                                                                  ) -> None:
    path, bad_locations = bad_capture
    out, side = _run(CaptureSource("binance", [path], batch_events=700, batch_ns=SECOND // 4),
                     new_health=lambda: FeedHealth(LatencyBreaker(50_000_000)))
    decoded = merge(list(get_format("binance").decode([path])))
    want, _ = snapshots_for_format("binance", [path], levels=10, interval_ns=SECOND)
    assert out["book_snapshot"].equals(want)
    assert _final_bars(out["bar"]).equals(_batch_bars(decoded["trade"]))
    quotes = quotes_from_deltas(decoded["book_delta"])
    assert same_rows(out["metric"], metrics(want, quotes, decoded["trade"], interval="1s", levels=10))
    # exactly the three spliced lines, each with its reason, and nothing else
    assert set(side["dead_letters"]) == {"rejected"} and set(side["status"]) == {"status"}
    rejected = side["dead_letters"]["rejected"]
    reasons = dict(zip(rejected["location"].to_pylist(), rejected["reason"].to_pylist(), strict=True))
    assert reasons == bad_locations
    assert "rejected" not in out
    # the venue's own quote stream passes through as decoded; the rebuilt BBO does not by default
    assert out["quote"].equals(decoded["quote"])
    # the health stage: this capture's clock runs ~1.2 s behind Binance's, one venue-wide skew row
    (skew,) = side["status"]["status"].to_pylist()
    assert (skew["state"], skew["venue"], skew["symbol"]) == ("skew", "binance-usdm", "")
    assert skew["until_ns"] == -1
    reported_ms = float(skew["detail"].split(" is ")[1].split(" ms")[0])
    assert abs(reported_ms - _raw_trade_latency_ms(path)) < 150


def _raw_trade_latency_ms(path: Path) -> float:
    """Median capture time - trade time over the raw @trade lines (independent of the decoder)."""
    lags = []
    for line in path.read_bytes().splitlines():
        if b"@trade" in line and line[:1].isdigit():
            try:
                msg = orjson.loads(line.split(b" ", 1)[1])
            except orjson.JSONDecodeError:
                continue
            lags.append(int(line.split(b" ", 1)[0]) / 1e6 - msg["data"]["T"])
    return float(np.median(lags))


@pytest.mark.realdata
def test_rebuilt_bbo_as_quote_rows_and_no_bars() -> None:
    path = binance_prefix(3000)
    out, _ = _run(CaptureSource("binance", [path]), intervals=(), raw=False, bbo_as_quote=True, levels=3)
    decoded = merge(list(get_format("binance").decode([path])))
    every = quotes_from_deltas(decoded["book_delta"])
    assert set(out) == {"book_snapshot", "metric", "quote"}
    # BBO changes only: fewer rows than one per venue event, and the same last state
    assert 0 < out["quote"].num_rows < every.num_rows
    assert out["quote"].slice(out["quote"].num_rows - 1).equals(every.slice(every.num_rows - 1))
    assert pc.max(pc.list_value_length(out["book_snapshot"]["bid_price_nanos"])).as_py() == 3
    assert out["metric"].schema.equals(METRIC.arrow_schema())
    assert out["book_snapshot"].schema.equals(BOOK_SNAPSHOT.arrow_schema())
