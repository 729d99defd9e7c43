"""The compiled event loop of the backtester: one exchange, one instrument, one strategy.

Two clocks run side by side, as in hftbacktest: the exchange sees market row ``i`` at
``t_exch[i]`` and the strategy at ``t_local[i]`` (>= ``t_exch[i]``); an order sent at local
time ``t`` reaches the exchange at ``t + entry``, its responses reach the strategy at
``exchange time + response``. :func:`run_until` merges the four streams (local rows, responses,
exchange rows, order arrivals; ties in that order, hftbacktest's ``EventSet`` order) and stops at
``until_ns`` or at the first local happening the strategy asked to be woken for.

The book itself is never rebuilt here: best bid/ask after every row come from
:mod:`tapeflow.book` (``replay_l2`` / ``replay_l3``). What the loop keeps is what the queue
models need: for L2 the size each depth row replaces (``prev_qty``) and the level index
(``lv``: segment, level key, row and the size set there, see
:func:`tapeflow.backtest.feed.level_index`), both precomputed from the deltas'
absolute sizes; for L3 each resting feed order's side, price, size and priority stamp (``feed``).

Layout of the int64 state vector ``S`` (indices below) and of the order table (one slot per
order id): see :mod:`tapeflow.backtest.engine`, which owns the arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tapeflow.backtest import core_l3 as l3

# market row kinds
K_DEPTH, K_TRADE, K_CLEAR, K_L3, K_SIGNAL, K_NONE, K_PREDICTION = 0, 1, 2, 3, 4, 5, 6
# state vector
I_EX, I_LOC, NOW, XH, XT, LH, LT, NF, NACT, PRIO, WAKE_ROW, QMODEL, LAT_KIND, ENTRY, RESP, SEG = range(16)
N_STATE = 16
# order message kinds: to the exchange / to the strategy
M_NEW, M_CANCEL, M_MODIFY = 0, 1, 2
R_ACK, R_FILL, R_CANCELED, R_EXPIRED, R_REJECTED = 0, 1, 2, 3, 4
# order status (exchange and local views)
ST_PENDING, ST_OPEN, ST_FILLED, ST_CANCELED, ST_EXPIRED, ST_REJECTED = 0, 1, 2, 3, 4, 5
# order types and time in force
T_LIMIT, T_MARKET = 0, 1
TIF_GTC, TIF_GTX, TIF_IOC = 0, 1, 2
# stop reasons
W_UNTIL, W_BOOK, W_TRADE, W_RESPONSE, W_SIGNAL, W_END, W_FULL, W_PREDICTION = 0, 1, 2, 3, 4, 5, 6, 7
# wake mask bits
B_BOOK, B_TRADE, B_RESPONSE, B_SIGNAL, B_PREDICTION = 1, 2, 4, 8, 16
NO_BID = -(2**62)
NO_ASK = 2**62
INF = 2**63 - 1


@njit(cache=True, error_model="numpy", inline="always")
def _prob(model: int, n: float, front: float, back: float) -> float:
    if model == 1:
        p = back**n / (back**n + front**n)
    elif model == 2:
        p = back**n / (back + front) ** n
    elif model == 3:
        p = 1.0 - (front / (front + back)) ** n
    elif model == 4:
        p = np.log1p(back) / (np.log1p(back) + np.log1p(front))
    else:
        p = np.log1p(back) / np.log1p(back + front)
    if np.isnan(p) or np.isinf(p):
        p = 1.0
    return p


@njit(cache=True, error_model="numpy", inline="always")
def queue_depth(model: int, n: float, front: float, cum_trade: float, prev_qty: float,
                new_qty: float) -> tuple[float, float]:
    """hftbacktest's ``QueueModel::depth`` (RiskAdverse = 0, the probabilistic ones 1..5)."""
    if model == 0:
        return min(front, new_qty), cum_trade
    chg = prev_qty - new_qty - cum_trade
    if chg < 0.0:
        return min(front, new_qty), 0.0
    back = prev_qty - front
    p = _prob(model, n, front, back)
    est = front - (1.0 - p) * chg + min(back - p * chg, 0.0)
    return min(est, new_qty), 0.0


