"""Silence judged on the connectors' awake stamps (docs/failover.md, "Silence"), with an injected clock.

A connector stamps when it read its socket (``LiveBatch.awake_ns``), data or not. A source is silent
only when its connector was awake ``stale_after`` after its last row: a connector that did not run
(a starved process) holds its rows back and stamps nothing, and must switch nothing; a connector
that ran and read nothing is a real silence and must switch."""

from __future__ import annotations

import pyarrow as pa

from flows.operators import gather
from tapeflow.live.failover import FailoverStage
from tests.failover.synthetic import MS, SECOND, VENUES, config, market
from tests.failover.test_stage import LAT, TICK_NS, Event, _feeds, _prices, _switches, _synced

AWAKE_NS = 50 * MS  # the connectors' stamp interval


def _stamps(src: str, start_ns: int, end_ns: int, *, asleep: tuple[int, int] | None = None) -> list[Event]:
    """Empty batches of ``src``'s connector every ``AWAKE_NS`` (none while it was ``asleep``)."""
    return [(t, src, {}) for t in range(start_ns, end_ns, AWAKE_NS)
            if asleep is None or not asleep[0] <= t < asleep[1]]


def _run(stage: FailoverStage, events: list[Event], *, t0: int, awake: bool = True) -> dict[str, pa.Table]:
    # as flows.failover feeds it: every batch in arrival order, each with its connector's awake stamp
    # (a batch's stamp is at or after its frames' arrival), the stage's own ticks between them
    items = []
    now = t0
    for arrival, src, batch in sorted(events, key=lambda e: (e[0], e[1])):
        while now + TICK_NS < arrival:
            now += TICK_NS
            items.extend(stage.tick(now).items())
        now = max(now, arrival)
        if batch or awake:
            items.extend(stage.feed(src, arrival, batch, awake_ns=arrival if awake else None).items())
    items.extend(stage.close().items())
    return gather(items)


def _scenario(*, starved: bool) -> tuple[list[tuple[int, int]], list[Event], int, int]:
    rows = market(600)
    t0 = rows[0][0] - SECOND
    stall_from, end = 200, rows[-1][0] + SECOND
    resume_ns = rows[stall_from][0] + 2 * SECOND  # 2 s without a row of pri: 4 x stale_after
    feeds = _feeds(rows, delay={"pri": (stall_from, resume_ns)})
    # starved: pri's connector did not run for those 2 s (no stamp), then read everything at once;
    # silent: it ran and stamped all along, and its server sent nothing
    # (it wakes to read what its socket holds before its next stamp: rows 1 ns apart from resume_ns)
    asleep = (rows[stall_from - 1][0] + LAT["pri"] + 1, resume_ns + len(rows)) if starved else None
    stamps = _stamps("pri", t0, end, asleep=asleep) + _stamps("sec", t0, end)
    return rows, _synced(t0) + feeds + stamps, t0, rows[stall_from - 1][0] + LAT["pri"]


def test_a_starved_connector_switches_nothing() -> None:
    rows, events, t0, _ = _scenario(starved=True)
    stage = FailoverStage(config(stale_ms=500, hold_ms=1_000))
    out = _run(stage, events, t0=t0)
    assert _switches(out) == []
    assert _prices(out) == rows and set(out["trade"]["venue"].to_pylist()) == {VENUES["pri"]}
    # the arrival clock alone (no stamps: the reference rule) takes the same starvation for a stall
    again = _run(FailoverStage(config(stale_ms=500, hold_ms=1_000)), events, t0=t0, awake=False)
    assert [s["reason"] for s in _switches(again)] == ["stale", "recovered"]


def test_a_real_silence_switches_once_within_the_bound_and_back_after_the_hold() -> None:
    rows, events, t0, last_pri_ns = _scenario(starved=False)
    stage = FailoverStage(config(stale_ms=500, hold_ms=1_000))
    out = _run(stage, events, t0=t0)
    assert _prices(out) == rows  # none lost, none twice
    away, back = _switches(out)
    assert (away["from_source"], away["to_source"], away["reason"]) == ("pri", "sec", "stale")
    # at pri's first stamp (or sec's first row) more than stale_after after its last row
    assert 500 * MS < away["ts_recv_ns"] - last_pri_ns <= 500 * MS + max(AWAKE_NS, 10 * MS)
    assert "its connection was read" in away["detail"]
    assert (back["to_source"], back["reason"]) == ("pri", "recovered")


def test_a_quiet_market_switches_nothing_whichever_connector_notices_first() -> None:
    # both sources deliver, then the market goes quiet for 3 s (both connectors awake, reading
    # nothing): the primary's stamps find it quiet first, but the fallback delivered nothing newer
    rows = market(600)
    t0 = rows[0][0] - SECOND
    quiet = (rows[300][0] + 5 * MS, rows[300][0] + 3 * SECOND)
    events = _synced(t0) + _feeds(rows, delay={"pri": (300, quiet[1]), "sec": (300, quiet[1])}) + \
        _stamps("pri", t0, rows[-1][0] + SECOND) + _stamps("sec", t0 + 1, rows[-1][0] + SECOND)
    out = _run(FailoverStage(config(stale_ms=500)), events, t0=t0)
    assert _switches(out) == [] and _prices(out) == rows
