"""The deterministic market simulator: seeded L3 markets with planted, labelled episodes.

``simulate(seed, instruments, duration_ns, out_dir, preset)`` writes ``sim`` venue files (read by
``tapeflow.venues.sim``) and ``episodes.parquet``; see SIMULATOR.md for what it reproduces.
"""

from __future__ import annotations

from tapeflow.simulator.episodes import KINDS
from tapeflow.simulator.presets import PRESETS, Instrument, Preset, get_preset
from tapeflow.simulator.simulate import SimSummary, simulate

__all__ = ["KINDS", "PRESETS", "Instrument", "Preset", "SimSummary", "get_preset", "simulate"]
