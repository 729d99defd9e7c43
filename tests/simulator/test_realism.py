"""The simulator against the real-data stylized facts of SIMULATOR.md, one band per statistic.

Real figures are computed here from ``/work/shared/data`` where that is quick (LOBSTER AMZN,
Binance BTCUSDT trades); the rest are the SIMULATOR.md figures. Each band says why it is as wide
as it is: a simulated hour (or ten minutes) is one sample path, and some statistics (kurtosis,
autocorrelations of absolute returns) are noisy even on real data of that length.
"""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest

from tapeflow.schemas.records import BID
from tapeflow.simulator import SimSummary, get_preset
from tapeflow.simulator.stats import acf, aggressor_signs_and_sizes, l2_event_mix, realism
from tapeflow.venues.base import merge
from tapeflow.venues.sim.parse import decode
from tests.conftest import need
from tests.signals.evaluation import once_per_run

AMZN = "lobster/LOBSTER_SampleFile_AMZN_2012-06-21_1/AMZN_2012-06-21_34200000_57600000_message_1.csv"
BINANCE = "binance/usdm_btcusdt_20240808.gz"


def _stats(factory: pytest.TempPathFactory, summary: SimSummary, preset: str) -> dict[str, float]:
    # a run's statistics are computed once per pytest run, whichever fixture (and xdist worker) asks first
    return dict(once_per_run(factory, f"realism-{summary.out_dir.parent.name}-{preset}",
                             lambda _: _stats_of(summary, preset)))


def _stats_of(summary: SimSummary, preset: str) -> dict[str, float]:
    tables = merge(list(decode(summary.files)))
    inst = get_preset(preset).instrument(0)
    round_lot = 100 * inst.lot_nanos if preset == "equity" else inst.lot_nanos
    out = realism(
        tables["order_event"],
        tables["trade"],
        tables["book_delta"],
        tick_nanos=inst.tick_nanos,
        lot_nanos=round_lot,
        touch_only=preset == "equity",
    )
    out.update(l2_event_mix(tables["book_delta"]))
    out["lot"] = inst.lot_nanos
    return out


# every band must hold for the background market alone and with every kind planted, overlapping
@pytest.fixture(scope="module", params=["plain", "planted"])
def crypto(request: pytest.FixtureRequest) -> dict[str, float]:
    name = "crypto_run" if request.param == "plain" else "crypto_planted_run"
    return _stats(request.getfixturevalue("tmp_path_factory"), request.getfixturevalue(name), "crypto")


@pytest.fixture(scope="module")
def crypto_plain(tmp_path_factory: pytest.TempPathFactory, crypto_run: SimSummary) -> dict[str, float]:
    return _stats(tmp_path_factory, crypto_run, "crypto")


@pytest.fixture(scope="module", params=["plain", "planted"])
def equity(request: pytest.FixtureRequest) -> dict[str, float]:
    name = "equity_run" if request.param == "plain" else "equity_planted_run"
    out = _stats(request.getfixturevalue("tmp_path_factory"), request.getfixturevalue(name), "equity")
    out["planted"] = float(request.param == "planted")
    return out


@pytest.fixture(scope="module")
def equity_plain(tmp_path_factory: pytest.TempPathFactory, equity_run: SimSummary) -> dict[str, float]:
    return _stats(tmp_path_factory, equity_run, "equity")


def _amzn(real_data) -> dict[str, float]:
    msg = np.loadtxt(need(real_data / AMZN), delimiter=",")
    t, typ, size, direction = msg[:, 0], msg[:, 1], msg[:, 3], msg[:, 5]
    ex = (typ == 4) | (typ == 5)
    sign, ts = -direction[ex], t[ex]
    start = np.r_[True, (np.diff(ts) > 0) | (np.diff(sign) != 0)]
    dt = np.diff(t)
    return dict(
        mix_add=np.mean(typ == 1),
        mix_delete=np.mean(typ == 3),
        mix_exec=np.mean(typ == 4),
        mix_hidden=np.mean(typ == 5),
        sign_acf_1=acf(sign[start], 1),
        sign_acf_10=acf(sign[start], 10),
        iet_mean_s=dt.mean(),
        iet_cv=dt.std() / dt.mean(),
        iet_share_below_1ms=np.mean(dt < 1e-3),
        hidden_volume_share=size[typ == 5].sum() / size[ex].sum(),
    )


def test_equity_event_mix_and_cancels_like_amzn(equity: dict[str, float], real_data) -> None:
    real = _amzn(real_data)
    assert abs(real["mix_add"] - 0.48) < 0.01  # the AMZN file is the one SIMULATOR.md describes
    # Mix shares: +-0.15 absolute. The touch-only filter moves shares between add and delete with
    # the book's shape near the touch; what must hold is the ordering add > delete > exec > hidden.
    for name in ("mix_add", "mix_delete", "mix_exec", "mix_hidden"):
        assert abs(equity[name] - real[name]) < 0.15, (name, equity[name], real[name])
    assert equity["mix_add"] > equity["mix_delete"] > equity["mix_exec"] > equity["mix_hidden"] > 0
    # Cancel-to-trade messages, real 1.6: band 0.8-3.2 (a factor of two either way).
    assert 0.8 < equity["cancel_to_trade_msgs"] < 3.2
    # Hidden executions carry 24% of AMZN volume: band 10-40%.
    assert abs(real["hidden_volume_share"] - 0.24) < 0.01
    assert 0.10 < equity["hidden_volume_share"] < 0.40


