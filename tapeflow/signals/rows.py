"""Building ``signal`` rows and the steps every detector shares (confidence, refractory, sides)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE
from tapeflow.signals.config import params_hash


@dataclass
class Alerts:
    """Signal rows of one detector on one instrument, gathered column by column."""

    venue: str
    symbol: str
    detector: str
    params: dict[str, Any]
    cols: dict[str, list[Any]] = field(default_factory=lambda: {
        n: [] for n in SIGNAL.column_names if n not in ("venue", "symbol", "detector", "params_hash")})

    def add(self, *, ts_event_ns: int, ts_recv_ns: int, kind: str, side: int, size_nanos: int,
            start_ns: int, end_ns: int, score: float, evidence: dict[str, Any],
            price_nanos: int = UNDEF_PRICE, flags: int = 0, confidence: float | None = None) -> None:
        """One alert; ``score`` is the statistic over its threshold (>= 1), confidence follows from it
        (``platt_a`` / ``platt_b`` of the params; a detector calibrating each kind apart passes its own)."""
        if confidence is None:
            confidence = platt(score, self.params["platt_a"], self.params["platt_b"])
        values = dict(ts_event_ns=ts_event_ns, ts_recv_ns=ts_recv_ns, kind=kind, side=side,
                      price_nanos=price_nanos, size_nanos=size_nanos, start_ns=start_ns, end_ns=end_ns,
                      confidence=confidence, score=float(score), flags=flags,
                      evidence=json.dumps(evidence, sort_keys=True))
        for k, v in values.items():
            self.cols[k].append(v)

    def table(self) -> pa.Table:
        if not self.cols["ts_event_ns"]:
            # no alert (most live batches, every detector): the shared empty table, not ~1 ms of
            # Arrow building per detector per batch
            return SIGNAL.empty_table()
        return SIGNAL.table(self.cols, constants={
            "venue": self.venue, "symbol": self.symbol, "detector": self.detector,
            "params_hash": params_hash(self.params)})


def platt(score: float, a: float, b: float) -> float:
    """Calibrated confidence from a score over its threshold: ``1 / (1 + exp(-(a ln score + b)))``."""
    z = a * math.log(max(score, 1e-12)) + b
    return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0


def first_of_runs(candidate_ns: np.ndarray, refractory_ns: int) -> np.ndarray:
    """Indices of the candidates that open an alert: the first, then each one at least
    ``refractory_ns`` after the last alert (sequential by nature: a few candidates per hour)."""
    keep = []
    last = None
    for i, t in enumerate(candidate_ns.tolist()):
        if last is None or t - last >= refractory_ns:
            keep.append(i)
            last = t
    return np.asarray(keep, np.int64)
