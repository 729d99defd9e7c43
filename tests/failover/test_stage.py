"""The failover stage on synthetic sequences: every transition, the splice, the hole, determinism.

One market of trades (with runs of equal venue time) is served by two sources of different venue
codes, so each output row says by its ``venue`` which source it came from. The expected rows are
the market itself, built apart from the stage (``synthetic.market``)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from flows.operators import gather
from tapeflow.errors import ConfigError
from tapeflow.live.failover import FailoverStage
from tapeflow.live.failover_config import FailoverConfig, InstrumentSpec, SourceSpec
from tapeflow.schemas.records import BOOK_DELTA
from tests.failover.synthetic import MS, SECOND, VENUES, config, market, status, trades

TICK_NS = 50 * MS
LAT = {"pri": 1 * MS, "sec": 2 * MS}
Event = tuple[int, str, dict[str, pa.Table]]


def _feeds(rows: list[tuple[int, int]], *, skip: dict[str, tuple[int, int]] | None = None,
           delay: dict[str, tuple[int, int]] | None = None, lag: dict[str, tuple[int, int]] | None = None,
           per_batch: int = 1) -> list[Event]:
    """Both sources deliver ``rows`` ``per_batch`` at a time; ``skip[src] = (i, j)``: rows i..j-1
    never arrive from src; ``delay[src] = (i, until_ns)``: src is silent from row i until ``until_ns``
    (a stall: what it held back then arrives in order, 1 ns apart); ``lag[src] = (i, lag_ns)``: from
    row i on, src delivers ``lag_ns`` late for good (a replay server re-anchors its pace after a stall)."""
    events: list[Event] = []
    for src in ("pri", "sec"):
        for i in range(0, len(rows), per_batch):
            part = [(k, r) for k, r in enumerate(rows[i:i + per_batch], i)
                    if not (skip and src in skip and skip[src][0] <= k < skip[src][1])]
            if not part:
                continue
            arrival = part[-1][1][0] + LAT[src]
            if delay and src in delay and part[0][0] >= delay[src][0] and arrival < delay[src][1]:
                arrival = delay[src][1] + part[0][0]  # in order, after the stall
            if lag and src in lag and part[0][0] >= lag[src][0]:
                arrival += lag[src][1]
            events.append((arrival, src, {"trade": trades(src, [r for _, r in part])}))
    return events


def _run(stage: FailoverStage, events: list[Event], *, t0: int) -> dict[str, pa.Table]:
    events = sorted(events, key=lambda e: (e[0], e[1]))
    items = []
    now = t0
    for arrival, src, batch in events:
        while now + TICK_NS < arrival:
            now += TICK_NS
            items.extend(stage.tick(now).items())
        now = max(now, arrival)
        items.extend(stage.feed(src, arrival, batch).items())
    items.extend(stage.close().items())
    return gather(items)


def _synced(t: int) -> list[Event]:
    return [(t, "pri", {"status": status("pri", "connected", "syncing", "synced")}),
            (t, "sec", {"status": status("sec", "connected", "syncing", "synced")})]


def _prices(out: dict[str, pa.Table]) -> list[tuple[int, int]]:
    t = out["trade"]
    return list(zip(t["ts_event_ns"].to_pylist(), t["price_nanos"].to_pylist(), strict=True))


def _switches(out: dict[str, pa.Table]) -> list[dict]:
    return out["source_switch"].to_pylist() if "source_switch" in out else []


def test_a_healthy_primary_is_the_only_source() -> None:
    rows = market(300)
    t0 = rows[0][0] - SECOND
    stage = FailoverStage(config())
    out = _run(stage, _synced(t0) + _feeds(rows), t0=t0)
    assert _prices(out) == rows
    assert set(out["trade"]["venue"].to_pylist()) == {VENUES["pri"]}
    assert _switches(out) == [] and stage.stats.covered == len(rows) and stage.stats.expired == 0
    # both connections' STATUS rows pass, each with its own venue
    assert sorted(set(out["status"]["venue"].to_pylist())) == sorted(VENUES.values())


@pytest.mark.parametrize("catches_up", [True, False])
def test_a_stalled_primary_switches_once_within_the_bound_and_back_after_the_hold(catches_up: bool) -> None:
    rows = market(600)
    t0 = rows[0][0] - SECOND
    stall_from = 200
    resume_ns = rows[320][0]
    stage = FailoverStage(config(stale_ms=500, hold_ms=2_000))
    if catches_up:  # what it held back arrives at once, then it is on time again
        feeds = _feeds(rows, delay={"pri": (stall_from, resume_ns)})
        resume_ns += stall_from  # the first held-back row's arrival
    else:  # it goes on from where it stopped, as late as the stall was long
        resume_ns = rows[stall_from][0] + LAT["pri"] + 800 * MS
        feeds = _feeds(rows, lag={"pri": (stall_from, 800 * MS)})
    out = _run(stage, _synced(t0) + feeds, t0=t0)
    assert _prices(out) == rows  # no row lost, none twice: the splice is exact, ties included
    s = stage.stats  # every delivered row is accounted for
    assert s.forwarded == len(rows) and s.forwarded + s.covered + s.expired == 2 * len(rows)
    away, back = _switches(out)
    last_pri_ns = rows[stall_from - 1][0] + LAT["pri"]
    assert (away["from_source"], away["to_source"], away["reason"]) == ("pri", "sec", "stale")
    assert 500 * MS < away["ts_recv_ns"] - last_pri_ns <= 500 * MS + TICK_NS + LAT["sec"]
    assert (back["from_source"], back["to_source"], back["reason"]) == ("sec", "pri", "recovered")
    assert 2 * SECOND <= back["ts_recv_ns"] - resume_ns <= 2 * SECOND + 20 * MS
    venues = out["trade"]["venue"].to_pylist()
    # provenance: one run of secondary rows, between the primary's
    runs = [v for i, v in enumerate(venues) if i == 0 or venues[i - 1] != v]
    assert runs == [VENUES["pri"], VENUES["sec"], VENUES["pri"]]
    # the primary's hole: from its last row in the output to its newest row when taken back
    (gap,) = [r for r in out["status"].to_pylist() if r["state"] == "gap"]
    last_pri_recv = rows[stall_from - 1][0]  # the synthetic rows' capture time is their venue time
    assert gap["venue"] == VENUES["pri"]
    assert gap["ts_recv_ns"] == last_pri_recv == away["primary_hole_from_ns"]
    assert gap["until_ns"] == back["primary_hole_to_ns"] > gap["ts_recv_ns"]


@pytest.mark.parametrize(("states", "reason", "back"), [
    (("disconnected",), "disconnected", ("connected", "syncing", "synced")),
    (("gap", "resyncing"), "gap", ("synced", "recovered")),
    (("checksum_mismatch", "resyncing"), "gap", ("synced",)),
    (("stale",), "stale", ("connected", "syncing", "synced")),
    (("degraded",), "degraded", ("recovered",)),
])
def test_a_status_row_switches_at_its_arrival_and_names_why(states: tuple[str, ...], reason: str,
                                                             back: tuple[str, ...]) -> None:
    rows = market(800)
    t0 = rows[0][0] - SECOND
    lost_from, lost_to = 200, 400  # the primary's rows of its outage never arrive
    bad_ns = rows[lost_from][0]
    good_ns = rows[lost_to][0] - 5 * MS
    events = _synced(t0) + _feeds(rows, skip={"pri": (lost_from, lost_to)}) + [
        (bad_ns, "pri", {"status": status("pri", *states)}),
        (good_ns, "pri", {"status": status("pri", *back)})]
    stage = FailoverStage(config(stale_ms=500, hold_ms=1_000))
    out = _run(stage, events, t0=t0)
    assert _prices(out) == rows
    away, back_row = _switches(out)
    assert away["reason"] == reason and away["ts_recv_ns"] == bad_ns
    assert back_row["reason"] == "recovered" and back_row["to_source"] == "pri"
    assert back_row["ts_recv_ns"] - good_ns >= SECOND


def test_a_flapping_primary_restarts_its_hold_and_is_taken_back_once() -> None:
    rows = market(1_000)
    t0 = rows[0][0] - SECOND
    down1, up1, down2, up2 = (rows[i][0] for i in (100, 300, 400, 500))
    events = _synced(t0) + _feeds(rows, skip={"pri": (100, 300)}) + [
        (down1, "pri", {"status": status("pri", "disconnected")}),
        (up1, "pri", {"status": status("pri", "connected", "syncing", "synced")}),
        (down2, "pri", {"status": status("pri", "gap", "resyncing")}),  # 1 s after up1: under the hold
        (up2, "pri", {"status": status("pri", "synced")}),
    ]
    stage = FailoverStage(config(stale_ms=500, hold_ms=1_500))
    out = _run(stage, events, t0=t0)
    assert _prices(out) == rows
    reasons = [(s["to_source"], s["reason"]) for s in _switches(out)]
    assert reasons == [("sec", "disconnected"), ("pri", "recovered")]
    assert _switches(out)[1]["ts_recv_ns"] >= up2 + 1_500 * MS


def test_no_switch_without_a_healthy_fallback_nor_before_the_primary_had_its_start() -> None:
    rows = market(300)
    t0 = rows[0][0] - SECOND
    # the fallback syncs first; the primary syncs 200 ms later (< start_grace): no switch at start
    events = [(t0, "sec", {"status": status("sec", "synced")}),
              (t0 + 200 * MS, "pri", {"status": status("pri", "synced")})] + _feeds(rows)
    out = _run(FailoverStage(config(stale_ms=500, grace_ms=500)), events, t0=t0)
    assert _switches(out) == [] and _prices(out) == rows
    # the primary disconnects while the fallback is down too: nowhere to go
    events = [(t0, "pri", {"status": status("pri", "synced")}),
              (rows[10][0], "sec", {"status": status("sec", "disconnected")}),
              (rows[20][0], "pri", {"status": status("pri", "disconnected")})] + _feeds(rows)
    assert _switches(_run(FailoverStage(config()), events, t0=t0)) == []
    # a primary that never becomes healthy is left once its start is over
    events = [(t0, "sec", {"status": status("sec", "synced")})] + _feeds(rows)
    (away,) = _switches(_run(FailoverStage(config(stale_ms=500)), events, t0=t0))
    # (at the fallback's first row: synced without data is not healthy yet)
    assert away["reason"] == "disconnected" and away["ts_recv_ns"] == rows[0][0] + LAT["sec"]


def test_decisions_replay_exactly_and_do_not_depend_on_the_batch_cut() -> None:
    rows = market(900, ties_every=3)
    t0 = rows[0][0] - SECOND
    ins = _synced(t0) + _feeds(rows, delay={"pri": (200, rows[320][0])}, per_batch=7)
    first = _run(FailoverStage(config()), ins, t0=t0)
    again = _run(FailoverStage(config()), ins, t0=t0)
    for name in first:
        assert first[name].equals(again[name]), name
    assert _prices(first) == rows and len(_switches(first)) == 2


def test_warm_books_passes_every_sources_book_rows_and_needs_distinct_books() -> None:
    def deltas(src: str, n: int, t: int) -> pa.Table:
        return BOOK_DELTA.table({"ts_event_ns": [t] * n, "ts_recv_ns": [t] * n, "sequence": list(range(n)),
                                 "side": [ord("B")] * n, "action": [ord("U")] * n,
                                 "price_nanos": list(range(n)), "size_nanos": [1] * n, "flags": [0] * n},
                                constants={"venue": VENUES[src], "symbol": "X"})
    t0 = 1_700_000_000 * SECOND
    stage = FailoverStage(config(warm_books=True))
    out = gather([*stage.feed("pri", t0, {"book_delta": deltas("pri", 3, t0)}).items(),
                  *stage.feed("sec", t0, {"book_delta": deltas("sec", 4, t0)}).items()])
    assert out["book_delta"]["venue"].to_pylist().count(VENUES["sec"]) == 4
    with pytest.raises(ConfigError, match="two instruments"):
        FailoverStage(FailoverConfig((SourceSpec("pri", "v"), SourceSpec("sec", "w")), (
            InstrumentSpec("A", (("pri", "X"), ("sec", "X"))),
            InstrumentSpec("B", (("pri", "X"), ("sec", "Y"))))))


def test_symbols_outside_the_config_pass_and_are_counted() -> None:
    stage = FailoverStage(config())
    other = trades("pri", market(3)).drop_columns(["symbol"]).append_column(
        "symbol", pa.array(["OTHER"] * 3, pa.string()))
    out = stage.feed("pri", 0, {"trade": other})
    assert out["trade"].num_rows == 3 and stage.stats.unrouted == 3


def test_silence_of_every_source_switches_nothing() -> None:
    # a quiet market, or this process held up for a while: both sources go silent for 3 s (> the
    # 500 ms stale_after), ticks go on, then both deliver again
    rows = market(600)
    t0 = rows[0][0] - SECOND
    events = _synced(t0) + _feeds(rows, delay={"pri": (300, rows[300][0] + 3 * SECOND),
                                               "sec": (300, rows[300][0] + 3 * SECOND)})
    stage = FailoverStage(config(stale_ms=500))
    out = _run(stage, events, t0=t0)
    assert _switches(out) == [] and _prices(out) == rows


def test_the_primary_hole_is_a_window_the_gap_repair_rebuilds() -> None:
    from tapeflow.batch.repairs import closed_windows, repair_days
    from tapeflow.storage.lake import day_of

    rows = market(600)
    t0 = rows[0][0] - SECOND
    out = _run(FailoverStage(config()), _synced(t0) + _feeds(rows, skip={"pri": (200, 300)}) + [
        (rows[201][0], "pri", {"status": status("pri", "disconnected")}),  # after row 199 arrived
        (rows[300][0], "pri", {"status": status("pri", "connected", "syncing", "synced")})], t0=t0)
    windows = [w for w in closed_windows(out["status"]) if w["detail"].startswith("failover:")]
    assert [(w["venue"], w["symbol"], w["ts_recv_ns"]) for w in windows] == [
        (VENUES["pri"], "X", rows[199][0])]
    assert repair_days(windows[0], VENUES["pri"], "X", []) == {(day_of(rows[199][0]), VENUES["pri"], "X")}


def test_a_failing_fallback_hands_back_to_a_healthy_primary_before_its_hold() -> None:
    rows = market(800)
    t0 = rows[0][0] - SECOND
    down, up, sec_down = rows[100][0], rows[300][0], rows[330][0]  # 300 ms after up: inside the hold
    events = _synced(t0) + _feeds(rows, skip={"pri": (100, 300), "sec": (330, 800)}) + [
        (down, "pri", {"status": status("pri", "disconnected")}),
        (up, "pri", {"status": status("pri", "connected", "syncing", "synced")}),
        (sec_down, "sec", {"status": status("sec", "disconnected")}),
    ]
    out = _run(FailoverStage(config(stale_ms=500, hold_ms=1_000)), events, t0=t0)
    assert _prices(out) == rows
    assert [(s["to_source"], s["reason"], s["ts_recv_ns"]) for s in _switches(out)] == [
        ("sec", "disconnected", down), ("pri", "disconnected", sec_down)]


def _congested(rows: list[tuple[int, int]], first: int, hold_ns: int) -> list[Event]:
    """``pri`` delivers with a congested path: from row ``first`` its rows are held until ``hold_ns``
    after that row's venue time, then released in order (each captured when it arrives, as a real
    feed's are), so their feed latency jumps to ``hold_ns`` and falls back; ``sec`` is on time."""
    release = rows[first][0] + hold_ns
    events: list[Event] = []
    for i, row in enumerate(rows):
        events.append((row[0] + LAT["sec"], "sec", {"trade": trades("sec", [row])}))
        arrival = row[0] + LAT["pri"] if i < first else max(row[0] + LAT["pri"], release)
        events.append((arrival, "pri", {"trade": trades("pri", [row], recv_offset_ns=arrival - row[0])}))
    return events


