"""Signals from the derived derivatives metrics (docs/derivatives.md, "Derived signals").

One pure function, :func:`derived_signals`, turns derived-metric rows into ``signal`` rows of the
detector ``derivatives/1`` with the thresholds of the ``derivatives`` section of the signals
thresholds file (``tapeflow/signals/thresholds.toml``, per preset, overridable per instrument):

- ``basis_extreme``: ``|basis_bps|`` reaches ``basis_bps`` where the instrument's previous basis row
  did not (a crossing; a NaN basis is not beyond). Side +1 mark above index, -1 below.
- ``oi_surge``: ``|change_pct|`` reaches ``oi_change_pct``, as a crossing. Side +1 rise, -1 fall.
- ``liquidation_cluster``: a cluster whose notional reaches ``cluster_notional``. Side +1 buys
  (shorts liquidated), -1 sells.
- ``insurance_stress``: a fund's stress level rises to ``stress_level`` or above (a level above the
  fund's previous row's). Side 0.

Score is the value over its threshold (>= 1; the level over ``stress_level`` for the funds), the
confidence ``platt(score)`` with the kind's own ``<kind>_platt_a`` / ``_b`` (``basis``, ``oi``,
``cluster``, ``stress``), fitted on simulated planted episodes
(:mod:`tapeflow.derivatives.calibration`). A crossing needs the previous row of the same instrument: the
:class:`SignalState` carries it across calls, so the live stage (:class:`LiveDerivedSignals`, fed
the rows the live derived stages emit per micro-batch) equals one call over the whole batch tables.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tapeflow.derivatives.derived import InsuranceStressConfig, insurance_stress
from tapeflow.derivatives.live_clusters import ClusterConfig, batch_clusters
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.schemas.derivatives import (
    DERIVATIVE_BASIS,
    INSURANCE_FUND,
    LIQUIDATION,
    LIQUIDATION_CLUSTER,
    OPEN_INTEREST_CHANGE,
)
from tapeflow.schemas.records import BID, SIGNAL, UNDEF_PRICE
from tapeflow.signals.config import Thresholds
from tapeflow.signals.rows import Alerts, platt
from tapeflow.storage.scope import Scope

DETECTOR = "derivatives"
NAME = "derivatives/1"
# this producer's rows of the shared ``signal`` partition: what its writes replace (the other
# detectors' rows, the ``signals`` asset's, are kept; tapeflow.storage.scope)
SCOPE = Scope("detector", (NAME.split("/")[0] + "/",))
STRESS = "insurance_stress"  # the key of ``derived.insurance_stress`` rows (not a record)


@dataclass
class SignalState:
    """What a crossing needs from earlier calls: per ``(kind, venue, symbol[, asset])``, whether
    the last basis / OI row was beyond its threshold, and each fund's last stress level."""

    beyond: dict[tuple[str, ...], bool] = field(default_factory=dict)
    level: dict[tuple[str, ...], int] = field(default_factory=dict)


def derived_signals(tables: Mapping[str, pa.Table], thresholds: Thresholds,
                    state: SignalState | None = None) -> tuple[pa.Table, SignalState]:
    """The ``signal`` rows of derived-metric rows.

    Args:
        tables: any of ``derivative_basis``, ``open_interest_change``, ``liquidation_cluster``
            records and ``insurance_stress`` rows (``derived.STRESS_SCHEMA``); others are ignored.
            Rows of one instrument come in time order, as the derived functions write them.
        thresholds: the signals thresholds (``derivatives`` section per instrument).
        state: the state left by the previous call (a fresh one if none); updated in place.

    Returns:
        The signal rows sorted by the record's order, and the state.
    """
    st = state if state is not None else SignalState()
    alerts: dict[tuple[str, str], Alerts] = {}

    def of(venue: str, symbol: str) -> Alerts:
        if (venue, symbol) not in alerts:
            alerts[(venue, symbol)] = Alerts(venue, symbol, NAME,
                                             thresholds.for_instrument(DETECTOR, symbol))
        return alerts[(venue, symbol)]

    basis = tables.get(DERIVATIVE_BASIS.name)
    if basis is not None:
        _crossings(basis, "basis_bps", "basis_extreme", "basis_bps", "basis", st, of,
                   lambda r: {"mark_price_nanos": r["mark_price_nanos"],
                              "index_price_nanos": r["index_price_nanos"]})
    change = tables.get(OPEN_INTEREST_CHANGE.name)
    if change is not None:
        _crossings(change, "change_pct", "oi_surge", "oi_change_pct", "oi", st, of,
                   lambda r: {"change_nanos": r["change_nanos"], "window_ns": r["window_ns"],
                              "open_interest_nanos": r["open_interest_nanos"]})
    clusters = tables.get(LIQUIDATION_CLUSTER.name)
    if clusters is not None:
        for r in clusters.to_pylist():
            a = of(r["venue"], r["symbol"])
            limit = a.params["cluster_notional"]
            if r["notional"] >= limit:
                a.add(ts_event_ns=r["ts_event_ns"], ts_recv_ns=r["ts_recv_ns"], kind="liquidation_cluster",
                      side=1 if r["side"] == BID else -1, size_nanos=0, start_ns=r["start_ns"],
                      end_ns=r["end_ns"], score=r["notional"] / limit,
                      confidence=confidence(a, "cluster", r["notional"] / limit),
                      evidence={"notional": r["notional"], "count": r["count"], "threshold": limit})
    stress = tables.get(STRESS)
    if stress is not None:
        for r in stress.to_pylist():
            key = (STRESS, r["venue"], r["symbol"], r["asset"])
            a = of(r["venue"], r["symbol"])
            need = a.params["stress_level"]
            level, before = int(r["level"]), st.level.get(key, 0)
            st.level[key] = level
            if level >= need and level > before:
                a.add(ts_event_ns=r["ts_event_ns"], ts_recv_ns=r["ts_event_ns"], kind="insurance_stress",
                      # the balance, UNDEF_PRICE past int64 (the exact one is in the evidence)
                      side=0, size_nanos=min(int(r["balance_nanos"]), UNDEF_PRICE), start_ns=r["ts_event_ns"],
                      end_ns=r["ts_event_ns"], score=level / need,
                      confidence=confidence(a, "stress", level / need),
                      evidence={"asset": r["asset"], "level": level, "previous_level": before,
                                "drawdown": r["drawdown"], "balance_nanos": int(r["balance_nanos"]),
                                "peak_nanos": int(r["peak_nanos"])})
    parts = [a.table() for _, a in sorted(alerts.items())]
    out = pa.concat_tables(parts) if parts else SIGNAL.empty_table()
    return sort_signals(out), st


