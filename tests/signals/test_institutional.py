"""Institutional pressure: kernels equal their references, the baseline uses earlier days of the
same time-of-day bucket, market-maker flow is left out and a two-sided look-alike never alerts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kernels.codes import L3_ADD, L3_CANCEL, L3_FILL
from kernels.signals_institutional import (
    FillFlowState,
    RunningWindows,
    day_bucket_baseline,
    day_bucket_baseline_ref,
    fill_flow,
    fill_flow_ref,
)
from kernels.signals_windows import flow_windows_ref
from tapeflow.signals import institutional
from tapeflow.signals.config import DEFAULT_PATH, load

S = 1_000_000_000
LOT = 1_000_000_000
DAY = 86_400 * S


def _random_tape(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    ts = np.cumsum(rng.integers(0, 400_000_000, n)).astype(np.int64)
    ts[rng.uniform(size=n) < 0.1] = 0  # ties: two-sided adds at one instant
    ts = np.maximum.accumulate(ts)
    oid = rng.integers(1, n // 3 + 2, n).astype(np.uint64)
    oid[rng.uniform(size=n) < 0.05] = 0
    action = rng.choice([L3_ADD, L3_FILL, L3_CANCEL], n, p=[0.5, 0.3, 0.2])
    side = rng.integers(-1, 2, n)
    size = rng.integers(1, 300, n) * LOT // 100
    return dict(ts=ts, oid=oid, action=action, side=side, size=size, touch=rng.uniform(size=n) < 0.7)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fill_flow_equals_reference(seed):
    t = _random_tape(np.random.default_rng(seed), 3000)
    for pair_ns, child_ns, w in ((0, 3 * S, 0.5), (50_000_000, S, 1.0), (0, 0, 0.0)):
        got = fill_flow(t["ts"], t["oid"], t["action"], t["side"], t["size"], t["touch"], pair_ns=pair_ns,
                        child_fill_ns=child_ns, passive_weight=w)
        want = fill_flow_ref(t["ts"], t["oid"], t["action"], t["side"], t["size"], t["touch"],
                             pair_ns=pair_ns, child_fill_ns=child_ns, passive_weight=w)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        if w == 0.5:  # the tape reaches every branch
            assert got["maker"].any() and (got["passive"] != 0).any()
            assert (got["flow"] != got["passive"]).any()


@pytest.mark.parametrize("seed", [1, 3])
def test_the_carried_fill_flow_in_any_cuts_equals_one_pass(seed):
    # the live stage's pass (FillFlowState): order ids given slots as they show, state carried
    rng = np.random.default_rng(seed)
    t = _random_tape(rng, 3000)
    kw = dict(pair_ns=0, child_fill_ns=3 * S, passive_weight=0.5)
    want = fill_flow(t["ts"], t["oid"], t["action"], t["side"], t["size"], t["touch"], **kw)
    state = FillFlowState()
    edges = [0, *sorted(rng.choice(np.arange(1, 3000), 40, replace=False).tolist()), 3000]
    parts = [state.step(*(t[c][a:b] for c in ("ts", "oid", "action", "side", "size", "touch")), **kw)
             for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert want["maker"].any() and (want["passive"] != 0).any()
    for k in want:
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want[k], err_msg=k)


def test_fill_flow_attributes_fills():
    # a two-sided quote (bid 1, ask 2 at one instant), an old ask 3, a young bid 4
    ts = np.array([0, 0, S, 10 * S, 10 * S, 11 * S, 12 * S, 12 * S], np.int64)
    oid = np.array([1, 2, 3, 1, 2, 3, 4, 4], np.uint64)
    action = np.array([L3_ADD, L3_ADD, L3_ADD, L3_FILL, L3_FILL, L3_FILL, L3_ADD, L3_FILL])
    side = np.array([0, 1, 1, 0, 1, 1, 0, 0])
    size = np.full(8, 100)
    size[7] = 40
    touch = np.ones(8, bool)
    got = fill_flow(ts, oid, action, side, size, touch, pair_ns=0, child_fill_ns=3 * S, passive_weight=0.5)
    # maker fills count for their aggressor (bid filled: a seller), the old ask for its buyer, the
    # young bid at the touch half for the bid
    np.testing.assert_array_equal(got["flow"], [0, 0, 0, -100, 100, 100, 0, 20])
    np.testing.assert_array_equal(got["maker"], [0, 0, 0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(got["passive"], [0, 0, 0, 0, 0, 0, 0, 20])
    # the same young bid added behind the touch is an ordinary resting order: its seller counts
    touch[6] = False
    got = fill_flow(ts, oid, action, side, size, touch, pair_ns=0, child_fill_ns=3 * S, passive_weight=0.5)
    np.testing.assert_array_equal(got["flow"], [0, 0, 0, -100, 100, 100, 0, -40])


@pytest.mark.parametrize("n", [1, 500, 3000])
def test_day_bucket_baseline_equals_reference(n):
    rng = np.random.default_rng(n)
    day = np.sort(rng.integers(0, 25, n))
    bucket = rng.integers(0, 48, n)
    net = rng.normal(0, 100, n)
    for max_days in (1, 5, 20):
        got = day_bucket_baseline(net, day, bucket, 25, 48, max_days)
        want = day_bucket_baseline_ref(net, day, bucket, 25, 48, max_days)
        # differences of running sums over days: equal to rounding
        np.testing.assert_allclose(got, want, rtol=1e-9, equal_nan=True)
    assert np.isnan(day_bucket_baseline(net, day, bucket, 25, 48, 20)[day == 0]).all(), "day 0 has no past"


def test_day_bucket_baseline_uses_only_earlier_days_and_the_same_bucket():
    day = np.array([0, 0, 1, 1, 2, 2])
    bucket = np.array([0, 1, 0, 1, 0, 1])
    net = np.array([3.0, 40.0, 4.0, 1000.0, 7.0, 7.0])
    got = day_bucket_baseline(net, day, bucket, 3, 2, 20)
    np.testing.assert_allclose(got[2:], [3.0, 40.0, np.sqrt(12.5), np.sqrt((1600 + 1e6) / 2)])
    assert day_bucket_baseline(net, day, bucket, 3, 2, 1)[4] == 4.0, "one day back: day 1 only"


def _tape(rng, start_ns, seconds, *, parent_side=0, look=False, maker=False, young_against=False):
    """Background fills of alternating sign each second; a parent (or its two-sided look-alike) of
    100-lot children every second in [start + 600, start + 660) s; optional maker quotes."""
    rows = []
    oid = [1]

    def order(t, side, size, filled_after_ns):
        k = oid[0]
        oid[0] += 1
        rows.append((t, k, L3_ADD, side, size))
        rows.append((t + filled_after_ns, k, L3_FILL, side, size))

    for s in range(seconds):
        t = start_ns + s * S
        for j in range(3):  # balanced over two seconds, sizes random
            order(t - 20 * S + 1000 + j, (s + j) % 2, int(rng.integers(20, 200)) * LOT, 20 * S + 1)
        if 600 <= s < 660:
            for j in range(3):
                side = (j % 2) if look else 1 - parent_side  # the parent takes the other side's orders
                order(t - 20 * S + 2000 + j, side, 100 * LOT, 20 * S + 2)
            if young_against:
                order(t + 3000, 1 - parent_side, 30 * LOT, 500_000_000)
        if maker:
            k1, k2 = oid[0], oid[0] + 1
            oid[0] += 2
            rows += [(t, k1, L3_ADD, 0, 150 * LOT), (t, k2, L3_ADD, 1, 150 * LOT),
                     (t + 300_000_000, k1, L3_FILL, 0, 150 * LOT)]
    rows.sort(key=lambda r: r[0])
    cols = list(zip(*rows, strict=True))
    ts = np.array(cols[0], np.int64)
    ev = dict(ts_event_ns=ts, ts_recv_ns=ts, order_id=np.array(cols[1], np.uint64),
              action=np.array(cols[2]), side_code=np.array(cols[3]), size_nanos=np.array(cols[4], np.int64))
    return ev, np.ones(len(ts), bool)


def _params():
    return load(DEFAULT_PATH).for_instrument("institutional", "SIMA")


def test_a_one_sided_parent_alerts_and_its_two_sided_look_alike_does_not():
    rng = np.random.default_rng(5)
    t0 = 1_704_196_800 * S
    buy = institutional.detect(*_tape(rng, t0, 900, parent_side=0), _params(), "sim", "X").table()
    assert buy.num_rows >= 1 and set(buy.column("side").to_pylist()) == {1}
    first = buy.column("ts_event_ns")[0].as_py()
    assert t0 + 600 * S <= first <= t0 + 660 * S
    sell = institutional.detect(*_tape(rng, t0, 900, parent_side=1), _params(), "sim", "X").table()
    assert set(sell.column("side").to_pylist()) == {-1}
    look = institutional.detect(*_tape(rng, t0, 900, look=True), _params(), "sim", "X").table()
    assert look.num_rows == 0


def test_market_maker_fills_are_not_passive_children():
    # a maker quotes both sides at one instant every second and its bid is hit 0.3 s later: young
    # one-sided passive fills, which would read as a buyer's passive children; recognised as
    # two-sided quoting, they count for their aggressors (sellers) and never for a buyer
    rng = np.random.default_rng(6)
    t0 = 1_704_196_800 * S
    tape, touch = _tape(rng, t0, 900, look=True, maker=True)
    flow = fill_flow(tape["ts_event_ns"], tape["order_id"], tape["action"], tape["side_code"],
                     tape["size_nanos"], touch, pair_ns=0, child_fill_ns=3 * S, passive_weight=0.5)
    assert flow["maker"].sum() == 900 and (flow["passive"][flow["maker"]] == 0).all()
    got = institutional.detect(tape, touch, _params(), "sim", "X").table()
    assert 1 not in got.column("side").to_pylist()


def test_baseline_comes_from_earlier_days_when_the_input_holds_them():
    rng = np.random.default_rng(7)
    t0 = 1_704_196_800 * S
    days = [_tape(rng, t0 + d * DAY, 900, parent_side=0)[0] for d in range(3)]
    for k, d in enumerate(days):
        d["order_id"] = d["order_id"] + np.uint64(10 ** 6 * k)
    tape = {k: np.concatenate([d[k] for d in days]) for k in days[0]}
    got = institutional.detect(tape, np.ones(len(tape["ts_event_ns"]), bool), _params(), "sim", "X").table()
    where = [json.loads(e)["baseline"] for e in got.column("evidence").to_pylist()]
    day_of = [(t - t0) // DAY for t in got.column("ts_event_ns").to_pylist()]
    assert where and all((w == "earlier_days") == (d > 0) for w, d in zip(where, day_of, strict=True)), \
        (where, day_of)


def test_fills_out_of_venue_time_order_are_windowed_in_time_order():
    rng = np.random.default_rng(8)
    t0 = 1_704_196_800 * S
    tape, touch = _tape(rng, t0, 900, parent_side=0)
    want = institutional.detect(tape, touch, _params(), "sim", "X").table()
    late = {k: v.copy() for k, v in tape.items()}
    fills = np.flatnonzero(late["action"] == L3_FILL)
    late["ts_event_ns"][fills[0]] = t0 + 5 * S  # the day's first fill stamped after others
    got = institutional.detect(late, touch, _params(), "sim", "X").table()
    assert got.num_rows == want.num_rows >= 1
    assert got.column("ts_event_ns").to_pylist() == want.column("ts_event_ns").to_pylist()



def test_a_parent_with_passive_flow_against_it_is_left_to_the_whale_detector():
    # a one-sided parent all of whose passive flow works against it (young asks at the touch,
    # filled by buyers within a second): no meta-order works like that; a whale's parent is pure
    # aggression and the whale detector's
    rng = np.random.default_rng(9)
    t0 = 1_704_196_800 * S
    tape, touch = _tape(rng, t0, 900, parent_side=0, young_against=True)
    params = _params()
    assert params["min_passive_share"] >= 0.0
    assert institutional.detect(tape, touch, params, "sim", "X").table().num_rows == 0
    anyway = institutional.detect(tape, touch, {**params, "min_passive_share": -1.0}, "sim", "X").table()
    assert anyway.num_rows >= 1 and set(anyway.column("side").to_pylist()) == {1}


@pytest.mark.parametrize("seed", [0, 1])
def test_running_windows_in_any_cuts_equal_one_call_and_the_reference(seed):
    # the live stage carries the day's windows in cuts: the same bits as the batch's one call
    rng = np.random.default_rng(seed)
    n, window, baseline = 5_000, 60, 1_800
    sums = rng.normal(0, 1e12, (3, n))  # not integer volumes: rounding shows if the order differs
    sums[1] = np.abs(sums[1])
    sums[:, rng.uniform(size=n) < 0.3] = 0.0  # quiet seconds
    whole = RunningWindows(window, baseline).extend(sums)
    cut = RunningWindows(window, baseline)
    edges = [0, *sorted(rng.choice(np.arange(1, n), 50, replace=False).tolist()), n]
    parts = [cut.extend(sums[:, a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    for k in range(4):
        assert np.array_equal(np.concatenate([p[k] for p in parts]), whole[k], equal_nan=True), k
    assert len(cut.sq) <= window + baseline + 1 and cut.prefix.shape[1] <= window + 1  # bounded
    net, gross, rms = flow_windows_ref(sums[0], sums[1], window, baseline)
    pas = flow_windows_ref(sums[2], np.zeros(n), window, 1)[0]
    for got, want in ((whole[0], net), (whole[1], gross), (whole[2], pas), (whole[3], rms)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-3 * np.nanmax(np.abs(want)) * 1e-6)