@njit(cache=True, error_model="numpy", inline="always")
def _respond(S, lq, lqf, slot, kind, px, qty, maker, t_ex, lat_now):
    t = t_ex + lat_now
    tail = S[LT]
    cap = lq.shape[0]
    if tail - S[LH] >= cap:
        return False
    if tail > S[LH]:
        t = max(t, lq[(tail - 1) % cap, 0])  # one session's messages are never reordered
    r = tail % cap
    lq[r, 0], lq[r, 1], lq[r, 2], lq[r, 3] = t, slot, kind, px
    lqf[r, 0], lqf[r, 1] = qty, maker
    S[LT] = tail + 1
    return True


@njit(cache=True, error_model="numpy", inline="always")
def _fill(S, o_i, o_f, act, k, lq, lqf, t_ex, lat, px, maker):
    slot = act[k]
    o_i[slot, 4] = ST_FILLED
    _respond(S, lq, lqf, slot, R_FILL, px, o_f[slot, 0], 1.0 if maker else 0.0, t_ex, lat)
    S[NACT] -= 1
    act[k] = act[S[NACT]]


@njit(cache=True, error_model="numpy", inline="always")
def _level(lv, qty, seg, side, px, row):
    # the size at (side, px) after row ``row``: the size of the last depth row of that level at or
    # before it, found by binary search in the feed's level index (sorted by segment, key, row)
    lv_seg, lv_key, lv_row, lv_qty = lv
    key = px * 2 + (1 if side > 0 else 0)
    lo, hi = 0, lv_row.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if (lv_seg[mid], lv_key[mid], lv_row[mid]) <= (seg, key, row):
            lo = mid + 1
        else:
            hi = mid
    j = lo - 1
    if j >= 0 and lv_seg[j] == seg and lv_key[j] == key:
        return lv_qty[j]
    return 0.0


@njit(cache=True, error_model="numpy")
def _arrive(S, kind, slot, px, qty, o_i, o_f, act, lq, lqf, lv, fqty, seg, row, feed, bb, ba, t, lat, lot):
    # o_i columns: side, price_ticks, type, tif, exchange status, local status, local request,
    # L3 priority stamp, price the strategy last saw acknowledged; o_f: qty, front, trades since
    side = o_i[slot, 0]
    if kind == M_CANCEL or kind == M_MODIFY:
        k = -1
        for j in range(S[NACT]):
            if act[j] == slot:
                k = j
        if k < 0:
            _respond(S, lq, lqf, slot, R_REJECTED, 0, 0.0, 0.0, t, lat)
            return
        if kind == M_CANCEL:
            o_i[slot, 4] = ST_CANCELED
            S[NACT] -= 1
            act[k] = act[S[NACT]]
            _respond(S, lq, lqf, slot, R_CANCELED, 0, 0.0, 0.0, t, lat)
            return
        S[NACT] -= 1
        act[k] = act[S[NACT]]
        o_i[slot, 1] = px
        o_f[slot, 0] = qty
    else:
        o_i[slot, 1] = px
    px = o_i[slot, 1]
    crosses = (side > 0 and px >= ba) or (side < 0 and px <= bb)
    if o_i[slot, 2] == T_MARKET or (crosses and o_i[slot, 3] != TIF_GTX):
        best = ba if side > 0 else bb
        if best == NO_ASK or best == NO_BID:
            o_i[slot, 4] = ST_EXPIRED
            _respond(S, lq, lqf, slot, R_EXPIRED, 0, 0.0, 0.0, t, lat)
            return
        o_i[slot, 4] = ST_FILLED
        _respond(S, lq, lqf, slot, R_FILL, best, o_f[slot, 0], 0.0, t, lat)
        return
    if crosses or o_i[slot, 3] == TIF_IOC:
        o_i[slot, 4] = ST_EXPIRED
        _respond(S, lq, lqf, slot, R_EXPIRED, 0, 0.0, 0.0, t, lat)
        return
    o_i[slot, 4] = ST_OPEN
    if S[QMODEL] < 0:
        o_f[slot, 1] = l3.front_of(feed, side, px, S[PRIO])
        o_i[slot, 7] = S[PRIO]
        S[PRIO] += 1
    else:
        o_f[slot, 1] = _level(lv, fqty, seg, side, px, row)
    o_f[slot, 2] = 0.0
    act[S[NACT]] = slot
    S[NACT] += 1
    _respond(S, lq, lqf, slot, R_ACK, px, 0.0, 0.0, t, lat)


