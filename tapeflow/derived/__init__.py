"""Derived data both runtimes compute identically: live bars, metrics, features, baselines."""

from __future__ import annotations

from tapeflow.derived.live_bars import LiveBars, LiveBarStats

__all__ = ["LiveBarStats", "LiveBars"]
