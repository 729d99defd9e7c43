"""The ``training_example`` record (issue 12): one decision-grid row of features and labels.

The columns are those of :func:`tapeflow.ml.training_examples` with the default
:class:`tapeflow.ml.ExampleParams` (10 levels, OFI over 1/10/60 s, volatility over 60 s, trade flow
over 10/60 s, labels at 1/10/60 s), the common columns in front (``ts_event_ns`` and ``ts_recv_ns``
the grid instant: an example has no capture time of its own). Prices are exact integers with the
``UNDEF`` sentinel (i64 max) on a one-sided book; an absent label is ``NO_LABEL`` (its returns NaN).
``feature_schema_hash`` ties every row to the dataset definition that built it.
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

NO_LABEL = -128  # label_<h>s where t + h lies past the data or no mid is defined
HORIZONS_S = (1, 10, 60)


def _label_fields() -> list[Field]:
    out = []
    for h in HORIZONS_S:
        out += [
            Field(f"return_{h}s", "f64", f"mid(last row at or before t + {h} s) / mid_t - 1; NaN: absent"),
            Field(f"smoothed_return_{h}s", "f64", f"mean of the mids in (t, t + {h} s] / mid_t - 1"),
            Field(f"label_{h}s", "i32", f"1 up, 0 flat, -1 down at {h} s (stationary alpha); NO_LABEL"),
        ]
    return out


TRAINING_EXAMPLE = RecordType(
    "training_example",
    common(
        Field("warmed_up", "bool", "the longest trailing window (60 s) lies inside the day"),
        Field("two_sided", "bool", "the book has both sides at t"),
        Field("spread_nanos", "i64", "ask - bid, 1e-9 units; UNDEF on a one-sided book"),
        Field("mid_price_nanos", "i64", "bid + (ask - bid) // 2, 1e-9 units; UNDEF on a one-sided book"),
        Field("microprice_minus_mid_nanos", "i64", "floor microprice minus mid; UNDEF one-sided"),
        Field("imbalance_l1", "f64", "(bid - ask) / (bid + ask) size at the best level"),
        Field("imbalance_l10", "f64", "(bid - ask) / (bid + ask) depth over 10 levels"),
        Field("ofi_1s", "f64", "level-1 order-flow imbalance summed over (t - 1 s, t]"),
        Field("ofi_10s", "f64", "level-1 order-flow imbalance summed over (t - 10 s, t]"),
        Field("ofi_60s", "f64", "level-1 order-flow imbalance summed over (t - 60 s, t]"),
        Field("realized_vol_60s", "f64", "sqrt of summed squared log mid returns in (t - 60 s, t]"),
        Field("trade_flow_10s", "f64", "buyer- minus seller-initiated size of trades in (t - 10 s, t]"),
        Field("trade_flow_60s", "f64", "buyer- minus seller-initiated size of trades in (t - 60 s, t]"),
        *_label_fields(),
        Field("feature_schema_hash", "lstr", "sha256 of the dataset definition (feature_schema_hash)"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="One decision-grid instant of one instrument: causal book/flow features and FI-2010 labels.",
)

PREDICTION = RecordType(
    "prediction",
    common(
        Field("model_name", "lstr", "the registered model (tapeflow.ml.registry.model_name)"),
        Field("model_version", "i32", "the registry version that scored the row (the champion then)"),
        Field("model_kind", "lstr", "logreg, mlp or tcn"),
        Field("horizon_s", "i32", "the label horizon predicted, seconds"),
        Field("predicted", "i32", "1 up, 0 flat, -1 down (argmax of log p + the model's offsets)"),
        Field("p_down", "f64", "probability of a down move"),
        Field("p_flat", "f64", "probability of no move beyond alpha"),
        Field("p_up", "f64", "probability of an up move"),
        Field("warmed_up", "bool", "the longest trailing window lies inside the stream (or day)"),
        Field("two_sided", "bool", "the book had both sides at t (else the inputs are partly imputed)"),
        Field("feature_schema_hash", "lstr", "the dataset definition the inputs were built with"),
    ),
    order_by=("venue", "symbol", "ts_event_ns"),
    doc="The champion model's up/flat/down forecast at one decision-grid instant (ts = the instant).",
)

ML_RECORDS = (TRAINING_EXAMPLE, PREDICTION)
