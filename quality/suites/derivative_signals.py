"""Signals of the derived derivatives metrics (detector ``derivatives/1``, docs/derivatives.md,
"Derived signals"): the generic signal checks made specific to this detector: its name, its four
kinds, the side each kind may take, score at or above its threshold, the evidence keys each kind
documents, time order within an instrument's kind, day."""

from __future__ import annotations

import json

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE

RECORD = SIGNAL
DETECTOR = "derivatives/1"  # tapeflow.derivatives.derived_signals.NAME (quality imports no producer)
# kind -> (the sides it may take, the evidence keys it documents)
KINDS: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "basis_extreme": ((-1, 1), ("basis_bps", "threshold", "mark_price_nanos", "index_price_nanos")),
    "oi_surge": ((-1, 1), ("change_pct", "threshold", "change_nanos", "window_ns", "open_interest_nanos")),
    "liquidation_cluster": ((-1, 1), ("notional", "count", "threshold")),
    "insurance_stress": ((0,), ("asset", "level", "previous_level", "drawdown", "balance_nanos",
                                "peak_nanos")),
}
CHECKS = (
    "schema",
    "not_null_keys",
    "detector_name",
    "kind_known",
    "side_for_kind",
    "price_range",
    "confidence_range",
    "score_range",
    "episode_window",
    "evidence_keys",
    "ts_order",
    "ts_within_day",
)


def plan(d: SuiteData) -> None:
    """Plan the derivatives signal checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("kind", "detector"))
    detector = d.table.column("detector").to_pylist()
    checks.flag_false(d, "detector_name", f"detector is {DETECTOR}",
                      np.array([x != DETECTOR for x in detector], bool), show=("detector",))
    kind = d.table.column("kind").to_pylist()
    known = np.array([k in KINDS for k in kind], bool)
    checks.flag_false(d, "kind_known", f"kind is one of {', '.join(KINDS)}", ~known, show=("kind",))
    side = d.col("side")
    bad_side = np.array([k in KINDS and s not in KINDS[k][0]
                         for k, s in zip(kind, side.tolist(), strict=True)], bool)
    checks.flag_false(d, "side_for_kind", "side is +1 or -1 (basis, OI, clusters), 0 (insurance stress)",
                      bad_side, skip=~known, show=("kind", "side"))
    price = d.col("price_nanos")
    checks.price_range(d, {"price_nanos": (price, price != UNDEF_PRICE, False)})
    confidence = d.col("confidence")
    checks.flag_false(d, "confidence_range", "confidence within [0, 1]",
                      ~((confidence >= 0.0) & (confidence <= 1.0)), show=("confidence",))
    score = d.col("score")
    # the value over its threshold: a signal fires where it reaches the threshold (NaN fails)
    checks.flag_false(d, "score_range", "score >= 1 and finite (the value over its threshold)",
                      ~(np.isfinite(score) & (score >= 1.0)), show=("kind", "score"))
    start, end, ts = d.col("start_ns"), d.col("end_ns"), d.col("ts_event_ns")
    checks.flag_false(d, "episode_window", "start_ns <= end_ns <= ts_event_ns (evidence completes last)",
                      (start > end) | (end > ts), show=("start_ns", "end_ns"))
    evidence = d.table.column("evidence").to_pylist()
    checks.flag_false(d, "evidence_keys", "evidence is a JSON object holding the keys its kind documents",
                      np.array([k in KINDS and not _evidence_ok(k, e)
                                for k, e in zip(kind, evidence, strict=True)], bool),
                      skip=~known, show=("kind", "evidence"))
    checks.flag_false(d, "ts_order", "rows of one instrument and kind in time order (ts_event_ns)",
                      _out_of_order(d, kind, ts), show=("kind", "ts_event_ns"))
    checks.ts_within_day(d, derive.partition_ts(d.table))


def _evidence_ok(kind: str, text: str | None) -> bool:
    if not text:
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and all(key in value for key in KINDS[kind][1])


def _out_of_order(d: SuiteData, kind: list[str], ts: np.ndarray) -> np.ndarray:
    bad = np.zeros(len(ts), dtype=bool)
    last: dict[tuple[int, str], int] = {}
    for i, key in enumerate(zip(d.codes.tolist(), kind, strict=True)):
        if key in last and ts[i] < last[key]:
            bad[i] = True
        else:
            last[key] = int(ts[i])
    return bad
