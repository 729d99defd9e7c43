"""The option grid the pricing tests share: deep ITM/OTM, expiries from one minute to five years,
vols from 5 % to 300 %, zero and positive rates, calls and puts."""

from __future__ import annotations

import itertools

import numpy as np

MINUTE_YEARS = 60.0 / (365.0 * 86400.0)
LOG_MONEYNESS = (-4.0, -2.0, -0.5, -0.05, 0.0, 0.05, 0.5, 2.0, 4.0)  # ln(K / F)
EXPIRIES_YEARS = (MINUTE_YEARS, 60 * MINUTE_YEARS, 1.0 / 365.0, 30.0 / 365.0, 1.0, 5.0)
VOLS = (0.05, 0.3, 1.2, 3.0)
RATES = (0.0, 0.05)
UNDERLYING = 100.0


def grid() -> dict[str, np.ndarray]:
    """Every combination, as columns: ``strike``, ``t``, ``vol``, ``rate``, ``is_call``."""
    rows = list(itertools.product(LOG_MONEYNESS, EXPIRIES_YEARS, VOLS, RATES, (True, False)))
    x, t, vol, rate, call = (np.array(c) for c in zip(*rows, strict=True))
    return {"strike": UNDERLYING * np.exp(x), "t": t.astype(float), "vol": vol.astype(float),
            "rate": rate.astype(float), "is_call": call.astype(bool)}