def test_a_late_primary_is_degraded_by_the_stages_latency_breaker_and_taken_back_after_the_hold() -> None:
    rows = market(800)
    t0 = rows[0][0] - SECOND
    first, hold_ns = 300, 1_500 * MS  # silent 1.5 s: under the staleness bound, so only latency says
    release = rows[first][0] + hold_ns
    stage = FailoverStage(config(stale_ms=3_000, hold_ms=1_000))  # degraded_after: the default 1 s
    assert stage.config.degraded_after_ns == SECOND
    out = _run(stage, _synced(t0) + _congested(rows, first, hold_ns), t0=t0)
    assert _prices(out) == rows  # none lost, none twice: the late rows are spliced out
    away, back = _switches(out)
    assert (away["from_source"], away["to_source"], away["reason"]) == ("pri", "sec", "degraded")
    assert away["ts_recv_ns"] == release  # the first late batch, before any of its rows went on
    assert (back["from_source"], back["to_source"], back["reason"]) == ("sec", "pri", "recovered")
    # the breaker's rows pass, under the primary's venue, saying whose they are and why
    states = [r for r in out["status"].to_pylist() if r["state"] in ("degraded", "recovered")]
    assert [r["state"] for r in states] == ["degraded", "recovered"]
    assert all(r["venue"] == VENUES["pri"] and r["detail"].startswith("failover pri: ") for r in states)
    assert "feed latency 1499.0 ms" in states[0]["detail"]  # 1.5 s, net of its 1 ms baseline
    assert "(baseline 1.0 ms)" in states[0]["detail"]
    recovered_ns = states[1]["until_ns"]
    # taken back once healthy for the hold, no sooner
    assert 0 <= back["ts_recv_ns"] - recovered_ns - SECOND <= TICK_NS + LAT["pri"]
    # no late row of the primary reached the output: every output row of it was on time
    pri = out["trade"].filter(pa.compute.equal(out["trade"]["venue"], VENUES["pri"]))
    late = pa.compute.subtract(pri["ts_recv_ns"], pri["ts_event_ns"]).to_numpy()
    assert late.max() <= SECOND


def test_the_latency_breaker_judges_each_source_against_its_own_baseline() -> None:
    rows = market(400)
    t0 = rows[0][0] - SECOND
    # the primary's rows always carry 5 s of latency (its venue's clock 5 s behind ours, or a replay's
    # recorded latency): its baseline, not a degraded source
    events = _synced(t0) + [
        (r[0] + LAT[src], src, {"trade": trades(src, [r], recv_offset_ns=5 * SECOND if src == "pri" else 0)})
        for r in rows for src in ("pri", "sec")]
    stage = FailoverStage(config(stale_ms=3_000))
    out = _run(stage, events, t0=t0)
    assert _switches(out) == []
    assert stage.latency["pri"].baseline_ns == 5 * SECOND and stage.latency["sec"].baseline_ns == 0
    assert not [r for r in out["status"].to_pylist() if r["state"] == "degraded"]
