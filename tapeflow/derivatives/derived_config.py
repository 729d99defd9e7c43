"""The derived derivatives stages' thresholds from the signals thresholds file.

The insurance-fund stress levels (``stress_watch`` / ``stress_alert`` / ``stress_critical``,
drawdown fractions of the fund's running maximum) and the liquidation clusters
(``cluster_window_ns``, the largest gap inside a chain; ``cluster_min_notional``, the smallest
summed notional of a cluster) are keys of the ``derivatives`` section of the file ``Settings``
name (``TAPEFLOW_SIGNALS_CONFIG``, else ``tapeflow/signals/thresholds.toml``), per preset and
overridable per instrument like every detector threshold. The live derived step
(``flows/derivatives.py``) and the ``derivatives_derived`` asset both build their stages from one
:class:`StageThresholds`, so live == batch holds for any file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tapeflow.derivatives.derived import InsuranceStressConfig
from tapeflow.derivatives.live_clusters import ClusterConfig
from tapeflow.errors import ConfigError
from tapeflow.signals.config import Thresholds

DETECTOR = "derivatives"


@dataclass
class StageThresholds:
    """Per-instrument stage configs of one thresholds file (built once per symbol, then cached).

    Raises (from the lookups):
        ConfigError: the stress levels of an instrument's preset or override do not increase.
    """

    thresholds: Thresholds
    lateness_ns: int = 0
    _stress: dict[str, InsuranceStressConfig] = field(default_factory=dict, init=False, repr=False)
    _clusters: dict[str, ClusterConfig] = field(default_factory=dict, init=False, repr=False)

    def check(self) -> StageThresholds:
        """Build every preset's and instrument's configs now (a bad file fails at start, not mid-run)."""
        for name in self.thresholds.presets:
            self._build(self.thresholds.for_instrument(DETECTOR, "", preset=name), f"preset.{name}")
        for symbol in self.thresholds.instruments:
            self.stress(symbol)
            self.clusters(symbol)
        return self

    def stress(self, symbol: str) -> InsuranceStressConfig:
        """The stress levels of ``symbol`` (an insurance fund's ``symbol``)."""
        if symbol not in self._stress:
            self._stress[symbol], self._clusters[symbol] = self._of(symbol)
        return self._stress[symbol]

    def clusters(self, symbol: str) -> ClusterConfig:
        """The cluster settings of ``symbol``."""
        if symbol not in self._clusters:
            self._stress[symbol], self._clusters[symbol] = self._of(symbol)
        return self._clusters[symbol]

    def _of(self, symbol: str) -> tuple[InsuranceStressConfig, ClusterConfig]:
        where = (f"instrument.{symbol!r}" if symbol in self.thresholds.instruments
                 else f"preset.{self.thresholds.preset_of(symbol)}")
        return self._build(self.thresholds.for_instrument(DETECTOR, symbol), where)

    def _build(self, p: dict, where: str) -> tuple[InsuranceStressConfig, ClusterConfig]:
        try:
            stress = InsuranceStressConfig(p["stress_watch"], p["stress_alert"], p["stress_critical"])
            clusters = ClusterConfig(p["cluster_window_ns"], p["cluster_min_notional"], self.lateness_ns)
        except ConfigError as exc:
            raise ConfigError(f"{self.thresholds.path}: [{where}.{DETECTOR}] stress_watch / stress_alert / "
                              f"stress_critical / cluster_*: {exc}") from None
        return stress, clusters
