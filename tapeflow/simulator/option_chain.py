"""The simulated option chain: a volatility surface (smile and term structure), its true 25-delta
figures, and the listed expiries and strikes with their Deribit-style names.

The surface is quadratic in standardized moneyness ``z = ln(K/F) / (atm(T) sqrt(T))``::

    iv(k, T) = atm(T) * (1 + skew * z + curvature * z^2)
    atm(T)   = atm_long + (atm_short - atm_long) * exp(-T / tau_years)

so the smile narrows in log-moneyness as ``sqrt(T)`` (the usual shape of a listed chain) and the
ATM term structure runs from ``atm_short`` to ``atm_long``. ``z`` is clipped to +-4 so the far
wings stay positive and flat.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from tapeflow.options.instruments import EXPIRY_HOUR_UTC

NS_PER_DAY = 86_400_000_000_000
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_Z_CLIP = 4.0


@dataclass(frozen=True)
class VolSurface:
    """The true implied-volatility surface of the simulated chain (vols as fractions)."""

    atm_short: float
    atm_long: float
    tau_years: float
    skew: float
    curvature: float

    def atm(self, t_years: np.ndarray | float) -> np.ndarray:
        """ATM implied vol at ``t_years``."""
        t = np.asarray(t_years, np.float64)
        return self.atm_long + (self.atm_short - self.atm_long) * np.exp(-t / self.tau_years)

    def iv(self, log_moneyness: np.ndarray | float, t_years: np.ndarray | float) -> np.ndarray:
        """Implied vol at ``k = ln(K/F)`` and ``t_years``."""
        t = np.asarray(t_years, np.float64)
        atm = self.atm(t)
        z = np.clip(np.asarray(log_moneyness, np.float64) / (atm * np.sqrt(t)), -_Z_CLIP, _Z_CLIP)
        return atm * (1.0 + self.skew * z + self.curvature * z * z)

    def wing(self, t_years: float, call: bool, delta: float = 0.25) -> float:
        """Implied vol of the ``delta`` call (or ``-delta`` put): Black-76 forward delta at the
        smile's own vol, found by bisection in log-moneyness."""
        sd = float(self.atm(t_years)) * np.sqrt(t_years)
        target = delta if call else 1.0 - delta  # N(d1) of the call, or of the put plus one
        lo, hi = (0.0, 8.0 * sd) if call else (-8.0 * sd, 0.0)
        for _ in range(200):
            k = 0.5 * (lo + hi)
            vol = float(self.iv(k, t_years))
            n_d1 = float(ndtr((-k + 0.5 * vol * vol * t_years) / (vol * np.sqrt(t_years))))
            # N(d1) falls as k rises on both wings
            lo, hi = (k, hi) if n_d1 > target else (lo, k)
        return float(self.iv(0.5 * (lo + hi), t_years))

    def truth(self, t_years: float) -> tuple[float, float, float]:
        """``(atm_iv, rr25, bf25)`` of the true smile at ``t_years``: what a surface fitted on a dense,
        noise-free chain would give."""
        atm = float(self.atm(t_years))
        call, put = self.wing(t_years, True), self.wing(t_years, False)
        return atm, call - put, 0.5 * (call + put) - atm


def random_surface(rng: np.random.Generator) -> VolSurface:
    """A crypto-like surface: ATM 40-60 %, contango of 2-12 points, skew -0.12 to +0.04 per
    standard deviation, curvature 0.01-0.04."""
    atm_short = float(rng.uniform(0.40, 0.60))
    return VolSurface(atm_short=atm_short, atm_long=atm_short + float(rng.uniform(0.02, 0.12)),
                      tau_years=float(rng.uniform(0.08, 0.25)), skew=float(rng.uniform(-0.12, 0.04)),
                      curvature=float(rng.uniform(0.01, 0.04)))


@dataclass(frozen=True)
class Listing:
    """One listed option."""

    symbol: str
    expiry_ns: int
    strike: float
    is_call: bool


def expiry_name(expiry_ns: int) -> str:
    """Deribit's date part, ``27DEC26`` (day without a leading zero)."""
    d = dt.datetime.fromtimestamp(expiry_ns / 1e9, tz=dt.UTC)
    return f"{d.day}{_MONTHS[d.month - 1]}{d.year % 100:02d}"


def option_symbol(underlying: str, expiry_ns: int, strike: float, is_call: bool) -> str:
    """``BTC-27DEC26-60000-C`` (integer strikes only: the chain lists round strikes)."""
    return f"{underlying}-{expiry_name(expiry_ns)}-{int(round(strike))}-{'C' if is_call else 'P'}"


def _nice_step(raw: float) -> float:
    """The listed strike spacing nearest ``raw`` in ratio: 1, 2, 2.5 or 5 times a power of ten."""
    power = 10.0 ** np.floor(np.log10(raw))
    steps = np.array([1.0, 2.0, 2.5, 5.0, 10.0]) * power
    return float(steps[np.argmin(np.abs(np.log(steps / raw)))])


def list_chain(underlying: str, start_ns: int, forward: float, surface: VolSurface,
               expiry_days: tuple[int, ...], strikes_per_expiry: int) -> list[Listing]:
    """Calls and puts at ``strikes_per_expiry`` round strikes per expiry, spanning about +-2 standard
    deviations of the forward at the start; expiries at 08:00 UTC ``expiry_days`` after the start's date."""
    day0 = start_ns // NS_PER_DAY * NS_PER_DAY
    out = []
    for days in expiry_days:
        expiry = day0 + days * NS_PER_DAY + EXPIRY_HOUR_UTC * 3_600_000_000_000
        t = (expiry - start_ns) / (365 * NS_PER_DAY)
        sd = float(surface.atm(t)) * np.sqrt(t)
        step = _nice_step(forward * 4.0 * sd / max(1, strikes_per_expiry - 1))
        centre = round(forward / step)
        half = strikes_per_expiry // 2
        strikes = [(centre + i) * step for i in range(-half, strikes_per_expiry - half)]
        for strike in strikes:
            if strike <= 0:
                continue
            for is_call in (True, False):
                name = option_symbol(underlying, expiry, strike, is_call)
                out.append(Listing(name, expiry, strike, is_call))
    return out
