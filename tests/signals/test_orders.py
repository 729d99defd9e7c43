"""The L3 order-state kernel equals its pure-Python reference; the spoofing and iceberg detectors on
hand-built order events: a layered spoof and an iceberg alert, their look-alikes (a two-sided
market maker, traders joining a price) do not."""

from __future__ import annotations

import numpy as np
import pytest

from kernels.codes import L3_ADD as A
from kernels.codes import L3_CANCEL as C
from kernels.codes import L3_FILL as F
from kernels.signals_orders import NONE_NS, order_lifetimes, order_lifetimes_ref
from tapeflow.signals import iceberg, spoofing
from tapeflow.signals.config import DEFAULT_PATH, load

MS = 1_000_000
T0 = 1_704_205_800_000_000_000


def random_events(rng: np.random.Generator, n: int, max_live: int | None = None):
    """Adds, full and partial cancels, fills (an F, then the C that takes the size off the book),
    anonymous trades and side-less rows, as a venue sends them; with ``max_live``, at most that many
    orders live at a time (a day's churn, most orders finished)."""
    rows: list[tuple[int, int, int, int, int, int, int, bool]] = []
    live: dict[int, list[int]] = {}  # id -> [side, price, size, left]
    next_id, t = 1, T0
    while len(rows) < n:
        t += int(rng.integers(0, 30)) * MS
        r = rng.uniform()
        if (r < 0.4 and (max_live is None or len(live) < max_live)) or not live:
            s, p, q = int(rng.integers(0, 2)), int(rng.integers(0, 4)), int(rng.choice([100, 200, 600]))
            live[next_id] = [s, p, q, q]
            rows.append((t, next_id, A, s, p, q, int(rng.integers(-1, 7)), q >= 600))
            next_id += 1
            continue
        if r > 0.92:
            rows.append((t, 0, ord("T"), int(rng.integers(-1, 2)), 0, 100, 0, False))
            continue
        k = int(rng.choice(list(live)))
        s, p, q, left = live[k]
        part = int(rng.choice([left, max(1, left // 2)]))
        if r < 0.7:
            rows.append((t, k, C, s, p, part, 0, False))
        else:
            rows.append((t, k, F, s, p, part, 0, False))
            rows.append((t, k, C, s, p, part, 0, False))
        live[k][3] -= part
        if live[k][3] == 0:
            del live[k]
    ts, oid, action, side, price, size, dist, big = (np.array(c) for c in zip(*rows, strict=True))
    return ts, oid.astype(np.uint64), action, side, price * 10 + 1000, size, dist, big


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_order_lifetimes_equal_reference(seed):
    events = random_events(np.random.default_rng(seed), 3000)
    got = order_lifetimes(*events, refill_ns=40 * MS)
    want = order_lifetimes_ref(*events, refill_ns=40 * MS)
    assert got.keys() == want.keys()
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert got["cancel"].sum() > 100 and got["refill"].sum() > 0 and got["add_big"].sum() > 0


class _Tape:
    """Order events of one instrument written by hand (tick 1, bid touch 100, ask touch 101)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, int, int]] = []

    def add(self, t_ms: float, oid: int, action: str, side: str, price: int, size: int) -> None:
        self.rows.append((T0 + int(t_ms * MS), oid, ord(action), 0 if side == "B" else 1, price, size))

    def arrays(self, big_size: int):
        ts, oid, action, code, price, size = (np.array(c) for c in zip(*self.rows, strict=True))
        touch = np.where(code == 0, 100, 101)
        dist = np.where(code == 0, touch - price, price - touch)
        ev = dict(ts_event_ns=ts, ts_recv_ns=ts + 1000, price_nanos=price, size_nanos=size, side_code=code)
        facts = order_lifetimes(ts, oid.astype(np.uint64), action, code, price, size, dist, size >= big_size,
                                refill_ns=50 * MS)
        return ev, facts


def test_a_layered_spoof_alerts_a_two_sided_market_maker_does_not():
    params = load(DEFAULT_PATH).for_instrument("spoofing", "SIMA")
    tape = _Tape()
    # a spoof: a small genuine bid, three large asks 2-4 ticks behind the ask touch, the bid fills,
    # the asks go 300 ms later
    tape.add(0, 1, "A", "B", 100, 30)
    for k, px in enumerate((103, 104, 105)):
        tape.add(10 + k, 10 + k, "A", "A", px, 800)
    tape.add(900, 1, "F", "B", 100, 30)
    for k in range(3):
        tape.add(1200 + k, 10 + k, "C", "A", 103 + k, 800)
    # 10 s later a market maker: large quotes 1 tick behind on both sides, replaced every 200 ms,
    # and a trade on the bid side now and then
    for q in range(20):
        t = 10_000 + 200 * q
        if q:
            tape.add(t, 100 + 2 * q - 2, "C", "B", 99, 700)
            tape.add(t, 101 + 2 * q - 2, "C", "A", 102, 700)
        tape.add(t + 1, 100 + 2 * q, "A", "B", 99, 700)
        tape.add(t + 1, 101 + 2 * q, "A", "A", 102, 700)
        tape.add(t + 50, 5000 + q, "A", "B", 100, 20)
        tape.add(t + 60, 5000 + q, "F", "B", 100, 20)
    ev, facts = tape.arrays(big_size=250)
    depth = np.full(len(ev["ts_event_ns"]), 100.0)
    got = spoofing.detect(ev, facts, depth, params, "sim", "SIMA").table().to_pylist()
    assert [(r["side"], r["ts_event_ns"] - T0) for r in got] == [(-1, 1200 * MS)], got
    assert got[0]["price_nanos"] == 103 and got[0]["start_ns"] == T0 + 10 * MS
    assert '"after_opposite_fill_ms": 300.0' in got[0]["evidence"]
    # without the market-maker rule the two-sided quotes would alert too
    loose = spoofing.detect(ev, facts, depth, dict(params, mm_clear_ns=-1), "sim", "SIMA").table()
    assert any(t >= T0 + 10_000 * MS for t in loose.column("ts_event_ns").to_pylist())


@pytest.mark.parametrize("layers", [1, 2])
def test_smaller_layers_count_only_when_they_repeat(layers):
    params = load(DEFAULT_PATH).for_instrument("spoofing", "SIMA")
    assert (params["min_size_x_depth"], params["multi_size_x_depth"]) == (2.5, 2.0)
    tape = _Tape()
    tape.add(0, 1, "A", "B", 100, 30)
    for k in range(layers):  # 220 lots: 2.2 median depths, under 2.5, over 2.0
        tape.add(10 + k, 10 + k, "A", "A", 103 + k, 220)
    tape.add(900, 1, "F", "B", 100, 30)
    for k in range(layers):
        tape.add(1200 + k, 10 + k, "C", "A", 103 + k, 220)
    ev, facts = tape.arrays(big_size=250)
    depth = np.full(len(ev["ts_event_ns"]), 100.0)
    got = spoofing.detect(ev, facts, depth, params, "sim", "SIMA").table().to_pylist()
    want = [(-1, 1201 * MS)] if layers == 2 else []
    assert [(r["side"], r["ts_event_ns"] - T0) for r in got] == want, got


def test_iceberg_refills_alert_traders_joining_a_price_do_not():
    params = load(DEFAULT_PATH).for_instrument("iceberg", "SIMA")
    tape = _Tape()
    # an iceberg at bid 100: each 100-lot peak filled, the next shown 20 ms later under a new id
    for k in range(4):
        t = 1000 * k
        tape.add(t, 10 + k, "A", "B", 100, 100)
        tape.add(t + 980, 10 + k, "F", "B", 100, 100)
    # traders joining ask 105 with 100 lots, 300 ms after each complete fill there
    for k in range(4):
        t = 20_000 + 1000 * k
        tape.add(t, 50 + k, "A", "A", 105, 100)
        tape.add(t + 500, 50 + k, "F", "A", 105, 100)
    ev, facts = tape.arrays(big_size=10_000)
    assert params["min_refills"] == 3
    got = iceberg.detect(ev, facts, params, "sim", "SIMA").table().to_pylist()
    assert [(r["side"], r["price_nanos"], r["ts_event_ns"] - T0) for r in got] == [(1, 100, 3000 * MS)], got
    assert got[0]["start_ns"] == T0 + 1000 * MS and '"refills": 3' in got[0]["evidence"]
    wide = iceberg.detect(ev, facts, dict(params, min_refills=1), "sim", "SIMA").table()
    assert wide.num_rows == 1, "a single refill is allowed to alert, the joins still are not refills"


def test_parallel_same_size_children_are_not_an_iceberg():
    """A parent worked through same-size passive children (the simulator's institutional plant):
    several rest at one price at once and fill in any order, so a child added right after another
    one's fill happens often, but it never replaces the order the previous such child added."""
    params = load(DEFAULT_PATH).for_instrument("iceberg", "SIMA")
    tape = _Tape()
    # 60-lot children at bid 100, two resting at a time: each fill takes the older one and a new
    # child comes 10 ms later, so the one filled next is never the child just added
    tape.add(0, 1, "A", "B", 100, 60)
    tape.add(500, 2, "A", "B", 100, 60)
    for k, older in enumerate((1, 2, 11, 12)):
        t = 1000 + 1000 * k
        tape.add(t, older, "F", "B", 100, 60)
        tape.add(t, older, "C", "B", 100, 60)
        tape.add(t + 10, 11 + k, "A", "B", 100, 60)
    ev, facts = tape.arrays(big_size=10_000)
    assert facts["refill"].sum() == 4, "each child right after a fill still looks like a refill"
    got = iceberg.detect(ev, facts, params, "sim", "SIMA").table()
    assert got.num_rows == 0, got.to_pylist()


def test_a_large_order_placed_after_the_opposite_fill_is_not_a_layer():
    """A wall look-alike cancelled within 50-500 ms: large, behind the touch, cancelled soon after
    an opposite fill, but added after that fill (a layer rests while the other side trades)."""
    params = load(DEFAULT_PATH).for_instrument("spoofing", "SIMA")
    tape = _Tape()
    tape.add(0, 1, "A", "B", 100, 30)
    tape.add(100, 1, "F", "B", 100, 30)
    tape.add(600, 10, "A", "A", 103, 3000)
    tape.add(900, 10, "C", "A", 103, 3000)
    ev, facts = tape.arrays(big_size=250)
    depth = np.full(len(ev["ts_event_ns"]), 100.0)
    got = spoofing.detect(ev, facts, depth, params, "sim", "SIMA").table()
    assert got.num_rows == 0, got.to_pylist()


def test_no_opposite_fill_means_no_facts():
    ev_facts = order_lifetimes(np.array([T0]), np.array([7], np.uint64), np.array([C]), np.array([0]),
                               np.array([100]), np.array([5]), np.array([0]), np.array([False]), 50 * MS)
    assert not ev_facts["cancel"][0] and ev_facts["last_opp_fill_ns"][0] == NONE_NS
