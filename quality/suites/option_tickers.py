"""Option tickers: schema, keys, IV range or a reason, reason code, strike, type, expiry order, day."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.options import OPTION_TICKER

RECORD = OPTION_TICKER
CHECKS = ("schema", "not_null_keys", "iv_range", "iv_reason_code", "strike_positive", "option_type",
          "expiry_after_ts", "ts_within_day")
# A vol of 1000% is far beyond any listed option's (Deribit's wings stay below ~300%): above it the
# solver or the premium's unit is wrong. Kept in step with kernels.options_pricing.IVReason (not
# imported: JAX takes seconds to start, and the suite needs only the labels).
MAX_IV = 10.0
IV_REASONS = ("ok", "bad_input", "non_positive_time", "non_positive_price", "below_intrinsic",
              "above_upper_bound", "no_vega", "no_convergence")


def plan(d: SuiteData) -> None:
    """Plan the option-ticker checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    iv, reason = d.col("iv"), d.col("iv_reason").astype(str)
    ok = reason == "ok"
    has_iv = np.isfinite(iv)
    checks.flag_false(
        d,
        "iv_range",
        f"iv in (0, {MAX_IV:g}] with reason ok, or NaN with another reason",
        np.where(ok, ~has_iv | (np.nan_to_num(iv) <= 0) | (np.nan_to_num(iv) > MAX_IV), ~np.isnan(iv)),
        show=("iv", "iv_reason"),
    )
    checks.flag_false(d, "iv_reason_code", f"iv_reason one of {', '.join(IV_REASONS)}",
                      ~np.isin(reason, IV_REASONS), show=("iv_reason",))
    checks.flag_false(d, "strike_positive", "strike_price_nanos > 0", d.col("strike_price_nanos") <= 0,
                      show=("strike_price_nanos",))
    checks.flag_false(d, "option_type", "option_type C or P",
                      ~np.isin(d.col("option_type").astype(str), ("C", "P")), show=("option_type",))
    # a ticker sent at or after expiry is real (the last prints before settlement) and says so
    checks.flag_false(
        d,
        "expiry_after_ts",
        "expiry_ns after ts_event_ns, or iv_reason non_positive_time",
        (d.col("expiry_ns") <= d.col("ts_event_ns")) & (reason != "non_positive_time"),
        show=("ts_event_ns", "expiry_ns", "iv_reason"),
    )
    checks.ts_within_day(d, derive.partition_ts(d.table))