@njit(cache=True, error_model="numpy")
def _trade(S, o_i, o_f, act, lq, lqf, side_i, px_i, qty_i, t, lat, lot):
    # side_i is the aggressor: a buy trade lifts sell orders, a sell trade hits buy orders
    for j in range(S[NACT] - 1, -1, -1):
        s = act[j]
        if o_i[s, 0] == side_i:
            continue
        gap = (px_i - o_i[s, 1]) * side_i
        if gap > 0:
            _fill(S, o_i, o_f, act, j, lq, lqf, t, lat, o_i[s, 1], True)
        elif gap == 0 and S[QMODEL] >= 0:
            o_f[s, 1] -= qty_i
            o_f[s, 2] += qty_i
            if np.round(o_f[s, 1] / lot) < 0.0:
                _fill(S, o_i, o_f, act, j, lq, lqf, t, lat, o_i[s, 1], True)


@njit(cache=True, error_model="numpy")
def _cross(S, o_i, o_f, act, lq, lqf, bid, ask, t, lat):
    for j in range(S[NACT] - 1, -1, -1):
        s = act[j]
        if (o_i[s, 0] < 0 and o_i[s, 1] <= bid) or (o_i[s, 0] > 0 and o_i[s, 1] >= ask):
            _fill(S, o_i, o_f, act, j, lq, lqf, t, lat, o_i[s, 1], True)


@njit(cache=True, error_model="numpy")
def _l3_row(S, o_i, o_f, act, lq, lqf, feed, action_i, oid_i, side_i, px_i, qty_i, t, lat):
    behind = l3.apply(feed, o_i, o_f, act, S[NACT], action_i, oid_i, side_i, px_i, qty_i, S)
    if behind >= 0:
        for j in range(S[NACT] - 1, -1, -1):
            s = act[j]
            if o_i[s, 0] == side_i and o_i[s, 1] == px_i and o_i[s, 7] < behind:
                _fill(S, o_i, o_f, act, j, lq, lqf, t, lat, o_i[s, 1], True)


@njit(cache=True, error_model="numpy")
def _local_resp(S, lq, lqf, o_i, fills, fill_f, nfill):
    cap = lq.shape[0]
    r = S[LH] % cap
    slot, kind = lq[r, 1], lq[r, 2]
    S[LH] += 1
    if kind == R_ACK:
        if o_i[slot, 5] == ST_PENDING or o_i[slot, 6] == M_MODIFY:
            o_i[slot, 5] = ST_OPEN
            o_i[slot, 8] = lq[r, 3]
            if o_i[slot, 6] == M_MODIFY:
                o_i[slot, 6] = -1
    elif kind == R_FILL:
        o_i[slot, 5] = ST_FILLED
        o_i[slot, 6] = -1
        fills[nfill, 0], fills[nfill, 1], fills[nfill, 2] = lq[r, 0], slot, lq[r, 3]
        fills[nfill, 3] = o_i[slot, 0]
        fill_f[nfill, 0], fill_f[nfill, 1] = lqf[r, 0], lqf[r, 1]
        return 1
    elif kind == R_CANCELED:
        o_i[slot, 5] = ST_CANCELED
        o_i[slot, 6] = -1
    elif kind == R_EXPIRED:
        o_i[slot, 5] = ST_EXPIRED
        o_i[slot, 6] = -1
    else:
        o_i[slot, 6] = -1
    return 0


