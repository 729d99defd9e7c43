"""The stage's latency breaker discounts our own starvation (docs/failover.md, "Degraded"), with an
injected clock: the feeds of ``test_awake.py``, each row captured when its batch arrived (as a
connector stamps ``ts_recv``), so rows a starved connector held back carry our lag in
``ts_recv - ts_event``. Judged on the connector's awake stamps, that lag is not the venue's: no
``degraded`` row, no switch. (A smaller market than ``test_awake.py``'s: 200 rows, a 1 s starvation,
a 500 ms threshold.) A connector that stamped all along and read late rows (the venue or
the path held them) is degraded as before."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from tapeflow.live.failover import FailoverStage
from tapeflow.live.failover_config import FailoverConfig
from tests.failover.synthetic import MS, SECOND, VENUES, config, market
from tests.failover.test_awake import _run, _stamps
from tests.failover.test_stage import LAT, Event, _feeds, _prices, _switches, _synced

STARVED_NS = SECOND  # twice the breaker's threshold below


def _config() -> FailoverConfig:
    return dataclasses.replace(config(stale_ms=500, hold_ms=500), degraded_after_ns=500 * MS)


def _scenario(*, starved: bool) -> tuple[list[tuple[int, int]], list[Event], int]:
    # test_awake's scenario, smaller: pri holds rows 40.. for 1 s, then delivers them at once
    rows = market(200)
    t0 = rows[0][0] - 200 * MS
    stall_from, end = 40, rows[-1][0] + 200 * MS
    resume_ns = rows[stall_from][0] + STARVED_NS
    feeds = _feeds(rows, delay={"pri": (stall_from, resume_ns)})
    asleep = (rows[stall_from - 1][0] + LAT["pri"] + 1, resume_ns + len(rows)) if starved else None
    stamps = _stamps("pri", t0, end, asleep=asleep) + _stamps("sec", t0, end)
    return rows, _synced(t0) + feeds + stamps, t0


def _captured_on_arrival(events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for arrival, src, batch in events:
        if "trade" in batch:
            trade = batch["trade"]
            i = trade.column_names.index("ts_recv_ns")
            batch = {**batch, "trade": trade.set_column(i, trade.schema.field(i),
                                                        pa.array([arrival] * trade.num_rows, pa.int64()))}
        out.append((arrival, src, batch))
    return out


def _degraded(out: dict[str, pa.Table]) -> list[dict]:
    status = out["status"].to_pylist()
    return [r for r in status if r["state"] == "degraded" and r["detail"].startswith("failover")]


def test_a_starved_connectors_late_captures_are_not_the_venues_latency() -> None:
    rows, events, t0 = _scenario(starved=True)  # pri's loop did not run for 1 s
    events = _captured_on_arrival(events)
    stage = FailoverStage(_config())
    out = _run(stage, events, t0=t0)
    assert _degraded(out) == [] and _switches(out) == []
    assert _prices(out) == rows and set(out["trade"]["venue"].to_pylist()) == {VENUES["pri"]}
    blind_from, blind_to = stage.latency["pri"].blind_ns
    assert blind_to - blind_from >= STARVED_NS - 100 * MS  # the window it did not run, seen on its stamps
    # the same captures judged without the stamps (the arrival clock alone): the starvation's ~1 s
    # is taken for feed latency and the source is degraded
    again = _run(FailoverStage(_config()), events, t0=t0, awake=False)
    late = _degraded(again)
    assert [r["venue"] for r in late] == [VENUES["pri"]] and "feed latency" in late[0]["detail"]


def test_a_connector_that_watched_and_read_late_rows_is_degraded() -> None:
    rows, events, t0 = _scenario(starved=False)  # pri's connector stamped all along; rows 1 s late
    stage = FailoverStage(_config())
    out = _run(stage, _captured_on_arrival(events), t0=t0)
    late = _degraded(out)
    assert [r["venue"] for r in late] == [VENUES["pri"]]
    lag_ms = float(late[0]["detail"].split("feed latency ")[1].split(" ms")[0])
    assert lag_ms > 500  # the held rows' latency, not discounted: the connector was awake
    assert stage.latency["pri"].blind_ns is None or \
        stage.latency["pri"].blind_ns[1] - stage.latency["pri"].blind_ns[0] <= 100 * MS
    assert _prices(out) == rows
