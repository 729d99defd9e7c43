"""The simulator's options mode: one underlying, a chain quoted from a volatility surface, option
trades from retail and market-maker flow, planted cross-strike flows and their look-alikes.

``simulate_options`` writes, under ``out_dir``:

* ``options/<underlying>/option_ticker.parquet``: ``option_ticker`` rows (venue ``sim``), each
  instrument ticking every ``ticker_interval_s`` on average (Poisson): the forward, the mark price
  at the true surface's vol plus noise (``iv_noise``, the mark's own ``mark_iv``), our IV and delta
  from :func:`tapeflow.options.chain.price_tickers` (the JAX kernels), as for Deribit's tickers;
* ``options/<underlying>/quote.parquet``: ``quote`` rows at each ticker, bid and ask at the true vol
  -+ a half spread of 1-3 vol points, rounded out to Deribit's 0.0001 coin tick;
* ``options/<underlying>/trade.parquet``: ``trade`` rows, option premiums in coin, sizes in
  contracts (Deribit names, ``BTC-27DEC26-60000-C``), plus the market makers' hedges in
  ``<underlying>-PERPETUAL`` (price the forward, size in coin);
* ``episodes.parquet``: the planted episodes (kind ``cross_strike``, the simulator's episode table).

The forward follows a geometric Brownian motion at the short ATM vol (1 s steps, ``r = 0``: one
forward for every expiry, Deribit's perpetual). Determinism: every stream is a NumPy generator
seeded from ``[seed, 14, stream]`` (the L3 simulator seeds its plans from ``[seed, instrument, 7]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kernels.codes import ASK, BID, UNDEF_PRICE
from kernels.options_reference import black76_greeks, black76_price
from tapeflow.errors import ConfigError
from tapeflow.options.chain import NS_PER_YEAR, price_tickers
from tapeflow.schemas.records import QUOTE, SCALE, TRADE
from tapeflow.simulator.option_chain import Listing, VolSurface, list_chain, random_surface
from tapeflow.simulator.option_plants import Leg, episode_row, make_plant, plan_styles, schedule
from tapeflow.simulator.simulate import _write_episodes

S = 1_000_000_000
VENUE = "sim"
COIN_TICK = 1e-4  # Deribit's option tick for premiums under 0.005 coin (its smallest)
MEDIAN_CONTRACTS = 0.8  # the median retail trade, contracts
_WARMUP_NS = 300 * S  # no plant in the first 5 minutes: the detector's baseline fills
_HEDGE_LAG_NS = 50_000_000


@dataclass
class OptionsSummary:
    """What an options simulation wrote, and the truth it was drawn from."""

    out_dir: Path
    seed: int
    underlying: str
    surface: VolSurface
    listings: list[Listing]
    tickers_path: Path
    quotes_path: Path
    trades_path: Path
    episodes_path: Path
    tickers: int = 0
    trades: int = 0
    episodes: int = 0
    not_planted: int = 0
    overlap: bool = False
    files: list[Path] = field(default_factory=list)


def simulate_options(seed: int, duration_ns: int, out_dir: Path, *, underlying: str = "BTC",
                     start_ns: int = 1_704_067_200 * S, spot: float = 60_000.0,
                     expiry_days: tuple[int, ...] = (2, 9, 30, 93), strikes_per_expiry: int = 15,
                     episodes_per_hour: float = 10.0, overlap: bool = False, ticker_interval_s: float = 8.0,
                     iv_noise: float = 0.002, retail_rate_hz: float = 0.25,
                     mm_rate_hz: float = 0.03) -> OptionsSummary:
    """Simulate one underlying's option chain for ``duration_ns`` and write it under ``out_dir``.

    The same arguments give the same rows.

    Args:
        seed: the seed.
        duration_ns: simulated span, ns.
        out_dir: output folder (see the module docstring for what it gets).
        underlying: the underlying's name in the option symbols and the episode table.
        start_ns: first instant (UTC ns); the default is the crypto preset's.
        spot: the forward at the start, USD.
        expiry_days: expiries, days after the start's date (08:00 UTC).
        strikes_per_expiry: listed strikes per expiry (calls and puts at each).
        episodes_per_hour: coordinated plants per hour (as many look-alikes); 0 for none.
        overlap: plants start up to 30 s before the previous one ends (two coordinated plants
            stay apart); default: 60-120 s apart.
        ticker_interval_s: mean time between one instrument's tickers.
        iv_noise: standard deviation of the marks' vol around the true surface.
        retail_rate_hz, mm_rate_hz: background retail trades and market-maker round trips per second.

    Raises:
        ConfigError: a non-positive duration, or the run reaching the first expiry.
    """
    out_dir = Path(out_dir)
    if duration_ns <= 0:
        raise ConfigError(f"duration_ns must be positive, got {duration_ns}")
    surface = random_surface(np.random.default_rng([seed, 14, 0]))
    listings = list_chain(underlying, start_ns, spot, surface, expiry_days, strikes_per_expiry)
    if start_ns + duration_ns >= min(x.expiry_ns for x in listings):
        raise ConfigError(f"the run ({duration_ns / 3.6e12:.1f} h) reaches the first expiry "
                          f"({min(expiry_days)} days after the start's date)")
    path = _forward_path(np.random.default_rng([seed, 14, 1]), spot, float(surface.atm_short), duration_ns)
    chain = _Chain(listings, surface, path, start_ns)
    folder = out_dir / "options" / underlying
    folder.mkdir(parents=True, exist_ok=True)
    tickers, quotes = _tickers(chain, np.random.default_rng([seed, 14, 2]), duration_ns, ticker_interval_s,
                               iv_noise, underlying)
    legs = _background(chain, np.random.default_rng([seed, 14, 3]), duration_ns, retail_rate_hz, mm_rate_hz)
    rows, dropped = [], 0
    if episodes_per_hour > 0:
        legs, rows, dropped = _plants(chain, np.random.default_rng([seed, 14, 4]), duration_ns,
                                      episodes_per_hour, overlap, underlying, legs)
    trades = _trades(chain, legs, underlying)
    summary = OptionsSummary(out_dir, seed, underlying, surface, listings, folder / "option_ticker.parquet",
                             folder / "quote.parquet", folder / "trade.parquet", out_dir / "episodes.parquet",
                             tickers.num_rows, trades.num_rows, len(rows), dropped, overlap)
    for table, path in ((tickers, summary.tickers_path), (quotes, summary.quotes_path),
                        (trades, summary.trades_path)):
        pq.write_table(table, path, compression="zstd")
        summary.files.append(path)
    _write_episodes(summary.episodes_path, rows)
    return summary


@dataclass
class _Chain:
    listings: list[Listing]
    surface: VolSurface
    log_forward: np.ndarray  # per second from the start
    start_ns: int

    def __post_init__(self) -> None:
        self.expiry = np.array([x.expiry_ns for x in self.listings], np.int64)
        self.strike = np.array([x.strike for x in self.listings])
        self.is_call = np.array([x.is_call for x in self.listings])
        self.symbols = [x.symbol for x in self.listings]

    def forward(self, t_ns: np.ndarray) -> np.ndarray:
        x = (np.asarray(t_ns, np.int64) - self.start_ns) / S
        return np.exp(np.interp(x, np.arange(len(self.log_forward)), self.log_forward))

    def state(self, t_ns: np.ndarray, listing: np.ndarray) -> tuple[np.ndarray, ...]:
        """Forward, years to expiry and the true vol of each (time, listing)."""
        f = self.forward(t_ns)
        t = (self.expiry[listing] - t_ns) / NS_PER_YEAR
        return f, t, self.surface.iv(np.log(self.strike[listing] / f), t)


def _forward_path(rng: np.random.Generator, spot: float, vol: float, duration_ns: int) -> np.ndarray:
    n = duration_ns // S + 2
    dt = 1.0 / (365 * 86_400)
    steps = vol * np.sqrt(dt) * rng.standard_normal(n - 1) - 0.5 * vol * vol * dt
    return np.log(spot) + np.r_[0.0, np.cumsum(steps)]


def _tickers(chain: _Chain, rng: np.random.Generator, duration_ns: int, interval_s: float, iv_noise: float,
             underlying: str) -> tuple[pa.Table, pa.Table]:
    """Every instrument ticks once per refresh cycle (0-20 ms apart; the cycles start 1 s after the
    run's start, so no one-minute surface snapshot falls between two instruments' ticks of a cycle).
    The marks' vol is the true surface shocked per cycle and expiry, in level and in skew
    (``iv * (1 + e_level + e_skew z)``, ``z`` clipped to +-2, both shocks normal with an sd that makes
    the ATM vol's ``iv_noise``): a venue marks calls and puts off one fitted smile, so parity holds
    and the smile stays convex."""
    n_list = len(chain.listings)
    cycles = np.arange(0, duration_ns - S, int(interval_s * S), dtype=np.int64)
    listing = np.tile(np.arange(n_list), cycles.size)
    cycle = np.repeat(np.arange(cycles.size), n_list)
    ts = chain.start_ns + S + cycles[cycle] + rng.integers(0, 20_000_000, listing.size)
    order = np.lexsort((listing, ts))
    listing, ts, cycle = listing[order], ts[order], cycle[order]
    # one forward per cycle: the surface's butterfly check reads K/F per ticker, and a call and a put
    # of one strike on forwards a few ms apart would be two strikes a hair apart to it
    f, t, vol = chain.state(chain.start_ns + S + cycles[cycle], listing)
    t = (chain.expiry[listing] - ts) / NS_PER_YEAR
    expiry_index = np.unique(chain.expiry, return_inverse=True)[1].ravel()[listing]
    n_exp = int(expiry_index.max()) + 1
    shock = rng.standard_normal((2, cycles.size, n_exp)) * iv_noise / np.mean(vol)
    z = np.log(chain.strike[listing] / f) / (vol * np.sqrt(t))
    mark_iv = vol * (1.0 + shock[0, cycle, expiry_index] + shock[1, cycle, expiry_index] * np.clip(z, -2, 2))
    is_call = chain.is_call[listing]
    strike = chain.strike[listing]
    mark_coin = black76_price(f, strike, t, 0.0, mark_iv, is_call) / f
    raw = {"ts_event_ns": ts, "ts_recv_ns": ts + 2_000_000, "symbol": [chain.symbols[i] for i in listing],
           "underlying": [underlying] * ts.size, "expiry_ns": chain.expiry[listing],
           "strike_price_nanos": np.round(strike * SCALE).astype(np.int64), "is_call": is_call,
           "underlying_price_nanos": np.round(f * SCALE).astype(np.int64),
           "mark_price_nanos": np.round(mark_coin * SCALE).astype(np.int64), "mark_iv": mark_iv,
           "venue_delta": black76_greeks(f, strike, t, 0.0, mark_iv, is_call).delta}
    tickers = price_tickers(raw, VENUE)
    bid, ask = _bid_ask(chain, f, t, vol, listing)
    sizes = np.round(rng.lognormal(np.log(10.0), 0.7, (2, ts.size)), 1)
    quotes = QUOTE.table({
        "ts_event_ns": ts, "ts_recv_ns": ts + 2_000_000, "symbol": raw["symbol"],
        "sequence": np.full(ts.size, -1),
        "bid_price_nanos": np.where(bid > 0, np.round(bid * SCALE).astype(np.int64), UNDEF_PRICE),
        "bid_size_nanos": np.where(bid > 0, np.round(sizes[0] * SCALE), 0).astype(np.int64),
        "ask_price_nanos": np.round(ask * SCALE).astype(np.int64),
        "ask_size_nanos": np.round(sizes[1] * SCALE).astype(np.int64), "flags": np.zeros(ts.size, np.uint8),
    }, constants={"venue": VENUE})
    return tickers, quotes


def _bid_ask(chain: _Chain, f: np.ndarray, t: np.ndarray, vol: np.ndarray, listing: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask in coin: the true vol -+ 1 vol point, 1 more per standard deviation out (to 3),
    rounded out to the tick (a bid under one tick is no bid)."""
    strike, is_call = chain.strike[listing], chain.is_call[listing]
    z = np.abs(np.log(strike / f)) / (vol * np.sqrt(t))
    half = 0.01 * (1.0 + np.minimum(z, 2.0))
    bid = black76_price(f, strike, t, 0.0, np.maximum(vol - half, 0.01), is_call) / f
    ask = black76_price(f, strike, t, 0.0, vol + half, is_call) / f
    return np.floor(bid / COIN_TICK) * COIN_TICK, np.maximum(np.ceil(ask / COIN_TICK), 1) * COIN_TICK


def _weights(chain: _Chain) -> np.ndarray:
    """Where retail trades: near the money and short-dated."""
    f, t, vol = chain.state(np.full(len(chain.listings), chain.start_ns), np.arange(len(chain.listings)))
    z = np.log(chain.strike / f) / (vol * np.sqrt(t))
    w = (np.exp(-0.5 * z * z) + 0.05) / np.sqrt(t)
    return w / w.sum()


def _background(chain: _Chain, rng: np.random.Generator, duration_ns: int, retail_hz: float, mm_hz: float
                ) -> list[Leg]:
    n_list = len(chain.listings)
    w = _weights(chain)
    n = rng.poisson(retail_hz * duration_ns / S)
    legs = [Leg(int(t), int(i), int(s), float(c)) for t, i, s, c in zip(
        rng.integers(0, duration_ns, n), rng.choice(n_list, n, p=w), rng.choice([1, -1], n),
        np.maximum(0.1, np.round(rng.lognormal(np.log(MEDIAN_CONTRACTS), 1.0, n), 1)), strict=True)]
    # market makers: take one side, give it back 1-20 s later, hedging each leg in the perpetual
    m = rng.poisson(mm_hz * duration_ns / S)
    for t, i, s, c, hold in zip(rng.integers(0, duration_ns, m), rng.choice(n_list, m, p=w),
                                rng.choice([1, -1], m), np.round(rng.uniform(1, 10, m), 1),
                                rng.uniform(1, 20, m), strict=True):
        legs += [Leg(int(t), int(i), int(s), float(c), True),
                 Leg(int(t + hold * S), int(i), -int(s), float(c), True)]
    for leg in legs:
        leg.t_ns += chain.start_ns
    return [leg for leg in legs if leg.t_ns < chain.start_ns + duration_ns]


def _plants(chain: _Chain, rng: np.random.Generator, duration_ns: int, per_hour: float, overlap: bool,
            underlying: str, legs: list[Leg]) -> tuple[list[Leg], list[dict], int]:
    real = max(1, int(round(per_hour * duration_ns / (3600 * S))))
    styles = plan_styles(rng, real)
    n_list = len(chain.listings)
    pair = np.unique(np.c_[chain.expiry, chain.strike], axis=0, return_inverse=True)[1].ravel()
    f, t, vol = chain.state(np.full(n_list, chain.start_ns), np.arange(n_list))
    delta = np.abs(black76_greeks(f, chain.strike, t, 0.0, vol, chain.is_call).delta)
    eligible = np.flatnonzero((delta >= 0.1) & (delta <= 0.6))
    plants = [make_plant(s, rng, eligible, pair, MEDIAN_CONTRACTS) for s in styles]
    starts, dropped = schedule(rng, plants, chain.start_ns + _WARMUP_NS,
                               chain.start_ns + duration_ns - 60 * S, overlap)
    kept = [p for i, p in enumerate(plants) if i not in set(dropped)]
    rows = []
    for n, (plant, start) in enumerate(zip(kept, starts, strict=True)):
        rows.append(episode_row(plant, start, n, underlying, chain.symbols))
        legs += [Leg(start + leg.t_ns, leg.listing, leg.side, leg.contracts, leg.hedge) for leg in plant.legs]
    return legs, rows, len(dropped)


def _trades(chain: _Chain, legs: list[Leg], underlying: str) -> pa.Table:
    legs = sorted(legs, key=lambda leg: (leg.t_ns, leg.listing))
    ts = np.array([leg.t_ns for leg in legs], np.int64)
    listing = np.array([leg.listing for leg in legs], np.int64)
    side = np.array([leg.side for leg in legs], np.int64)
    size = np.array([leg.contracts for leg in legs])
    f, t, vol = chain.state(ts, listing)
    bid, ask = _bid_ask(chain, f, t, vol, listing)
    price = np.where(side > 0, ask, np.maximum(bid, COIN_TICK))
    symbols = [chain.symbols[i] for i in listing]
    hedge = np.array([leg.hedge for leg in legs], bool)
    if hedge.any():
        # the maker's delta after the leg is side * delta * size; it trades the opposite in the perpetual
        d = black76_greeks(f[hedge], chain.strike[listing[hedge]], t[hedge], 0.0, vol[hedge],
                           chain.is_call[listing[hedge]]).delta
        h_size = np.maximum(0.001, np.round(np.abs(d * size[hedge]), 3))
        ts = np.r_[ts, ts[hedge] + _HEDGE_LAG_NS]
        side = np.r_[side, -side[hedge] * np.sign(d).astype(np.int64)]
        size = np.r_[size, h_size]
        price = np.r_[price, np.round(f[hedge] * 2) / 2]
        symbols += [f"{underlying}-PERPETUAL"] * int(hedge.sum())
    order = np.argsort(ts, kind="stable")
    n = ts.size
    return TRADE.table({
        "ts_event_ns": ts[order], "ts_recv_ns": ts[order] + 2_000_000, "symbol": [symbols[i] for i in order],
        "sequence": np.arange(n), "trade_id": [str(i) for i in range(n)],
        "price_nanos": np.round(price[order] * SCALE).astype(np.int64),
        "size_nanos": np.round(size[order] * SCALE).astype(np.int64),
        "aggressor_side": np.where(side[order] > 0, BID, ASK).astype(np.uint8),
        "flags": np.zeros(n, np.uint8),
    }, constants={"venue": VENUE})
