"""Signals: schema, keys, known kinds, sides, confidence, episode window, evidence JSON, day."""

from __future__ import annotations

import json

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.records import SIGNAL, SIGNAL_KINDS, UNDEF_PRICE

RECORD = SIGNAL
CHECKS = (
    "schema",
    "not_null_keys",
    "kind_known",
    "side_code",
    "price_range",
    "confidence_range",
    "episode_window",
    "evidence_json",
    "ts_within_day",
)


def plan(d: SuiteData) -> None:
    """Plan the signal checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("kind", "detector"))
    kind = d.table.column("kind").to_pylist()
    checks.flag_false(d, "kind_known", f"kind is one of {', '.join(SIGNAL_KINDS)}",
                      np.array([k not in SIGNAL_KINDS for k in kind], bool), show=("kind",))
    side = d.col("side")
    checks.flag_false(d, "side_code", "side is +1 (bid/buy), -1 (ask/sell) or 0 (none)",
                      (side < -1) | (side > 1), show=("side",))
    price = d.col("price_nanos")
    checks.price_range(d, {"price_nanos": (price, price != UNDEF_PRICE, False)})
    confidence = d.col("confidence")
    # NaN fails too: a signal without a calibrated confidence cannot be ranked
    checks.flag_false(d, "confidence_range", "confidence within [0, 1]",
                      ~((confidence >= 0.0) & (confidence <= 1.0)), show=("confidence",))
    start, end, ts = d.col("start_ns"), d.col("end_ns"), d.col("ts_event_ns")
    checks.flag_false(d, "episode_window", "start_ns <= end_ns <= ts_event_ns (evidence completes last)",
                      (start > end) | (end > ts), show=("start_ns", "end_ns"))
    evidence = d.table.column("evidence").to_pylist()
    checks.flag_false(d, "evidence_json", "evidence is a JSON object",
                      np.array([not _is_object(e) for e in evidence], bool), show=("evidence",))
    checks.ts_within_day(d, derive.partition_ts(d.table))


def _is_object(text: str | None) -> bool:
    if not text:
        return False
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False