def batch_signals(tables: Mapping[str, pa.Table], thresholds: Thresholds,
                  derived: DerivedConfig | None = None, clusters: ClusterConfig | None = None,
                  stress: InsuranceStressConfig | None = None) -> pa.Table:
    """The signal rows of whole record tables, by the batch definitions the live stages equal.

    Args:
        tables: ``mark_price``, ``index_price``, ``open_interest``, ``liquidation`` and
            ``insurance_fund`` records (any may be absent).
        thresholds: the signals thresholds.
        derived: the basis / OI-change grid settings (``batch_derived``).
        clusters: the cluster settings (``batch_clusters``).
        stress: the insurance-fund stress levels (``derived.insurance_stress``).

    Returns:
        The ``signal`` rows of :func:`derived_signals` over the derived rows.
    """
    metrics = dict(batch_derived({k: v for k, v in tables.items() if v.num_rows}, derived))
    liquidations = tables.get(LIQUIDATION.name)
    if liquidations is not None and liquidations.num_rows:
        metrics[LIQUIDATION_CLUSTER.name] = batch_clusters(liquidations, clusters)
    funds = tables.get(INSURANCE_FUND.name)
    if funds is not None and funds.num_rows:
        metrics[STRESS] = insurance_stress(funds, stress)
    return derived_signals(metrics, thresholds)[0]


def sort_signals(table: pa.Table) -> pa.Table:
    """Signal rows in the record's order (venue, symbol, kind, time, detector)."""
    return table.sort_by([(k, "ascending") for k in SIGNAL.order_by])


def confidence(alerts: Alerts, kind_key: str, score: float) -> float:
    """The kind's calibrated confidence: ``platt(score)`` with ``<kind_key>_platt_a`` / ``_b``."""
    return platt(score, alerts.params[f"{kind_key}_platt_a"], alerts.params[f"{kind_key}_platt_b"])


def _crossings(table: pa.Table, column: str, kind: str, key: str, kind_key: str, st: SignalState, of: Any,
               extra: Any) -> None:
    rows = table.to_pylist()
    for r in rows:
        a = of(r["venue"], r["symbol"])
        limit = a.params[key]
        value = r[column]
        beyond = value is not None and not math.isnan(value) and abs(value) >= limit
        state_key = (kind, r["venue"], r["symbol"])
        if beyond and not st.beyond.get(state_key, False):
            a.add(ts_event_ns=r["ts_event_ns"], ts_recv_ns=r["ts_recv_ns"], kind=kind,
                  side=1 if value > 0 else -1, size_nanos=0, start_ns=r["ts_event_ns"],
                  end_ns=r["ts_event_ns"], score=abs(value) / limit,
                  confidence=confidence(a, kind_key, abs(value) / limit),
                  evidence={column: value, "threshold": limit, **extra(r)})
        st.beyond[state_key] = beyond


class LiveDerivedSignals:
    """The live stage: the signals of the derived rows each micro-batch emitted (equal to
    :func:`derived_signals` over the whole batch tables, by the carried state)."""

    INPUTS = (DERIVATIVE_BASIS.name, OPEN_INTEREST_CHANGE.name, LIQUIDATION_CLUSTER.name, STRESS)

    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self.state = SignalState()

    def update(self, items: Iterable[tuple[str, pa.Table]]) -> list[tuple[str, pa.Table]]:
        """Take ``(record name, table)`` items of the derived stages; the signal rows they give."""
        grouped: dict[str, list[pa.Table]] = {}
        for name, table in items:
            if name in self.INPUTS and table.num_rows:
                grouped.setdefault(name, []).append(table)
        if not grouped:
            return []
        tables = {name: pa.concat_tables(parts) for name, parts in grouped.items()}
        out, self.state = derived_signals(tables, self.thresholds, self.state)
        return [(SIGNAL.name, out)] if out.num_rows else []
