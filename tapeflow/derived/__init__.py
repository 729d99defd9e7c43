"""Derived data both runtimes compute identically: live bars, metrics, features, baselines."""

from __future__ import annotations

from tapeflow.derived.bars import bars_for, dollar_bars, tick_bars, time_bars, volume_bars
from tapeflow.derived.features import features
from tapeflow.derived.live_bars import LiveBars, LiveBarStats
from tapeflow.derived.live_metrics import LiveMetrics
from tapeflow.derived.metrics import metrics
from tapeflow.derived.profiles import BASELINE, PROFILE, baselines, daily_profile

__all__ = [
    "BASELINE", "PROFILE", "LiveBarStats", "LiveBars", "LiveMetrics", "bars_for", "baselines",
    "daily_profile", "dollar_bars", "features", "metrics", "tick_bars", "time_bars", "volume_bars",
]
