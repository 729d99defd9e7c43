"""IV surfaces: schema, keys, ATM IV or a reason, wings or a reason, reason codes, violation counts, day."""

from __future__ import annotations

import numpy as np

from kernels.options_surface import SurfaceReason
from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.options import OPTION_SURFACE

RECORD = OPTION_SURFACE
CHECKS = ("schema", "not_null_keys", "atm_iv_reason", "wings_reason", "reason_code", "violation_counts",
          "ts_within_day")
MAX_IV = 10.0  # as quality.suites.option_tickers
REASONS = ("ok", *(r.name.lower() for r in SurfaceReason if r and r.name))
_COUNTS = ("calendar", "butterfly", "parity")


def _has(labels: list[list[str]], *names: str) -> np.ndarray:
    return np.array([any(n in parts for n in names) for parts in labels], dtype=bool)


def plan(d: SuiteData) -> None:
    """Plan the surface checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    labels = [str(s).split(",") for s in d.col("reasons")]
    atm, rr, bf = d.col("atm_iv"), d.col("rr25"), d.col("bf25")
    no_atm = _has(labels, "too_few_strikes", "no_atm_bracket")
    no_wing = _has(labels, "too_few_strikes", "no_25d_call", "no_25d_put")
    checks.flag_false(
        d,
        "atm_iv_reason",
        f"atm_iv in (0, {MAX_IV:g}] unless reasons say too_few_strikes or no_atm_bracket, NaN if they do",
        np.where(no_atm, ~np.isnan(atm), ~(np.nan_to_num(atm) > 0) | (np.nan_to_num(atm) > MAX_IV)),
        show=("atm_iv", "reasons"),
    )
    checks.flag_false(
        d,
        "wings_reason",
        "rr25 NaN iff reasons say too_few_strikes, no_25d_call or no_25d_put; bf25 NaN iff those or no ATM",
        (np.isnan(rr) != no_wing) | (np.isnan(bf) != (no_wing | no_atm)),
        show=("rr25", "bf25", "reasons"),
    )
    checks.flag_false(
        d,
        "reason_code",
        f"reasons: ok, or a comma-separated subset of {', '.join(REASONS[1:])}",
        np.array([("ok" in p and len(p) > 1) or not set(p) <= set(REASONS) for p in labels], dtype=bool),
        show=("reasons",),
    )
    bad = np.zeros(d.table.num_rows, dtype=bool)
    for c in _COUNTS:
        v, n = d.col(f"{c}_violations"), d.col(f"{c}_checked")
        bad |= (v < 0) | (v > n)
    checks.flag_false(d, "violation_counts", "0 <= violations <= checked, for calendar, butterfly and parity",
                      bad, show=tuple(f"{c}_{s}" for c in _COUNTS for s in ("violations", "checked")))
    checks.ts_within_day(d, derive.partition_ts(d.table))
