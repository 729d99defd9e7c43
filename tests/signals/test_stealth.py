"""Absorption, creep, contraction and the stealth composite on hand-built books, each against its
look-alike (docs/simulator.md): the push into normal depth, the momentum move pushed by aggressors,
the quiet period."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import ASK, BID, SIGNAL
from tapeflow.signals import absorption, stealth
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.rows import Alerts

S = 1_000_000_000
GRID_NS = 100_000_000
T0 = 1_704_205_800_000_000_000
TICK = 10


def _params(name: str) -> dict:
    return load(DEFAULT_PATH).for_instrument(name, "X", "equity")


def _book(mid_ticks: np.ndarray, bid_s: np.ndarray | None = None, levels: int = 3) -> dict[str, np.ndarray]:
    """A grid book around ``mid_ticks`` (one value per row): spread of two ticks, 100 per level."""
    g = len(mid_ticks)
    ts = T0 + np.arange(g) * GRID_NS
    k = np.arange(levels)
    bid_p = ((mid_ticks[:, None] - 1 - k) * TICK).astype(np.int64)
    ask_p = ((mid_ticks[:, None] + 1 + k) * TICK).astype(np.int64)
    sizes = np.full((g, levels), 100, np.int64)
    return {"ts": ts, "recv": ts + 1000, "flags": np.zeros(g, np.uint8), "bid_p": bid_p,
            "bid_s": sizes.copy() if bid_s is None else bid_s, "ask_p": ask_p, "ask_s": sizes.copy()}


def _trades(ts: list[int], price: list[int], size: list[int], side: list[int]) -> dict[str, np.ndarray]:
    t = np.asarray(ts, np.int64)
    return {"ts_event_ns": t, "ts_recv_ns": t + 500, "price_nanos": np.asarray(price, np.int64),
            "size_nanos": np.asarray(size, np.int64), "aggressor_side": np.asarray(side, np.uint8)}


# ---- absorption --------------------------------------------------------------------------------

def _push(defended: bool) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    # 8 minutes at a still mid; at 5 min a seller pushes 10 x 60 into the bid at 999 over 5 s
    g = 8 * 600
    mid = np.full(g, 1000)
    book = _book(mid)
    start = 5 * 600
    if defended:
        # a defender of 20x the usual depth holds the bid and is replenished as it is hit
        book["bid_s"][start:start + 80, 0] = 2000
    else:
        # normal depth: the first 100 lots empty the level and the bid steps down a tick per 100
        for i in range(10):
            rows = slice(start + 5 * i + 1, start + 80)
            if i % 2:
                book["bid_p"][rows] -= TICK
    ts = [int(book["ts"][start + 5 * i]) + GRID_NS // 2 for i in range(10)]
    price = [int(book["bid_p"][start + 5 * i, 0]) for i in range(10)]
    return book, _trades(ts, price, [60] * 10, [ASK] * 10)


def test_absorption_alerts_on_a_defended_price_with_its_side_and_price() -> None:
    book, trades = _push(defended=True)
    table = absorption.detect(book, trades, TICK, _params("absorption"), "sim", "X").table()
    rows = table.to_pylist()
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["kind"], row["side"], row["price_nanos"]) == ("absorption", 1, 999 * TICK)
    ev = json.loads(row["evidence"])
    assert ev["executed_nanos"] >= 4 * 100 and ev["pushes"] >= 6 and ev["shown_peak_nanos"] == 2000
    assert 0 < row["confidence"] < 1 and row["score"] >= 1


def test_the_same_push_into_normal_depth_is_not_absorption() -> None:
    book, trades = _push(defended=False)
    assert absorption.detect(book, trades, TICK, _params("absorption"), "sim", "X").table().num_rows == 0


# ---- contraction and creep ---------------------------------------------------------------------

def _regime_book(kind: str, seed: int = 3) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    # 20 minutes of 1 s steps (a random walk of 2 ticks per second, 100 events per second), with
    # minutes 14-16 planted: a contraction (steps / 10, events unchanged), a quiet period (events
    # / 4, each step as volatile as usual: the walk slows with the clock), a creep (a drift of one
    # tick per second at low volatility carried by passive buyers) or a momentum move (the same
    # drift pushed by aggressive buyers)
    rng = np.random.default_rng(seed)
    secs = 20 * 60
    steps = rng.normal(0, 2, secs)
    events = np.full(secs, 100.0)
    plant = slice(14 * 60, 16 * 60)
    buy_share = np.full(secs, 0.5)
    if kind == "contraction":
        steps[plant] /= 10
    elif kind == "still":
        steps[plant] = 0.0
    elif kind == "quiet":
        events[plant] /= 4
        steps[plant] /= 2  # sqrt(1/4): a quarter of the events, each as volatile
    elif kind in ("creep", "momentum"):
        steps[plant] = 1.0 + rng.normal(0, 0.5, 120)
        buy_share[plant] = 0.2 if kind == "creep" else 0.9
    mid_s = np.round(1000 + np.cumsum(steps)).astype(np.int64)
    mid = np.repeat(mid_s, 10)
    book = _book(mid)
    seq = np.repeat(np.cumsum(events), 10).astype(np.int64)
    ts, price, size, side = [], [], [], []
    for s in range(secs):
        for j in range(4):
            ts.append(T0 + s * S + j * S // 4)
            price.append(int(mid_s[s]) * TICK)
            size.append(10)
            side.append(BID if rng.random() < buy_share[s] else ASK)
    return book, seq, _trades(ts, price, size, side)


def _kinds(kind: str) -> list[dict]:
    book, seq, trades = _regime_book(kind)
    out = [stealth.detect_creep(book, seq, trades, TICK, _params("creep"), "sim", "X").table(),
           stealth.detect_contraction(book, seq, TICK, _params("contraction"), "sim", "X").table()]
    return [r for t in out for r in t.to_pylist()]


def _in_plant(rows: list[dict], kind: str) -> list[dict]:
    lo, hi = T0 + 14 * 60 * S, T0 + 16 * 60 * S + 5 * S
    return [r for r in rows if r["kind"] == kind and lo <= r["ts_event_ns"] <= hi]


def test_a_contraction_is_found_and_a_quiet_period_is_not() -> None:
    found = _in_plant(_kinds("contraction"), "contraction")
    assert len(found) == 1 and found[0]["side"] == 0, found
    ev = json.loads(found[0]["evidence"])
    assert ev["activity_share"] >= 0.6 and ev["rv_per_event"] <= ev["baseline_quantile"]
    quiet = _kinds("quiet")
    assert not _in_plant(quiet, "contraction"), _in_plant(quiet, "contraction")


def test_a_still_mid_scores_at_the_cap_not_without_bound() -> None:
    found = _in_plant(_kinds("still"), "contraction")
    assert found and json.loads(found[0]["evidence"])["rv_per_event"] == 0.0
    assert found[0]["score"] == 100.0


def test_a_creep_is_found_with_its_side_and_a_momentum_move_is_not() -> None:
    found = _in_plant(_kinds("creep"), "creep")
    assert found and all(r["side"] == 1 for r in found), found
    assert json.loads(found[0]["evidence"])["aggressor_share"] <= 0.3
    assert not _in_plant(_kinds("momentum"), "creep")


# ---- the composite -----------------------------------------------------------------------------

def _alerts(rows: list[tuple[str, int, int, float]]) -> pa.Table:
    tables = []
    for kind, side, t_s, score in rows:
        a = Alerts("sim", "X", f"{kind}/1", {"platt_a": 1.0, "platt_b": 0.0})
        a.add(ts_event_ns=T0 + t_s * S, ts_recv_ns=T0 + t_s * S + 7, kind=kind, side=side, size_nanos=0,
              start_ns=T0 + t_s * S, end_ns=T0 + t_s * S, score=score, evidence={})
        tables.append(a.table())
    return pa.concat_tables(tables) if tables else SIGNAL.empty_table()


def test_the_composite_needs_two_component_kinds_within_its_window() -> None:
    params = _params("stealth")
    one = _alerts([("creep", 1, 100, 2.0), ("creep", 1, 150, 2.0), ("whale", 1, 160, 9.0)])
    assert stealth.detect_composite(one, params, "sim", "X").table().num_rows == 0
    two = _alerts([("absorption", 1, 100, 2.0), ("creep", 1, 150, 3.0), ("contraction", 0, 400, 2.0)])
    rows = stealth.detect_composite(two, params, "sim", "X").table().to_pylist()
    assert len(rows) == 1, rows
    row = rows[0]
    assert (row["kind"], row["side"], row["ts_event_ns"]) == ("stealth", 1, T0 + 150 * S)
    assert set(json.loads(row["evidence"])["components"]) == {"absorption", "creep"}
    assert row["ts_recv_ns"] == T0 + 150 * S + 7
