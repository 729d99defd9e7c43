"""Icebergs from L3 order events: refills at the same price right after complete fills.

An iceberg shows a peak; when the peak is filled, the next one appears at the same price under a
new order id within ``refill_ns`` (kernels.signals_orders flags such adds: same side, price and
size as the order just filled). Independent traders joining a price also add same-size orders
there, but only by chance right after a complete fill: an alert needs ``min_refills`` refills at
one price and side, each ``min_refill_gap_ns``..``chain_gap_ns`` after the previous one (one
aggressor through several same-size orders is not a chain); then ``refractory_ns`` of quiet at
that price. A chain is one iceberg's peaks: each refill must follow the complete fill of the very
order the previous refill added. A trader working a parent through same-size passive children
(an institutional meta-order, a market maker) keeps several of them at a price at once and they
fill in any order, so a child added right after another's fill is not the next one to fill.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tapeflow.signals.rows import Alerts

NAME = "iceberg/1"


def detect(ev: dict[str, np.ndarray], facts: dict[str, np.ndarray], params: dict[str, Any], venue: str,
           symbol: str) -> Alerts:
    """Iceberg alerts of one instrument (``ev``, ``facts`` as in :func:`tapeflow.signals.spoofing.detect`)."""
    out = Alerts(venue, symbol, NAME, params)
    ts = ev["ts_event_ns"]
    chains: dict[tuple[int, int], list[int]] = {}  # (side, price) -> refill rows of the open chain
    quiet_until: dict[tuple[int, int], int] = {}
    for i in np.flatnonzero(facts["refill"]).tolist():  # a few per minute: a loop is fine
        key = (int(ev["side_code"][i]), int(ev["price_nanos"][i]))
        t = int(ts[i])
        chain = chains.get(key, [])
        if chain and int(facts["refill_prev"][i]) != chain[-1]:
            chain = []  # it replaced an order other than the chain's last peak: another trader's
        if chain and t - int(ts[chain[-1]]) < params["min_refill_gap_ns"]:
            continue  # one aggressor through several same-size orders: a peak refills once per fill
        if chain and t - int(ts[chain[-1]]) > params["chain_gap_ns"]:
            chain = []
        chain.append(i)
        chains[key] = chain
        if len(chain) < params["min_refills"] or t < quiet_until.get(key, t):
            continue
        quiet_until[key] = t + params["refractory_ns"]
        first = chain[0]
        span_s = max(1e-3, (t - int(ts[first])) / 1e9)
        out.add(ts_event_ns=t, ts_recv_ns=int(ev["ts_recv_ns"][i]), kind="iceberg",
                side=1 if key[0] == 0 else -1, price_nanos=key[1],
                size_nanos=int(sum(int(ev["size_nanos"][j]) for j in chain)),
                start_ns=int(ts[first]), end_ns=t, score=len(chain) / params["min_refills"],
                evidence=dict(refills=len(chain), peak_nanos=int(ev["size_nanos"][i]),
                              refills_per_min=round(60 * (len(chain) - 1) / span_s, 2)))
    return out