def test_equity_spread_depth_and_sizes_like_amzn(equity: dict[str, float]) -> None:
    lot = equity["lot"]
    # Median spread 12 ticks on AMZN: band 6-24 ticks (small-tick regime: many ticks wide).
    assert 6 <= equity["spread_median_ticks"] <= 24
    # One-tick spreads are rare (0.24% of the time): band below 3% (with plants: the strict xfail below).
    if not equity["planted"]:
        assert equity["spread_one_tick_share"] < 0.03
    # Depth at the best is one round lot (100 shares): median exactly 100 in AMZN; band 50-300.
    assert 50 * lot <= equity["depth_best_median"] <= 300 * lot
    # Order sizes median 100 / p90 200 / 61% round lots: median exactly 100, p90 100-400, share 40-80%.
    assert equity["order_size_median"] == 100 * lot
    assert 100 * lot <= equity["order_size_p90"] <= 400 * lot
    assert 0.40 < equity["round_lot_share"] < 0.80
    # Aggressor size median 100 / p90 200: median 50-200, p90 100-400.
    assert 50 * lot <= equity["trade_size_median"] <= 200 * lot
    assert 100 * lot <= equity["trade_size_p90"] <= 400 * lot


def test_equity_timing_and_memory_like_amzn(equity: dict[str, float], real_data) -> None:
    real = _amzn(real_data)
    # Inter-event time (touch messages) mean 407 ms: band 0.5x-2x; CV 3.2 (bursty, > 1.5 required:
    # a Poisson stream has 1); share under 1 ms 44%: band 25-65%.
    assert real["iet_mean_s"] / 2 < equity["iet_mean_s"] < real["iet_mean_s"] * 2
    assert 1.5 < equity["iet_cv"] < 6.0
    assert 0.25 < equity["iet_share_below_1ms"] < 0.65
    # Aggressor-sign autocorrelation, real 0.61 (lag 1) / 0.10 (lag 10): lag 1 in 0.25-0.85 and
    # lag 10 in 0.02-0.30 -- positive and decaying is the stylized fact; one simulated sample of
    # ~1,500 aggressors has a standard error near 0.03 at each lag, metaorder luck adds more.
    assert abs(real["sign_acf_1"] - 0.61) < 0.02 and abs(real["sign_acf_10"] - 0.10) < 0.02
    assert 0.25 < equity["sign_acf_1"] < 0.85
    assert 0.02 < equity["sign_acf_10"] < 0.30
    assert equity["sign_acf_1"] > equity["sign_acf_10"]
    # Excess kurtosis of 1 s returns, real 32: heavy tails required, band 8-400 (mostly-zero 1 s
    # returns make the figure explode with a few jumps: it is noisy over two hours).
    assert 8 < equity["kurtosis_1s"] < 400


@pytest.mark.xfail(
    strict=True,
    reason="known gap: equity 1 s mid returns are dominated by touch "
    "flicker inside a wide spread, so |r| shows no clustering at 1 s yet",
)
def test_equity_volatility_clusters_like_amzn(equity_plain: dict[str, float]) -> None:
    equity = equity_plain
    # |1 s returns| autocorrelation: AMZN lags 1-10 all positive (0.03-0.14): volatility clusters.
    # Band: mean over lags 1-10 in 0.03-0.30 and lag 1 above the 2/sqrt(n) noise level.
    assert 0.03 < equity["abs_ret_acf_mean_1_10"] < 0.30
    assert equity["abs_ret_acf_1"] > 2 / np.sqrt(equity["returns_1s"])


@pytest.fixture(scope="module")
def equity_planted(tmp_path_factory: pytest.TempPathFactory,
                   equity_planted_run: SimSummary) -> dict[str, float]:
    return _stats(tmp_path_factory, equity_planted_run, "equity")


def test_equity_one_tick_spreads_rare_with_plants_like_amzn(equity_planted: dict[str, float]) -> None:
    # 3.6% (a strict xfail) until calm regimes pulled the fair price to the mid itself: the
    # contraction walked its book up through one-tick spreads (docs/simulator.md); 2.6% since
    assert equity_planted["spread_one_tick_share"] < 0.03


def _binance_aggressors(real_data) -> tuple[np.ndarray, np.ndarray]:
    ts, sign, qty = [], [], []
    with gzip.open(need(real_data / BINANCE), "rb") as fh:
        for line in fh:
            payload = line.partition(b" ")[2]
            if b"@trade" not in payload[:40]:
                continue
            d = orjson.loads(payload)["data"]
            ts.append(d["T"])
            sign.append(-1 if d["m"] else 1)
            qty.append(float(d["q"]))
    t, s, q = np.array(ts), np.array(sign), np.array(qty)
    start = np.flatnonzero(np.r_[True, (np.diff(t) != 0) | (np.diff(s) != 0)])
    return s[start], np.add.reduceat(q, start)


