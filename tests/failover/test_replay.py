"""Failover through the real live path: two replay servers serve the same simulated market (the
``sim`` venue), the primary's server stalls or cuts its connection, and the market flow runs on
the failover source. The rows, the book and the bars must be those of one uninterrupted source,
exactly: the simulator files' own rows (built apart from the stage, by the batch decoder)."""

from __future__ import annotations

import collections
import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, cluster_main, run_main

from flows.failover import FailoverSource
from flows.market import MarketSinks, build_market_flow
from flows.operators import gather
from tapeflow.derived.bars import time_bars
from tapeflow.live import ConnectorSettings
from tapeflow.live.failover_config import FailoverConfig, InstrumentSpec, SourceSpec
from tapeflow.replay import ReplayServer
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import sim_market, sorted_rows

SECOND = 1_000_000_000
SIM_NS = 20 * SECOND
INTERVALS = ("1s", "1m")
BAR_KEYS = ("symbol", "interval", "ts_event_ns")


def _config(symbols: list[str], main_url: str, backup_url: str) -> FailoverConfig:
    return FailoverConfig(
        (SourceSpec("main", "sim", main_url), SourceSpec("backup", "sim", backup_url)),
        tuple(InstrumentSpec(f"{s}-logical", (("main", s), ("backup", s))) for s in symbols),
        stale_after_ns=2 * SECOND, hold_ns=SECOND, lookback_ns=30 * SECOND, start_grace_ns=5 * SECOND)


def _run(files: tuple[Path, ...], journal: Path, faults: list[str], workers: int) -> dict[str, pa.Table]:
    symbols = sorted({p.parent.name for p in files})
    tables: list = []
    settings = {"settings": ConnectorSettings(seed=1, stale_after_s=30, backoff_initial_s=0.2)}
    # paced (20 simulated seconds in ~10 s) so the outage and the hold lie inside the tape; one
    # process runs the servers, the clients and the flow on a shared machine, so the stage's
    # staleness bound is 2 s of silence, not less
    with ReplayServer("sim", list(files), speed=2, faults=faults).run_in_thread() as main, \
            ReplayServer("sim", list(files), speed=2).run_in_thread() as backup:
        source = FailoverSource(_config(symbols, main.ws_url, backup.ws_url), journal=journal,
                                # generous: under load the first connect can take seconds, and the
                                # idle clock runs from the first empty poll (a run that stopped
                                # before any row gave no source_switch table at all)
                                idle_stop_ns=6 * SECOND,
                                client_options={"main": settings, "backup": settings})
        flow = build_market_flow(source, MarketSinks(tables=TestingSink(tables)), intervals=INTERVALS)
        if workers == 1:
            run_main(flow)
        else:  # the source partition on one worker, the instruments spread over both
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
        assert main.injected, "the fault never fired"
    return gather(tables)


def _frames(files: tuple[Path, ...]) -> int:
    return sum(len(gzip.decompress(p.read_bytes()).splitlines()) - 1 for p in files)


@pytest.mark.parametrize(("fault", "workers"), [("stall", 1), ("disconnect", 2)])
def test_an_outage_of_the_primary_is_one_switch_away_and_one_back_with_nothing_lost(
        tmp_path: Path, fault: str, workers: int) -> None:
    files = sim_market(SIM_NS)
    at = _frames(files) // 5  # a fifth into the tape: the switch back lands before the tape ends
    spec = f"stall@{at}:5s" if fault == "stall" else f"disconnect@{at}"
    out = _run(files, tmp_path / "journal", [spec], workers)
    want = merge(list(get_format("sim").decode(list(files))))

    # one switch away per instrument (why: silence, or the cut connection) and one back
    switches = out["source_switch"].to_pylist()
    per = collections.defaultdict(list)
    for s in switches:
        per[s["instrument"]].append((s["from_source"], s["to_source"], s["reason"]))
    # (a cut connection is noticed by the connector or, when its reset comes late, by the silence)
    reasons = {"stale"} if fault == "stall" else {"disconnected", "stale"}
    assert sorted(per) == [f"{s}-logical" for s in sorted({p.parent.name for p in files})]
    for legs in per.values():
        assert [leg[:2] for leg in legs] == [("main", "backup"), ("backup", "main")]
        assert legs[0][2] in reasons and legs[1][2] == "recovered"

    # the rows are the uninterrupted market's, none lost, none twice
    for name in ("order_event", "trade", "book_delta"):
        assert sorted_rows(out[name], ("symbol",)).equals(sorted_rows(want[name], ("symbol",))), name
    # every 1 s window of venue time the market has, the output has
    for symbol in {p.parent.name for p in files}:
        def seconds(t: pa.Table, sym: str = symbol) -> set[int]:
            ts = t.filter(pa.compute.equal(t["symbol"], sym))["ts_event_ns"].to_numpy()
            return set((ts // SECOND).tolist())
        assert seconds(out["order_event"]) == seconds(want["order_event"])
        windows = sorted(seconds(out["order_event"]))
        assert windows == list(range(windows[0], windows[-1] + 1))

    # bars across the switch equal those of the uninterrupted source
    final = {}
    for row in sorted_rows(out["bar"], (*BAR_KEYS, "revision")).to_pylist():
        final[tuple(row[k] for k in BAR_KEYS)] = {k: v for k, v in row.items() if k != "revision"}
    want_bars = [r for i in INTERVALS
                 for r in time_bars(want["trade"], i).drop_columns(["revision"]).to_pylist()]
    assert sorted(final.values(), key=lambda r: tuple(r[k] for k in BAR_KEYS)) == sorted(
        want_bars, key=lambda r: tuple(r[k] for k in BAR_KEYS))

    # the primary's hole: one closed gap window per instrument, the one its switches name
    status = out["status"]
    gaps = [r for r in status.to_pylist() if r["state"] == "gap" and r["detail"].startswith("failover:")]
    backs = {s["symbol"]: s for s in switches if s["reason"] == "recovered"}
    assert len(gaps) == len(backs) == 2
    for gap in gaps:
        back = backs[gap["symbol"]]
        assert gap["venue"] == "sim"
        assert 0 <= gap["ts_recv_ns"] == back["primary_hole_from_ns"]
        assert gap["ts_recv_ns"] < gap["until_ns"] == back["primary_hole_to_ns"]
    assert not np.any(out["trade"]["flags"].to_numpy())
