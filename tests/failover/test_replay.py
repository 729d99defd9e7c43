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
from flows.sources import CaptureSource
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
# One process runs both servers, both connectors and the flow, so on a starved machine the arrival
# clock is noisy: at a load of ~19 on 2 cores a healthy source's rows showed holes of 2.0-2.9 s
# (four needless switch pairs at a 2 s bound, before silence was judged on the connectors' awake
# stamps). The bound sits above that noise, and the stall far enough above the bound that a reader
# lagging its server by up to STALL - STALE still sees it.
STALE = 4 * SECOND
STALL = 10 * SECOND


def _config(symbols: list[str], main_url: str, backup_url: str) -> FailoverConfig:
    return FailoverConfig(
        (SourceSpec("main", "sim", main_url), SourceSpec("backup", "sim", backup_url)),
        tuple(InstrumentSpec(f"{s}-logical", (("main", s), ("backup", s))) for s in symbols),
        stale_after_ns=STALE, hold_ns=SECOND, lookback_ns=30 * SECOND, start_grace_ns=5 * SECOND)


def _warm(files: tuple[Path, ...]) -> None:
    # the same flow over the same files, from the files: the decoder's and the flow's kernels load
    # (on a fresh checkout, compile) now, not while the replay's clock runs: a compile holds the GIL
    # for long stretches, and a connector that cannot read meanwhile looks silent to the stage
    run_main(build_market_flow(CaptureSource("sim", list(files)), MarketSinks(tables=TestingSink([])),
                               intervals=INTERVALS))


def _run(files: tuple[Path, ...], journal: Path, faults: list[str], workers: int, *,
         main_files: tuple[Path, ...] | None = None, speed: float = 2) -> dict[str, pa.Table]:
    symbols = sorted({p.parent.name for p in files})
    _warm(files)
    tables: list = []
    settings = {"settings": ConnectorSettings(seed=1, stale_after_s=30, backoff_initial_s=0.2)}
    # paced (20 simulated seconds in ~10 s) so the outage and the hold lie inside the tape
    with ReplayServer("sim", list(main_files or files), speed=speed, faults=faults).run_in_thread() as main, \
            ReplayServer("sim", list(files), speed=speed).run_in_thread() as backup:
        source = FailoverSource(_config(symbols, main.ws_url, backup.ws_url), journal=journal,
                                # the idle clock starts at the first data row (a slow first
                                # connect is no idle feed: flows.sources.IdleStop)
                                idle_stop_ns=3 * SECOND,
                                client_options={"main": settings, "backup": settings})
        flow = build_market_flow(source, MarketSinks(tables=TestingSink(tables)), intervals=INTERVALS)
        if workers == 1:
            run_main(flow)
        else:  # the source partition on one worker, the instruments spread over both
            cluster_main(flow, [], 0, worker_count_per_proc=workers)
        assert main.injected or not faults, "the fault never fired"
    return gather(tables)


def _arrived(out: dict[str, pa.Table]) -> str:
    """What a run delivered, for a failure message: row counts per table, the switches with their
    evidence and the STATUS rows of each source (a run that stopped early, or a stall its buffers
    hid, reads differently here)."""
    counts = ", ".join(f"{name}: {t.num_rows}" for name, t in sorted(out.items()))
    lines = [f"tables {{{counts}}}"]
    if "source_switch" in out:
        lines += [f"switch {r['instrument']} {r['from_source']}->{r['to_source']} {r['reason']} at "
                  f"{r['ts_recv_ns']}: {r['detail']}" for r in out["source_switch"].to_pylist()]
    if "status" in out:
        lines += [f"status {r['venue']} {r['symbol']} {r['state']} at {r['ts_recv_ns']}: {r['detail']}"
                  for r in out["status"].to_pylist()]
    return "\n".join(lines)


def _frames(files: tuple[Path, ...]) -> int:
    return sum(len(gzip.decompress(p.read_bytes()).splitlines()) - 1 for p in files)


@pytest.mark.parametrize(("fault", "workers"), [("stall", 1), ("disconnect", 2)])
def test_an_outage_of_the_primary_is_one_switch_away_and_one_back_with_nothing_lost(
        tmp_path: Path, fault: str, workers: int) -> None:
    files = sim_market(SIM_NS)
    # a fifth into the tape (~2 s): a stalled primary's tape waits, so ~8 s of it follow the stall
    # (the backup's has ended by then: after the switch back only the primary delivers)
    at = _frames(files) // 5
    spec = f"stall@{at}:{STALL // 1_000_000}ms" if fault == "stall" else f"disconnect@{at}"
    out = _run(files, tmp_path / "journal", [spec], workers)
    if fault == "stall" and "source_switch" not in out:
        # the awake stamps keep a starved process from switching needlessly, but a reader that
        # lags its server by more than STALL - STALE still reads buffered rows through the whole
        # stall and never sees it (the likely cause when a clean-clone CI run, 2 busy workers,
        # delivered every row with no switch).
        # One more run; a stage that never switches fails both
        print(f"no switch on the first run, running again; it delivered: {_arrived(out)}")
        out = _run(files, tmp_path / "journal-again", [spec], workers)
    # (a cut connection is noticed by the connector or, when its reset comes late, by the silence)
    reasons = {"stale"} if fault == "stall" else {"disconnected", "stale"}
    _check_one_switch_away_and_one_back(out, files, reasons)


