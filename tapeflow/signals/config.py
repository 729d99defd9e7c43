"""Detector thresholds: one TOML file, per preset, overridable per instrument, validated, reloadable.

The file (``TAPEFLOW_SIGNALS_CONFIG``, default the ``thresholds.toml`` shipped beside this module)::

    default_preset = "crypto"
    [preset.crypto.whale]              # every key of every detector, per preset
    block_x_median = 50.0
    [instrument."SIMA"]                # an instrument picks its preset ...
    preset = "equity"
    [instrument."SIMA".whale]          # ... and overrides single keys
    block_x_median = 40.0

Every preset must give every key of :data:`PARAMS` (no silent default hides a typo'd preset);
an instrument section may override any subset. Anything else is a :class:`ConfigError` that names
the file, the key and its line.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.settings import Settings
from tapeflow.tomlconfig import KeyLocator, read_toml

DEFAULT_PATH = Path(__file__).with_name("thresholds.toml")

# detector -> key -> (type, low, high): the closed set of thresholds and their valid ranges
PARAMS: dict[str, dict[str, tuple[type, float, float]]] = {
    "whale": {
        "baseline_trades": (int, 50, 1_000_000),
        "block_quantile": (float, 0.5, 1.0),
        "block_x_median": (float, 1.0, 1e6),
        "sweep_levels": (int, 2, 1000),
        "sweep_x_median": (float, 1.0, 1e6),
        "local_window_ns": (int, 1_000_000, 600_000_000_000),
        "min_local_share": (float, 0.0, 1.0),
        "local_after_ns": (int, 0, 600_000_000_000),
        "hold_ns": (int, 0, 600_000_000_000),
        "max_hold_ticks": (float, 0.0, 1e6),
        "parent_window_ns": (int, 1_000_000_000, 3_600_000_000_000),
        "parent_x_median": (float, 1.0, 1e6),
        "parent_one_sided": (float, 0.5, 1.0),
        "parent_z": (float, 0.0, 100.0),
        "parent_baseline_ns": (int, 1_000_000_000, 86_400_000_000_000),
        "parent_min_child_x_median": (float, 0.0, 1e6),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "withdrawal": {
        "grid_ns": (int, 1_000_000, 60_000_000_000),
        "within_ticks": (int, 1, 1000),
        "drop_share": (float, 0.05, 1.0),
        "min_levels_pulled": (int, 1, 1000),
        "window_ns": (int, 1_000_000, 60_000_000_000),
        "min_depth_x_median": (float, 0.0, 1e6),
        "max_opposite_move_ticks": (int, 0, 1000),
        "max_traded_share": (float, 0.0, 1.0),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "spoofing": {
        "min_size_x_depth": (float, 0.5, 1e6),
        "multi_size_x_depth": (float, 0.5, 1e6),
        "min_ticks": (int, 0, 1000),
        "max_ticks": (int, 0, 1000),
        "min_life_ns": (int, 0, 3_600_000_000_000),
        "max_life_ns": (int, 1_000_000, 3_600_000_000_000),
        "max_after_fill_ns": (int, 1_000_000, 60_000_000_000),
        "mm_clear_ns": (int, 0, 60_000_000_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "iceberg": {
        "refill_ns": (int, 1_000, 10_000_000_000),
        "min_refills": (int, 1, 1000),
        "min_refill_gap_ns": (int, 0, 3_600_000_000_000),
        "chain_gap_ns": (int, 1_000_000, 3_600_000_000_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "wall": {
        "min_size_x_depth": (float, 1.0, 1e6),
        "persist_ns": (int, 1_000_000, 3_600_000_000_000),
        "min_ticks_behind": (int, 0, 1000),
        "min_jump_share": (float, 0.0, 1.0),
        "eaten_share": (float, 0.0, 1.0),
        "outcome_window_ns": (int, 1_000_000, 3_600_000_000_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "absorption": {
        "window_ns": (int, 100_000_000, 600_000_000_000),
        "levels": (int, 1, 1000),
        "min_x_depth": (float, 0.1, 1e6),
        "min_shown_x_depth": (float, 0.0, 1e6),
        "min_pushes": (int, 1, 100_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "spike": {
        "window_ns": (int, 1_000_000, 600_000_000_000),
        "baseline_ns": (int, 1_000_000, 86_400_000_000_000),
        "min_z": (float, 0.5, 1000.0),
        "min_sigma_ticks": (float, 0.0, 1000.0),
        "min_sweep_x_depth": (float, 0.0, 1e6),
        "min_touch_z": (float, 0.0, 1000.0),
        "sigma_mean_abs": (int, 0, 1),
        "min_sweep_share": (float, 0.0, 1.0),
        "share_window_ns": (int, 1_000_000, 600_000_000_000),
        "hold_ns": (int, 0, 60_000_000_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "hidden": {
        "beyond_x_shown": (float, 1.0, 1e6),
        "require_after": (int, 0, 1),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "iceberg_l2": {
        "refill_ns": (int, 0, 10_000_000_000),
        "min_refills": (int, 1, 1000),
        "min_refill_share": (float, 0.0, 1.0),
        "min_hidden_x_shown": (float, 0.0, 1e6),
        "min_refill_gap_ns": (int, 0, 3_600_000_000_000),
        "chain_gap_ns": (int, 1_000_000, 3_600_000_000_000),
        "mm_window_ns": (int, 0, 3_600_000_000_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "spoofing_l2": {
        "min_size_x_depth": (float, 0.5, 1e6),
        "max_size_x_depth": (float, 0.5, 1e6),
        "min_ticks": (int, 0, 1000),
        "max_ticks": (int, 0, 1000),
        "max_life_ns": (int, 1_000_000, 60_000_000_000),
        "vanish_share": (float, 0.0, 1.0),
        "min_step_drop_share": (float, 0.0, 1.0),
        "min_step_x_depth": (float, 0.0, 1e6),
        "max_traded_share": (float, 0.0, 1e6),
        "max_after_fill_ns": (int, 0, 60_000_000_000),
        "mm_window_ns": (int, 0, 60_000_000_000),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "burst_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "institutional": {
        "window_ns": (int, 1_000_000_000, 3_600_000_000_000),
        "x_median": (float, 1.0, 1e6),
        "one_sided": (float, 0.0, 1.0),
        "z": (float, 0.0, 100.0),
        "bucket_ns": (int, 60_000_000_000, 86_400_000_000_000),
        "baseline_days": (int, 1, 250),
        "fallback_baseline_ns": (int, 1_000_000_000, 86_400_000_000_000),
        "mm_pair_ns": (int, 0, 10_000_000_000),
        "child_fill_ns": (int, 0, 3_600_000_000_000),
        "passive_weight": (float, 0.0, 1.0),
        "min_passive_share": (float, -1.0, 1.0),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "creep": {
        "sample_ns": (int, 100_000_000, 60_000_000_000),
        "window_ns": (int, 1_000_000_000, 3_600_000_000_000),
        "baseline_blocks": (int, 1, 1440),
        "min_z": (float, 0.0, 100.0),
        "max_vol_share": (float, 0.0, 100.0),
        "max_aggressor_share": (float, -1.0, 1.0),
        "min_activity_share": (float, 0.0, 100.0),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "contraction": {
        "sample_ns": (int, 100_000_000, 60_000_000_000),
        "window_ns": (int, 1_000_000_000, 3_600_000_000_000),
        "baseline_blocks": (int, 1, 1440),
        "quantile": (float, 0.0, 1.0),
        "factor": (float, 0.0, 100.0),
        "min_activity_share": (float, 0.0, 100.0),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "stealth": {
        "window_ns": (int, 1_000_000_000, 3_600_000_000_000),
        "min_components": (int, 1, 5),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "cross_strike": {
        "window_ns": (int, 1_000_000_000, 3_600_000_000_000),
        "baseline_trades": (int, 10, 1_000_000),
        "min_baseline_trades": (int, 1, 1_000_000),
        "strike_x_median": (float, 0.0, 1e6),
        "one_sided": (float, 0.0, 1.0),
        "min_trades": (int, 1, 1000),
        "min_strikes": (int, 2, 1000),
        "min_share": (float, 0.5, 1.0),
        "total_x_median": (float, 0.0, 1e6),
        "refractory_ns": (int, 0, 3_600_000_000_000),
        "platt_a": (float, -100.0, 100.0),
        "platt_b": (float, -100.0, 100.0),
    },
    "derivatives": {
        "basis_bps": (float, 0.01, 100_000.0),
        "oi_change_pct": (float, 0.01, 10_000.0),
        "cluster_notional": (float, 1.0, 1e15),
        "stress_level": (int, 1, 3),
        # the derived stages' own thresholds (tapeflow/derivatives/derived_config.py)
        "stress_watch": (float, 0.0001, 0.9999),
        "stress_alert": (float, 0.0001, 0.9999),
        "stress_critical": (float, 0.0001, 0.9999),
        "cluster_window_ns": (int, 1_000_000, 3_600_000_000_000),
        "cluster_min_notional": (float, 1.0, 1e15),
        # a confidence map per kind (tapeflow/derivatives/calibration.py fits them)
        "basis_platt_a": (float, -100.0, 100.0),
        "basis_platt_b": (float, -100.0, 100.0),
        "oi_platt_a": (float, -100.0, 100.0),
        "oi_platt_b": (float, -100.0, 100.0),
        "cluster_platt_a": (float, -100.0, 100.0),
        "cluster_platt_b": (float, -100.0, 100.0),
        "stress_platt_a": (float, -100.0, 100.0),
        "stress_platt_b": (float, -100.0, 100.0),
    },
}


@dataclass(frozen=True)
class Thresholds:
    """The validated contents of one thresholds file.

    Attributes:
        path: the file it was read from.
        default_preset: preset of an instrument without its own section.
        presets: preset -> detector -> key -> value (complete).
        instruments: symbol -> {"preset": name, detector -> key -> value (partial)}.
    """

    path: Path
    default_preset: str
    presets: Mapping[str, Mapping[str, Mapping[str, Any]]]
    instruments: Mapping[str, Mapping[str, Any]]

    def preset_of(self, symbol: str) -> str:
        return str(self.instruments.get(symbol, {}).get("preset", self.default_preset))

    def for_instrument(self, detector: str, symbol: str, preset: str | None = None) -> dict[str, Any]:
        """The thresholds ``detector`` runs with on ``symbol`` (instrument overrides applied).

        Args:
            detector: a key of :data:`PARAMS`.
            symbol: the instrument.
            preset: force a preset (else the instrument's own, else ``default_preset``).

        Raises:
            ConfigError: an unknown detector or preset.
        """
        if detector not in PARAMS:
            raise ConfigError(f"no detector {detector!r}; known: {', '.join(PARAMS)}")
        name = preset or self.preset_of(symbol)
        if name not in self.presets:
            raise ConfigError(f"{self.path}: no preset {name!r}; have {', '.join(self.presets)}")
        values = dict(self.presets[name][detector])
        values.update(self.instruments.get(symbol, {}).get(detector, {}))
        return values


def params_hash(values: Mapping[str, Any]) -> str:
    """A short stable hash of one detector's thresholds (the ``signal.params_hash`` column)."""
    text = json.dumps(dict(sorted(values.items())), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def config_path(settings: Settings) -> Path:
    """The thresholds file ``settings`` name (``TAPEFLOW_SIGNALS_CONFIG``), else the shipped default."""
    return settings.signals_config or DEFAULT_PATH


def load(path: Path) -> Thresholds:
    """Read and validate a thresholds file.

    Raises:
        ConfigError: unreadable, not TOML, or an unknown key, wrong type, out-of-range value or
            incomplete preset; the message names the file, the key and (where found) its line.
    """
    path = Path(path)
    text, doc = read_toml(path, "signals thresholds file")
    return _Validator(path, text).document(doc)


class _Validator(KeyLocator):
    def document(self, doc: dict[str, Any]) -> Thresholds:
        unknown = sorted(set(doc) - {"default_preset", "preset", "instrument"})
        if unknown:
            raise self.fail(unknown[0], "unknown key (the file takes default_preset, [preset.*], "
                            "[instrument.*])")
        presets_doc = doc.get("preset")
        if not isinstance(presets_doc, dict) or not presets_doc:
            raise self.fail("preset", "at least one [preset.NAME.DETECTOR] table is required")
        presets = {name: self.preset(name, body) for name, body in presets_doc.items()}
        default = doc.get("default_preset", next(iter(presets)))
        if default not in presets:
            raise self.fail("default_preset", f"{default!r} is not a preset ({', '.join(presets)})")
        instruments_doc = doc.get("instrument", {})
        if not isinstance(instruments_doc, dict):
            raise self.fail("instrument", "must be a table of [instrument.SYMBOL] tables")
        instruments = {s: self.instrument(s, body, presets) for s, body in instruments_doc.items()}
        return Thresholds(self.path, str(default), presets, instruments)

    def preset(self, name: str, body: Any) -> dict[str, dict[str, Any]]:
        where = f"preset.{name}"
        if not isinstance(body, dict):
            raise self.fail(where, "must be a table of detector tables")
        unknown = sorted(set(body) - set(PARAMS))
        if unknown:
            raise self.fail(f"{where}.{unknown[0]}.", f"unknown detector (known: {', '.join(PARAMS)})")
        out = {}
        for detector, spec in PARAMS.items():
            values = self.section(f"{where}.{detector}", body.get(detector, {}), detector)
            missing = sorted(set(spec) - set(values))
            if missing:
                raise self.fail(f"{where}.{detector}.", f"missing keys {missing} (a preset gives every key)")
            out[detector] = values
        return out

    def instrument(self, symbol: str, body: Any, presets: Mapping[str, Any]) -> dict[str, Any]:
        where = f'instrument."{symbol}"'
        if not isinstance(body, dict):
            raise self.fail(where, "must be a table")
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "preset":
                if value not in presets:
                    raise self.fail(f"{where}.preset", f"{value!r} is not a preset ({', '.join(presets)})")
                out["preset"] = value
            elif key in PARAMS:
                out[key] = self.section(f"{where}.{key}", value, key)
            else:
                raise self.fail(f"{where}.{key}", f"unknown key (preset or a detector: {', '.join(PARAMS)})")
        return out

    def section(self, where: str, body: Any, detector: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise self.fail(where, "must be a table")
        spec = PARAMS[detector]
        out = {}
        for key, value in body.items():
            dotted = f"{where}.{key}"
            if key not in spec:
                raise self.fail(dotted, f"unknown threshold (known for {detector}: {', '.join(spec)})")
            kind, low, high = spec[key]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise self.fail(dotted, f"must be an integer, got {value!r}")
            if kind is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise self.fail(dotted, f"must be a number, got {value!r}")
                value = float(value)
                if not math.isfinite(value):
                    raise self.fail(dotted, f"must be finite, got {value!r}")
            if not low <= value <= high:
                raise self.fail(dotted, f"{value!r} is out of range [{low}, {high}]")
            out[key] = value
        return out
