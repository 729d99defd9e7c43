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


class Chains:
    """The open chains and quiet periods per price and side, carried across micro-batches by the
    live stage (``tapeflow.signals.stream_orders``); a batch over a whole day starts empty."""

    def __init__(self) -> None:
        # (side, price) -> the open chain's refills as (row, ts_event_ns, size_nanos)
        self.chains: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        self.quiet_until: dict[tuple[int, int], int] = {}

    def forget_before(self, ts_ns: int, params: dict[str, Any]) -> None:
        """Drop what can no longer matter at or after ``ts_ns``: chains whose last refill is more
        than ``chain_gap_ns`` back (the next refill starts afresh) and quiet periods over."""
        self.chains = {k: c for k, c in self.chains.items() if ts_ns - c[-1][1] <= params["chain_gap_ns"]}
        self.quiet_until = {k: t for k, t in self.quiet_until.items() if t > ts_ns}


def detect(ev: dict[str, np.ndarray], facts: dict[str, np.ndarray], params: dict[str, Any], venue: str,
           symbol: str, *, state: Chains | None = None, first_row: int = 0) -> Alerts:
    """Iceberg alerts of one instrument (``ev``, ``facts`` as in :func:`tapeflow.signals.spoofing.detect`).

    Args:
        state: the chains carried from earlier events (the live stage); None: a fresh start.
        first_row: the row number of ``ev``'s first event (``facts["refill_prev"]`` counts from
            the first event the state saw).
    """
    out = Alerts(venue, symbol, NAME, params)
    ts = ev["ts_event_ns"]
    state = state if state is not None else Chains()
    chains, quiet_until = state.chains, state.quiet_until
    for i in np.flatnonzero(facts["refill"]).tolist():  # a few per minute: a loop is fine
        key = (int(ev["side_code"][i]), int(ev["price_nanos"][i]))
        t = int(ts[i])
        chain = chains.get(key, [])
        if chain and int(facts["refill_prev"][i]) != chain[-1][0]:
            chain = []  # it replaced an order other than the chain's last peak: another trader's
        if chain and t - chain[-1][1] < params["min_refill_gap_ns"]:
            continue  # one aggressor through several same-size orders: a peak refills once per fill
        if chain and t - chain[-1][1] > params["chain_gap_ns"]:
            chain = []
        chain.append((first_row + i, t, int(ev["size_nanos"][i])))
        chains[key] = chain
        if len(chain) < params["min_refills"] or t < quiet_until.get(key, t):
            continue
        quiet_until[key] = t + params["refractory_ns"]
        first_ns = chain[0][1]
        span_s = max(1e-3, (t - first_ns) / 1e9)
        out.add(ts_event_ns=t, ts_recv_ns=int(ev["ts_recv_ns"][i]), kind="iceberg",
                side=1 if key[0] == 0 else -1, price_nanos=key[1],
                size_nanos=sum(size for _, _, size in chain),
                start_ns=first_ns, end_ns=t, score=len(chain) / params["min_refills"],
                evidence=dict(refills=len(chain), peak_nanos=int(ev["size_nanos"][i]),
                              refills_per_min=round(60 * (len(chain) - 1) / span_s, 2)))
    return out
