"""The failover stage's cost per micro-batch (docs/failover.md): two sources of one instrument
deliver the same trades, the stage forwards one and keeps the other's until the frontier passes
them, with one outage and one switch back in the run. Beside it, the same batches through a stage
of one source (nothing to keep, nothing to splice): the peer measured in the same run."""

from __future__ import annotations

import pyarrow as pa

from bench import Report, median_time
from tapeflow.live.failover import FailoverStage
from tapeflow.live.failover_config import FailoverConfig, InstrumentSpec, SourceSpec
from tapeflow.schemas.records import STATUS, TRADE

MS = 1_000_000
BATCHES = 2_000


def _trades(venue: str, start: int, n: int) -> pa.Table:
    ts = [1_700_000_000_000 * MS + (start + i) * MS for i in range(n)]
    return TRADE.table({"ts_event_ns": ts, "ts_recv_ns": ts, "sequence": list(range(start, start + n)),
                        "trade_id": [""] * n, "price_nanos": [1_000 + i for i in range(n)],
                        "size_nanos": [1] * n, "aggressor_side": [66] * n, "flags": [0] * n},
                       constants={"venue": venue, "symbol": "X"})


def _synced(venue: str) -> pa.Table:
    return STATUS.table({"ts_event_ns": [-1], "ts_recv_ns": [0], "state": ["synced"], "sequence": [-1],
                         "until_ns": [-1], "detail": [""]}, constants={"venue": venue, "symbol": "X"})


def _stage() -> FailoverStage:
    # with one source delivering, the second never does: nothing is kept or spliced
    return FailoverStage(FailoverConfig((SourceSpec("a", "a"), SourceSpec("b", "b")),
                                        (InstrumentSpec("X", (("a", "X"), ("b", "X"))),),
                                        stale_after_ns=50 * MS, hold_ns=200 * MS, start_grace_ns=0))


def _inputs(rows_per_batch: int, sources: int) -> list[tuple[str, int, dict[str, pa.Table]]]:
    out: list[tuple[str, int, dict[str, pa.Table]]] = [
        (n, 0, {"status": _synced(n)}) for n in ["a", "b"][:sources]]
    for i in range(BATCHES):
        start = i * rows_per_batch
        arrival = 1_700_000_000_000 * MS + start * MS
        for n in ["a", "b"][:sources]:
            if n == "a" and sources > 1 and BATCHES // 3 <= i < BATCHES // 2:
                continue  # the primary's outage: the fallback serves, then the primary comes back
            out.append((n, arrival, {"trade": _trades(n, start, rows_per_batch)}))
    return out


def run(report: Report) -> None:
    for rows in (1, 100, 1_000):
        report.section(f"failover stage, {BATCHES:,} batches of {rows:,} trades per source")
        for label, sources in (("one source delivering", 1), ("two sources, one outage", 2)):
            inputs = _inputs(rows, sources)
            stage: list[FailoverStage] = []

            def fresh(holder: list[FailoverStage] = stage) -> None:
                holder[:] = [_stage()]

            def feed(holder: list[FailoverStage] = stage, batches: list = inputs) -> None:
                for source, arrival, batch in batches:
                    holder[0].feed(source, arrival, batch)

            cpu, wall = median_time(feed, setup=fresh)
            batches = len(inputs)
            report.add(f"FailoverStage.feed, {label}", batches * rows, (cpu, wall), ours=True,
                       note=f"{cpu / batches * 1e6:.0f} us CPU per batch, {stage[0].stats.switches} switches")