@njit(cache=True, error_model="numpy")
def run_until(S, until_ns, wake, t_exch, t_local, kind, side, px, qty, oid, action, bb, ba, pub,
              o_i, o_f, act, xq, xqf, lq, lqf, prev_qty, lv, feed, fills, fill_f, qn, lot, lat_scale):
    """Advance the simulation to ``until_ns`` or to the first wanted local happening.

    Returns a ``W_*`` reason; ``S[NOW]`` is the time reached, ``S[WAKE_ROW]`` the local row that
    woke the strategy (-1 for none).
    """
    n = t_exch.shape[0]
    xcap = xq.shape[0]
    lcap = lq.shape[0]
    S[WAKE_ROW] = -1
    while True:
        tl = t_local[S[I_LOC]] if S[I_LOC] < n else INF
        tr = lq[S[LH] % lcap, 0] if S[LH] < S[LT] else INF
        te = t_exch[S[I_EX]] if S[I_EX] < n else INF
        tx = xq[S[XH] % xcap, 0] if S[XH] < S[XT] else INF
        t = min(min(tl, tr), min(te, tx))
        if t == INF:
            return W_END
        if t > until_ns:
            S[NOW] = until_ns
            return W_UNTIL
        S[NOW] = t
        if tl == t:
            i = S[I_LOC]
            S[I_LOC] = i + 1
            k_i = kind[i]
            if k_i == K_SIGNAL and wake & B_SIGNAL:
                S[WAKE_ROW] = i
                return W_SIGNAL
            if k_i == K_PREDICTION and wake & B_PREDICTION:
                S[WAKE_ROW] = i
                return W_PREDICTION
            if k_i == K_TRADE and wake & B_TRADE:
                S[WAKE_ROW] = i
                return W_TRADE
            if pub[i] and k_i != K_TRADE and k_i != K_SIGNAL and k_i != K_PREDICTION and wake & B_BOOK:
                S[WAKE_ROW] = i
                return W_BOOK
        elif tr == t:
            if S[NF] >= fills.shape[0]:
                return W_FULL
            got = _local_resp(S, lq, lqf, o_i, fills, fill_f, S[NF])
            S[NF] += got
            if wake & B_RESPONSE:
                return W_RESPONSE
        elif te == t:
            i = S[I_EX]
            S[I_EX] = i + 1
            if S[LT] - S[LH] >= lcap - 64:
                return W_FULL
            lat = S[RESP] if S[LAT_KIND] == 0 else np.int64((t_local[i] - t_exch[i]) * lat_scale)
            # the common rows run inline: a helper call per row costs reference counting on
            # every array it takes, more than the row's own work
            k_i = kind[i]
            if k_i == K_DEPTH:
                for j in range(S[NACT]):
                    s = act[j]
                    if o_i[s, 0] == side[i] and o_i[s, 1] == px[i]:
                        o_f[s, 1], o_f[s, 2] = queue_depth(S[QMODEL], qn, o_f[s, 1], o_f[s, 2], prev_qty[i],
                                                           qty[i])
            elif k_i == K_TRADE:
                if S[NACT] > 0:
                    _trade(S, o_i, o_f, act, lq, lqf, side[i], px[i], qty[i], t, lat, lot)
            elif k_i == K_L3:
                _l3_row(S, o_i, o_f, act, lq, lqf, feed, action[i], oid[i], side[i], px[i], qty[i], t, lat)
            elif k_i == K_CLEAR:
                S[SEG] += 1
                if S[QMODEL] < 0:
                    l3.clear(feed)
            if S[NACT] > 0 and i > 0 and (bb[i] > bb[i - 1] or ba[i] < ba[i - 1]):
                _cross(S, o_i, o_f, act, lq, lqf, bb[i], ba[i], t, lat)
        else:
            r = S[XH] % xcap
            S[XH] += 1
            i = max(S[I_EX] - 1, 0)
            lat = S[RESP] if S[LAT_KIND] == 0 else np.int64((t_local[i] - t_exch[i]) * lat_scale)
            best_b = bb[S[I_EX] - 1] if S[I_EX] > 0 else NO_BID
            best_a = ba[S[I_EX] - 1] if S[I_EX] > 0 else NO_ASK
            _arrive(S, xq[r, 2], xq[r, 1], xq[r, 3], xqf[r], o_i, o_f, act, lq, lqf, lv, qty, S[SEG],
                    S[I_EX] - 1, feed, best_b, best_a, t, lat, lot)
