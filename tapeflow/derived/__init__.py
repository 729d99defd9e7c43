"""Derived data both runtimes compute identically: live bars, metrics, features, baselines."""

from __future__ import annotations

from tapeflow.derived.live_bars import LiveBars, LiveBarStats
from tapeflow.derived.live_metrics import LiveMetrics
from tapeflow.derived.metrics import metrics

__all__ = ["LiveBarStats", "LiveBars", "LiveMetrics", "metrics"]
