"""The two market regimes the simulator reproduces, and the instruments each one trades.

``crypto`` is a large-tick perpetual like Binance USD-M BTCUSDT (spread one tick almost always,
a deep book, heavy-tailed aggressor sizes); ``equity`` is a small-tick stock like LOBSTER AMZN
(a spread of about a dozen ticks, thin queues of round lots, hidden executions). The numbers
were tuned until ``tests/simulator/test_realism.py`` put every statistic of SIMULATOR.md in band.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kernels.sim_engine import PARAM_NAMES
from tapeflow.errors import ConfigError


@dataclass(frozen=True)
class Instrument:
    """One simulated instrument: symbol and exact grid.

    Attributes:
        symbol: venue symbol, e.g. ``SIM-BTCUSDT`` or ``SIMA``.
        tick_nanos: price increment, 1e-9 units.
        lot_nanos: size increment, 1e-9 units.
        start_price_ticks: opening fair price, in ticks.
        rate_scale: event-rate multiplier against the preset's busiest instrument.
    """

    symbol: str
    tick_nanos: int
    lot_nanos: int
    start_price_ticks: int
    rate_scale: float = 1.0


@dataclass(frozen=True)
class Preset:
    """Engine parameters plus what the planted episodes are scaled by.

    Attributes:
        name: ``crypto`` or ``equity``.
        params: engine parameters by name (see ``kernels.sim_engine.PARAM_NAMES``).
        median_depth_lots: typical depth at the best level (episode sizes are multiples of it).
        median_order_lots: typical limit order size.
        median_trade_lots: typical aggressor size.
        start_ns: default start time (UTC ns).
        grid_levels: price levels the engine keeps per side.
        order_capacity: resting orders the engine can hold.
        instruments: the named instruments.
        sigma_1s_ticks: standard deviation of 1 s mid changes with no plants, ticks (measured on
            seed 11: 1.65 crypto over 10 minutes, 0.53 equity over an hour); spikes and creeps
            are sized in it.
    """

    name: str
    params: dict[str, float]
    median_depth_lots: int
    median_order_lots: int
    median_trade_lots: int
    start_ns: int
    grid_levels: int
    order_capacity: int
    instruments: tuple[Instrument, ...] = field(default_factory=tuple)
    sigma_1s_ticks: float = 1.0

    def instrument(self, index: int) -> Instrument:
        """The ``index``-th instrument (named instruments first, then numbered ones)."""
        if index < len(self.instruments):
            return self.instruments[index]
        base = self.instruments[index % len(self.instruments)]
        extra = index - len(self.instruments) + 1
        symbol = f"SIM-X{extra}USDT" if self.name == "crypto" else f"SIMX{extra}"
        return Instrument(
            symbol, base.tick_nanos, base.lot_nanos, base.start_price_ticks, base.rate_scale * 0.5
        )


_CRYPTO = Preset(
    name="crypto",
    params=dict(
        rate_hz=270.0,
        fast_branch=0.6,
        fast_decay_hz=3000.0,
        slow_branch=0.33,
        slow_decay_hz=0.02,
        w_add=0.50,
        w_mkt=0.02,
        cancel_hazard=0.001,
        fair_sigma_ticks=0.04,
        impact_ticks=0.1,
        jump_p=0.0005,
        jump_ticks=2.0,
        half_spread_ticks=0.0,
        place_p0=0.6,
        place_scale=40.0,
        place_alpha=0.6,
        place_max_ticks=2000.0,
        lsize_median=60.0,
        lsize_sigma=1.8,
        round_p=0.0,
        round_lot=1.0,
        msize_median=30.0,
        msize_sigma=2.3,
        meta_p=0.7,
        meta_alpha=1.3,
        meta_k=2.0,
        hidden_p=0.0,
        misprice_gain=3.0,
        cancel_touch_p=0.5,
        stale_cancel_p=0.0,
        lat_min_ns=200_000.0,
        lat_mean_ns=1_500_000.0,
        max_sweep_ticks=20.0,
        stale_ticks=0.5,
        vol_cluster=2.0,
        anchor=0.02,
        improve_p=0.0,
        edge_pull=1.0,
    ),
    median_depth_lots=3000,
    median_order_lots=60,
    median_trade_lots=30,
    start_ns=1_704_067_200_000_000_000,  # 2024-01-01T00:00:00Z
    grid_levels=1 << 17,
    order_capacity=1 << 18,
    instruments=(
        Instrument("SIM-BTCUSDT", 100_000_000, 1_000_000, 600_000, 1.0),
        Instrument("SIM-ETHUSDT", 10_000_000, 1_000_000, 300_000, 0.6),
        Instrument("SIM-SOLUSDT", 10_000_000, 10_000_000, 15_000, 0.3),
        Instrument("SIM-XRPUSDT", 100_000, 100_000_000, 6_000, 0.2),
    ),
    sigma_1s_ticks=1.65,
)

_EQUITY = Preset(
    name="equity",
    params=dict(
        rate_hz=4.5,
        fast_branch=0.65,
        fast_decay_hz=800.0,
        slow_branch=0.28,
        slow_decay_hz=0.01,
        w_add=0.50,
        w_mkt=0.06,
        cancel_hazard=0.01,
        fair_sigma_ticks=0.35,
        impact_ticks=0.8,
        jump_p=0.0003,
        jump_ticks=6.0,
        half_spread_ticks=6.0,
        place_p0=0.65,
        place_scale=3.0,
        place_alpha=1.2,
        place_max_ticks=300.0,
        lsize_median=50.0,
        lsize_sigma=0.6,
        round_p=0.6,
        round_lot=100.0,
        msize_median=100.0,
        msize_sigma=0.55,
        meta_p=0.97,
        meta_alpha=1.8,
        meta_k=1.0,
        hidden_p=0.25,
        misprice_gain=0.5,
        cancel_touch_p=0.0,
        stale_cancel_p=0.2,
        lat_min_ns=20_000.0,
        lat_mean_ns=100_000.0,
        max_sweep_ticks=30.0,
        stale_ticks=0.0,
        vol_cluster=1.5,
        anchor=0.02,
        improve_p=0.2,
        edge_pull=0.0,
    ),
    median_depth_lots=100,
    median_order_lots=100,
    median_trade_lots=100,
    start_ns=1_704_205_800_000_000_000,  # 2024-01-02T14:30:00Z, the 09:30 New York open
    grid_levels=1 << 16,
    order_capacity=1 << 16,
    instruments=(
        Instrument("SIMA", 10_000_000, 1_000_000_000, 22_000, 1.0),
        Instrument("SIMB", 10_000_000, 1_000_000_000, 9_000, 0.7),
        Instrument("SIMC", 10_000_000, 1_000_000_000, 4_500, 0.5),
    ),
    sigma_1s_ticks=0.53,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (_CRYPTO, _EQUITY)}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ConfigError: no such preset.
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown simulator preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    preset = PRESETS[name]
    missing = set(PARAM_NAMES) - set(preset.params)
    if missing:
        raise ConfigError(f"preset {name!r} lacks engine parameters {sorted(missing)}")
    return preset