def _congested(files: tuple[Path, ...], root: Path, late_ns: int) -> tuple[Path, ...]:
    """The primary's copy of the simulator files, its path congested a fifth into the tape: the lines
    captured in ``[at, at + late_ns)`` are captured (and so served: the server paces by capture time)
    at ``at + late_ns``, each file in its order. Their feed latency jumps to ``late_ns`` and falls back
    to the usual; no line is lost, and the silence (``late_ns`` / speed) stays under the bound."""
    bodies = {p: gzip.decompress(p.read_bytes()).splitlines() for p in files}
    recv = [int(line.split(b",")[1]) for lines in bodies.values() for line in lines[1:]]
    at = min(recv) + (max(recv) - min(recv)) // 5
    out = []
    for path, lines in bodies.items():
        rows = [lines[0]]
        for line in lines[1:]:
            parts = line.split(b",")
            if at <= int(parts[1]) < at + late_ns:
                parts[1] = str(at + late_ns).encode()
            rows.append(b",".join(parts))
        dest = root / "main" / "sim" / path.parent.name / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(gzip.compress(b"\n".join(rows) + b"\n"))
        out.append(dest)
    return tuple(out)


def test_a_late_primary_is_one_switch_away_for_degraded_and_one_back_with_nothing_lost(
        tmp_path: Path) -> None:
    files = sim_market(SIM_NS)
    late_ns = 3 * SECOND  # feed latency 3 s (the stage's breaker: 1 s over the baseline); silent 0.75 s
    out = _run(files, tmp_path / "journal", [], 1, main_files=_congested(files, tmp_path, late_ns), speed=4)
    # a batch whose median latency stays under the bound goes on (one late message is noise, as for
    # the flow's breaker): under load a big batch that holds the first late lines can, so those rows
    # may keep the primary's late capture time; every row of the market is there once, all the same
    _check_one_switch_away_and_one_back(out, files, {"degraded"}, same_capture_times=False)
    # the stage's latency breaker said so, per instrument of the primary, and said when it was over
    judged = [r for r in out["status"].to_pylist() if r["state"] in ("degraded", "recovered")]
    per = collections.defaultdict(list)
    for r in judged:
        assert r["detail"].startswith("failover main: "), _arrived(out)
        per[r["symbol"]].append(r["state"])
    assert dict(per) == {p.parent.name: ["degraded", "recovered"] for p in files}, _arrived(out)


def _check_one_switch_away_and_one_back(out: dict[str, pa.Table], files: tuple[Path, ...],
                                        reasons: set[str], *, same_capture_times: bool = True) -> None:
    want = merge(list(get_format("sim").decode(list(files))))
    unjudged = () if same_capture_times else ("ts_recv_ns",)
    # one switch away per instrument (why: one of ``reasons``) and one back
    seen = _arrived(out)
    assert "source_switch" in out, f"no source_switch table; what arrived: {seen}"
    switches = out["source_switch"].to_pylist()
    per = collections.defaultdict(list)
    for s in switches:
        per[s["instrument"]].append((s["from_source"], s["to_source"], s["reason"]))
    assert sorted(per) == [f"{s}-logical" for s in sorted({p.parent.name for p in files})], seen
    for legs in per.values():
        assert [leg[:2] for leg in legs] == [("main", "backup"), ("backup", "main")], seen
        # back: `recovered` once main held its hold, or `stale` when the backup's tape (it ends
        # first) fell silent past the bound before that: a starved worker stretches the stall, and
        # main's return came 5.5 s after the backup's end in a CI run (the docs: the active source's
        # failure names the switch)
        assert legs[0][2] in reasons and legs[1][2] in {"recovered", "stale"}, seen

    # the rows are the uninterrupted market's, none lost, none twice
    for name in ("order_event", "trade", "book_delta"):
        got, market = (sorted_rows(t[name], ("symbol",)).drop_columns(list(unjudged)) for t in (out, want))
        assert got.equals(market), name
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
        final[tuple(row[k] for k in BAR_KEYS)] = {k: v for k, v in row.items()
                                                  if k != "revision" and k not in unjudged}
    want_bars = [r for i in INTERVALS
                 for r in time_bars(want["trade"], i).drop_columns(["revision", *unjudged]).to_pylist()]
    assert sorted(final.values(), key=lambda r: tuple(r[k] for k in BAR_KEYS)) == sorted(
        want_bars, key=lambda r: tuple(r[k] for k in BAR_KEYS))

    # the primary's hole: one closed gap window per instrument, the one its switches name
    status = out["status"]
    gaps = [r for r in status.to_pylist() if r["state"] == "gap" and r["detail"].startswith("failover:")]
    backs = {s["symbol"]: s for s in switches if s["to_source"] == "main"}
    assert len(gaps) == len(backs) == 2
    for gap in gaps:
        back = backs[gap["symbol"]]
        assert gap["venue"] == "sim"
        assert 0 <= gap["ts_recv_ns"] == back["primary_hole_from_ns"]
        assert gap["ts_recv_ns"] < gap["until_ns"] == back["primary_hole_to_ns"]
    assert not np.any(out["trade"]["flags"].to_numpy())
