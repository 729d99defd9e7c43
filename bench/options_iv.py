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
SURFACES = Goal("IV surfaces, 1,000-option snapshots (20 expiries) per second, CPU", "snapshots/s", None,
                before="none (no surfaces)")
LIVE = Goal("live option stage (price + surfaces), 1,000-ticker micro-batches, CPU", "k tickers/s", None,
            before="none (no live stage)")
FIGURES = (CHAIN, BATCH, COLD, SURFACES, LIVE)
SNAPSHOTS = 30  # one-minute snapshots of the chain in the surface and live figures
MIN_NS = 60_000_000_000
T0_NS = 1_700_000_000 // 60 * 60 * 1_000_000_000
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

    surface_time, live_time = _surfaces(report)
    report.record(CHAIN, n / chain_time[0] / 1e6, note=f"{n:,} options, median of 21 calls, CPU seconds")
    report.record(SURFACES, SNAPSHOTS / surface_time[0], note=f"{SNAPSHOTS} snapshots in one surfaces() call")
    report.record(LIVE, SNAPSHOTS * n / live_time[0] / 1e3,
                  note=f"OptionStage.apply, {SNAPSHOTS} micro-batches of {n:,} tickers")
    report.record(BATCH, len(many["price"]) / batch_time[0] / 1e6, note="median of 3 calls, CPU seconds")
    report.record(COLD, cold_s, note="first call, 1,024 bucket, wall seconds")


def _raw_snapshots(c: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The chain as ``SNAPSHOTS`` one-minute micro-batches of decoded tickers (``RAW_COLUMNS``)."""
    n = len(c["price"])
    expiry = T0_NS + 3_600_000_000_000 + np.round(c["t"] * 365 * 86_400e9).astype(np.int64)
    out = []
    for i in range(SNAPSHOTS):
        ts = T0_NS + i * MIN_NS + 500_000_000
        out.append({
            "ts_event_ns": np.full(n, ts, np.int64), "ts_recv_ns": np.full(n, ts, np.int64),
            "symbol": [f"BTC-{e}-{k:.0f}-{'C' if cl else 'P'}" for e, k, cl in zip(
                expiry, c["strike"], c["is_call"], strict=True)],
            "underlying": ["BTC"] * n, "expiry_ns": expiry,
            "strike_price_nanos": np.round(c["strike"] * 1e9).astype(np.int64), "is_call": c["is_call"],
            "underlying_price_nanos": np.full(n, round(FORWARD * 1e9), np.int64),
            "mark_price_nanos": np.round(c["price"] / FORWARD * 1e9).astype(np.int64),
            "mark_iv": np.full(n, 0.6), "venue_delta": np.full(n, np.nan),
        })
    return out


def _surfaces(report: Report) -> tuple[tuple[float, float], tuple[float, float]]:
    """Time ``surfaces()`` over the priced snapshots and the live stage over the micro-batches."""
    import pyarrow as pa

    from tapeflow.options.chain import price_tickers, raw_table
    from tapeflow.options.live import OptionStage
    from tapeflow.options.surface import surfaces

    batches = _raw_snapshots(chain())
    priced = pa.concat_tables([price_tickers(b, "deribit") for b in batches])
    n = len(batches[0]["symbol"])
    report.section(f"IV surfaces: {SNAPSHOTS} one-minute snapshots of the {n:,}-option chain (20 expiries)")
    surface_time = median_time(lambda: surfaces(priced), repeats=3, warmup=1)
    report.add("tapeflow.options.surface.surfaces (NumPy per expiry)", SNAPSHOTS, surface_time, ours=True)
    raws = [raw_table(b) for b in batches]

    def live() -> object:
        stage = OptionStage("deribit")
        return [stage.apply(r) for r in raws] + [stage.close()]

    live_time = median_time(live, repeats=3, warmup=1)
    report.add("tapeflow.options.live.OptionStage (JAX IVs + surfaces per micro-batch)", SNAPSHOTS * n,
               live_time, ours=True)
    return surface_time, live_time