def test_crypto_book_like_binance(crypto: dict[str, float]) -> None:
    lot = crypto["lot"]  # 0.001 BTC
    # Large tick: spread one tick 99% of the time, median 1 tick. Band: median exactly 1, share > 75%.
    assert crypto["spread_median_ticks"] == 1
    assert crypto["spread_one_tick_share"] > 0.75
    # Depth at best ~3 BTC: band 1-9 BTC (a factor of three: queues are long and bursty).
    assert 1000 * lot <= crypto["depth_best_median"] <= 9000 * lot
    # Level updates new 19% / increase 27% / decrease 28% / delete 18%: each within +-0.12, and
    # new ~ delete, increase ~ decrease (a stationary book creates as many levels as it removes).
    for name, real in (("l2_new", 0.19), ("l2_increase", 0.27), ("l2_decrease", 0.28), ("l2_delete", 0.18)):
        assert abs(crypto[name] - real) < 0.12, (name, crypto[name])
    assert abs(crypto["l2_new"] - crypto["l2_delete"]) < 0.02
    # Removed depth / traded volume ~57: band 10-200 (cancellation dwarfs trading in crypto).
    assert 10 < crypto["removed_to_traded_volume"] < 200


def test_crypto_flow_like_binance(crypto: dict[str, float], real_data) -> None:
    lot = crypto["lot"]
    signs, sizes_btc = _binance_aggressors(real_data)
    real_acf1, real_acf10 = acf(signs, 1), acf(signs, 10)
    assert abs(real_acf1 - 0.21) < 0.02 and abs(real_acf10 - 0.12) < 0.02
    # Aggressor-sign autocorrelation: within +-0.1 of the real figure at lags 1 and 10 (10 simulated
    # minutes hold ~3,000 aggressors; the long memory makes the estimate noisier than 1/sqrt(n)).
    assert abs(crypto["sign_acf_1"] - real_acf1) < 0.1
    assert abs(crypto["sign_acf_10"] - real_acf10) < 0.1
    # Aggressor size median 0.030 / p90 0.65 BTC: median 0.015-0.06, p90 0.3-1.3 (a factor of two).
    real_median, real_p90 = np.median(sizes_btc), np.quantile(sizes_btc, 0.9)
    assert 0.5 * real_median * 1000 * lot <= crypto["trade_size_median"] <= 2 * real_median * 1000 * lot
    assert 0.5 * real_p90 * 1000 * lot <= crypto["trade_size_p90"] <= 2 * real_p90 * 1000 * lot
    # Inter-event time mean 3.7 ms / CV 2.5 / 65% under 1 ms: mean 2-7 ms, CV 1.5-5, share 45-80%.
    assert 0.002 < crypto["iet_mean_s"] < 0.007
    assert 1.5 < crypto["iet_cv"] < 5.0
    assert 0.45 < crypto["iet_share_below_1ms"] < 0.80
    # Excess kurtosis of 1 s returns 18: heavy tails, band 5-150 over 600 one-second returns.
    assert 5 < crypto["kurtosis_1s"] < 150
    assert crypto["abs_ret_acf_mean_1_10"] > 0


def test_crypto_background_does_not_drift(crypto_plain: dict[str, float]) -> None:
    # SIMULATOR.md asks for no drift of the background (none in its table; a drift is what the creep
    # plant is, its look-alike "a quiet period with no drift"). Until 2026-12-07 the engine's fair
    # price was pulled half a tick above the mid and the crypto book walked up 0.44 tick/s (8
    # seeds x 10 min: +262 +- 51 ticks against a random walk's 30; 1 s moves 88% up): this failed.
    # Bands: up moves 35-65% of the 1 s mid moves (~250 moves: 5 standard errors), the net move
    # within 4 random-walk sigmas (measured after: 0.50 of moves up pooled, net -0.2 to +1.4 sigma).
    # The background alone: plants drift on purpose (creep).
    crypto = crypto_plain
    assert 0.35 < crypto["up_share_1s"] < 0.65, crypto["up_share_1s"]
    assert abs(crypto["net_move_sigmas"]) < 4.0, crypto["net_move_sigmas"]


def test_aggressor_collapse_counts_each_sweep_once() -> None:
    # two executions of one aggressor (same time, same side), then a seller, then a buyer
    from tapeflow.schemas.records import TRADE

    t = TRADE.table(
        dict(
            ts_event_ns=[5, 5, 6, 7],
            ts_recv_ns=[5, 5, 6, 7],
            sequence=[1, 2, 3, 4],
            trade_id=["1", "2", "3", "4"],
            price_nanos=[1, 1, 1, 1],
            size_nanos=[2, 3, 4, 5],
            aggressor_side=[BID, BID, ord("A"), BID],
            flags=[0, 0, 0, 0],
        ),
        constants=dict(venue="sim", symbol="X"),
    )
    signs, sizes = aggressor_signs_and_sizes(t)
    assert signs.tolist() == [1, -1, 1]
    assert sizes.tolist() == [5, 4, 5]
