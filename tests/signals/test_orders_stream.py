"""The L3 order state carried across micro-batches (``kernels.signals_orders.OrderState``, the live
stage's) equals ``order_lifetimes`` over the whole tape, whatever the cuts, finished orders' slots
given back and all; the iceberg chains carried (``iceberg.Chains``) equal one pass."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kernels.codes import L3_ADD as A
from kernels.codes import L3_CANCEL as C
from kernels.codes import L3_FILL as F
from kernels.signals_orders import OrderState, order_lifetimes
from tapeflow.signals import iceberg
from tapeflow.signals.config import DEFAULT_PATH, load
from tests.signals.test_orders import MS, random_events

REFILL_NS = 300 * MS


def _cuts(rng: np.random.Generator, n: int) -> list[int]:
    return [0, *sorted(rng.choice(np.arange(1, n), size=40, replace=False).tolist()), n]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_carried_order_state_equals_one_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = random_events(rng, 20_000, max_live=30)
    want = order_lifetimes(*events, refill_ns=REFILL_NS)
    state = OrderState()
    cuts = _cuts(rng, len(events[0]))
    parts = [state.step(*(c[a:b] for c in events), refill_ns=REFILL_NS) for a, b in itertools.pairwise(cuts)]
    got = {k: np.concatenate([p[k] for p in parts]) for k in want}
    ids = len(np.unique(events[1][events[1] != 0]))
    print(f"{ids} orders, {state.n_slots} slots held at the end")
    assert state.n_slots < ids  # finished orders' slots were given back
    assert want["refill"].sum() > 10 and want["cancel"].sum() > 100
    for name in want:
        assert np.array_equal(got[name], want[name]), name


def test_a_finished_order_id_seen_again_after_its_slot_is_given_back() -> None:
    # 5,000 orders added and cancelled (their slots given back), then an F and a C of one of them:
    # ignored, as in one pass; then the id added again: a new order
    n = 5000
    ts = np.arange(2 * n + 3) * MS
    oid = np.r_[np.repeat(np.arange(1, n + 1), 2), 7, 7, 7].astype(np.uint64)
    action = np.r_[np.tile([A, C], n), F, C, A]
    side = np.zeros(len(ts), np.int64)
    price, size = np.full(len(ts), 1000), np.full(len(ts), 100)
    dist, big = np.zeros(len(ts), np.int64), np.zeros(len(ts), bool)
    want = order_lifetimes(ts, oid, action, side, price, size, dist, big, REFILL_NS)
    state = OrderState()
    first = state.step(ts[:2 * n], oid[:2 * n], action[:2 * n], side[:2 * n], price[:2 * n], size[:2 * n],
                       dist[:2 * n], big[:2 * n], REFILL_NS)
    assert state.n_slots < 100  # compacted: none of the 5,000 is live
    last = state.step(ts[2 * n:], oid[2 * n:], action[2 * n:], side[2 * n:], price[2 * n:], size[2 * n:],
                      dist[2 * n:], big[2 * n:], REFILL_NS)
    for name in want:
        assert np.array_equal(np.r_[first[name], last[name]], want[name]), name


@pytest.mark.parametrize("seed", [3, 4])
def test_carried_iceberg_chains_equal_one_pass(seed: int) -> None:
    rng = np.random.default_rng(seed)
    events = random_events(rng, 20_000, max_live=30)
    ts, oid, action, side, price, size, dist, big = events
    params = {**load(DEFAULT_PATH).for_instrument("iceberg", "SIMA"), "min_refills": 2,
              "min_refill_gap_ns": 0, "chain_gap_ns": 60_000 * MS, "refractory_ns": 200 * MS}
    facts = order_lifetimes(*events, refill_ns=REFILL_NS)
    ev = {"ts_event_ns": ts, "ts_recv_ns": ts, "price_nanos": price, "size_nanos": size, "side_code": side}
    want = iceberg.detect(ev, facts, params, "sim", "SIMA").table()
    state, chains = OrderState(), iceberg.Chains()
    cuts = _cuts(rng, len(ts))
    got = []
    for a, b in itertools.pairwise(cuts):
        first_row = state.rows
        part = state.step(*(c[a:b] for c in events), refill_ns=REFILL_NS)
        chains.forget_before(int(ts[a:b].min()), params)
        got.append(iceberg.detect({k: v[a:b] for k, v in ev.items()}, part, params, "sim", "SIMA",
                                  state=chains, first_row=first_row).table())
    got_rows = [r for t in got for r in t.to_pylist()]
    print(f"{want.num_rows} alerts")
    assert want.num_rows >= 3
    assert got_rows == want.to_pylist()
