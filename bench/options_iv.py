"""Implied volatilities per second on CPU: the JAX kernel (``kernels.options_pricing``) beside its NumPy
reference, same run, same options.

A synthetic Deribit-like BTC chain: forward 60,000, 20 expiries from one day to a year, 25 strikes
each within +-3 standard deviations, calls and puts (1,000 options), priced from a smile with the
reference pricer. The headline is one call over the whole chain (padded to its 1,024 bucket, as
``tapeflow options`` does per decode chunk); a batch of 256 such chains in one call shows the
kernel's throughput once dispatch is amortized. Steady state is timed after a warm-up call; the cold
start (tracing and compiling one bucket size, paid once per process) is timed on the first call and
reported on its own.
"""

from __future__ import annotations

import time

import numpy as np

from bench import Goal, Report, median_time
from kernels import options_pricing as op
from kernels import options_reference as ref

CHAIN = Goal("IV, one full chain (1,000 options) per call, CPU", "M IV/s", 1.0, before="none (no IV kernel)")
BATCH = Goal("IV, 256 chains in one call, CPU", "M IV/s", 1.0, before="none (no IV kernel)")
COLD = Goal("IV kernel cold start (compile one bucket)", "s", None, higher_is_better=False, before="none")
FIGURES = (CHAIN, BATCH, COLD)
FORWARD = 60_000.0
EXPIRY_DAYS = np.geomspace(1, 365, 20)
STRIKES = 25  # per expiry and type


def chain(chains: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """``chains`` copies of the synthetic chain (prices jittered per copy): price, strike, t, is_call."""
    rng = np.random.default_rng(seed)
    t = np.repeat(EXPIRY_DAYS / 365.0, STRIKES)
    z = np.tile(np.linspace(-3, 3, STRIKES), len(EXPIRY_DAYS))
    atm = 0.55 + 0.1 * np.exp(-t)
    vol = atm + 0.08 * z * z / 9 - 0.04 * z / 3  # a smile with a skew, vol points in the 0.5-0.8 range
    strike = FORWARD * np.exp(z * atm * np.sqrt(t))
    t, strike, vol = (np.tile(np.concatenate([a, a]), chains) for a in (t, strike, vol))
    is_call = np.tile(np.repeat([True, False], len(EXPIRY_DAYS) * STRIKES), chains)
    vol = vol * (1 + 0.01 * rng.standard_normal(len(vol)))
    price = ref.black76_price(FORWARD, strike, t, 0.0, vol, is_call)
    return {"price": price, "strike": strike, "t": t, "is_call": is_call}


def run(report: Report) -> None:
    """Time the JAX implied vol (cold, then steady) and its NumPy reference; record the goals."""
    one = chain()
    n = len(one["price"])

    def jax_iv(c: dict[str, np.ndarray]) -> object:
        return op.black76_implied_vol(c["price"], FORWARD, c["strike"], c["t"], 0.0, c["is_call"])

    def numpy_iv(c: dict[str, np.ndarray]) -> object:
        return ref.black76_implied_vol(c["price"], FORWARD, c["strike"], c["t"], 0.0, c["is_call"])

    t0 = time.perf_counter()
    _, reason = jax_iv(one)  # the first call of this bucket size: trace and compile
    cold_s = time.perf_counter() - t0
    assert (reason == op.IVReason.OK).all(), "the synthetic chain must be solvable throughout"

    report.section(f"implied vol, one chain of {n:,} options per call (Black-76, float64, CPU)")
    chain_time = median_time(lambda: jax_iv(one), repeats=21, warmup=3)
    report.add("tapeflow black76_implied_vol (JAX)", n, chain_time, ours=True)
    report.add("NumPy reference (same Newton, to convergence)", n, median_time(lambda: numpy_iv(one)),
               ours=False)

    many = chain(256, seed=1)
    report.section(f"implied vol, {len(many['price']):,} options in one call")
    batch_time = median_time(lambda: jax_iv(many), repeats=3, warmup=1)
    report.add("tapeflow black76_implied_vol (JAX)", len(many["price"]), batch_time, ours=True)
    report.add("NumPy reference", len(many["price"]), median_time(lambda: numpy_iv(many), repeats=1),
               ours=False)
    report.note(f"{op.IV_ITERATIONS} fixed Newton steps per option; the reference iterates to convergence")

    report.record(CHAIN, n / chain_time[0] / 1e6, note=f"{n:,} options, median of 21 calls, CPU seconds")
    report.record(BATCH, len(many["price"]) / batch_time[0] / 1e6, note="median of 3 calls, CPU seconds")
    report.record(COLD, cold_s, note="first call, 1,024 bucket, wall seconds")
