"""``tapeflow options`` on the real Deribit captures, against the oracles of ../shared/data/README.md.

Oracle (README, "options/deribit"): Black-76 with F = ``underlying_price``, r = 0, expiry 08:00 UTC:
``mark_iv`` reproduces ``mark_price`` (median error ~5e-6 coin) and ``greeks.delta``; the IV
recomputed from ``mark_price`` matches ``mark_iv`` except deep in the money, where no IV is pinned
down.

Exclusion rule for the IV comparison, stated once: options with ``|venue delta| > 0.8`` (deep in the
money). Their mark is mostly intrinsic value, and Deribit's mark price disagrees with its own
mark_iv by ~1e-5 coin (the README's 5e-6 median), which moves a deep-in-the-money option's IV by
whole vol points (and puts ETH-6APR21-2400-P's mark below its intrinsic value).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from kernels.options_pricing import black76_implied_vol, black76_price
from tapeflow.cli import main
from tapeflow.options.chain import NS_PER_YEAR
from tapeflow.options.deribit import DeribitTickerDecoder
from tapeflow.options.instruments import parse_option_name
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need

DEEP_ITM_DELTA = 0.8


@pytest.fixture(scope="module")
def tickers(real_data: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = need(real_data / "options" / "deribit")
    paths = sorted(str(p) for p in folder.glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures in {folder}, found {len(paths)}")
    out = tmp_path_factory.mktemp("options") / "tickers.parquet"
    assert main(["options", "--format", "deribit", *paths, "--out", str(out), "--quiet"]) == 0
    return pq.read_table(out).to_pandas()


def _quantiles(x: np.ndarray) -> str:
    q = np.quantile(x, [0.5, 0.95, 0.99, 1.0])
    return f"median {q[0]:.3g}, p95 {q[1]:.3g}, p99 {q[2]:.3g}, max {q[3]:.3g}"


def test_every_ticker_becomes_a_row(tickers, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: ANN001
    assert len(tickers) == 365  # 273 + 92 ticker frames
    assert tickers.symbol.nunique() == 20
    assert set(tickers.underlying) == {"BTC", "ETH"}
    assert (tickers.t_years > 0).all()


def test_mark_iv_reproduces_the_mark_price(tickers) -> None:  # noqa: ANN001
    forward = tickers.underlying_price_nanos.to_numpy() / 1e9
    strike = tickers.strike_price_nanos.to_numpy() / 1e9
    price_coin = black76_price(forward, strike, tickers.t_years.to_numpy(), 0.0, tickers.mark_iv.to_numpy(),
                               (tickers.option_type == "C").to_numpy()) / forward
    err = np.abs(price_coin - tickers.mark_price_nanos.to_numpy() / 1e9)
    print(f"|Black-76(mark_iv) - mark_price| in coin: {_quantiles(err)}")
    assert np.median(err) <= 1e-5


def test_iv_from_the_mark_price_matches_mark_iv(tickers) -> None:  # noqa: ANN001
    kept = tickers[tickers.venue_delta.abs() <= DEEP_ITM_DELTA]
    assert len(kept) >= 140 and set(kept.iv_reason) == {"ok"}
    err_points = np.abs(kept.iv - kept.mark_iv).to_numpy() * 100
    solved = tickers[tickers.iv_reason == "ok"]
    print(f"|iv - mark_iv| in vol points, {len(kept)} tickers with |delta| <= {DEEP_ITM_DELTA}: "
          f"{_quantiles(err_points)}; all {len(solved)} with an IV: "
          f"{_quantiles(np.abs(solved.iv - solved.mark_iv).to_numpy() * 100)}")
    assert np.median(err_points) <= 0.02  # measured 0.0069
    assert np.quantile(err_points, 0.95) <= 0.2  # measured 0.075
    assert err_points.max() <= 0.5  # measured 0.25
    # where no IV exists the reason says why: here a deep in-the-money put marked below intrinsic
    none = tickers[tickers.iv_reason != "ok"]
    assert set(none.iv_reason) == {"below_intrinsic"} and set(none.symbol) == {"ETH-6APR21-2400-P"}
    assert (none.venue_delta.abs() > DEEP_ITM_DELTA).all() and none.iv.isna().all()


def test_delta_matches_the_venues(tickers) -> None:  # noqa: ANN001
    at_mark = np.abs(tickers.delta_at_mark_iv - tickers.venue_delta).to_numpy()
    kept = tickers[tickers.venue_delta.abs() <= DEEP_ITM_DELTA]
    at_ours = np.abs(kept.delta - kept.venue_delta).to_numpy()
    print(f"|delta - venue delta| at mark_iv (all {len(tickers)}): {_quantiles(at_mark)}; "
          f"at our iv ({len(kept)} kept): {_quantiles(at_ours)}")
    assert np.median(at_mark) <= 1e-5 and at_mark.max() <= 2e-4  # Deribit prints 5 decimals
    assert np.median(at_ours) <= 2e-5 and at_ours.max() <= 1e-3


def test_older_ticker_shapes_match_tardis_normalization(real_data: Path) -> None:
    """Deribit option tickers of 2020 (an expired one among them) and 2024 (linear USDC options) from
    tardis-node's mapper tests, against Tardis's own normalized fields."""
    folder = real_data / "derivatives" / "tardis_normalization"
    path = need(folder / "tardis_node_mapper_pairs_derivatives_options.jsonl")
    pairs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pairs = [p for p in pairs if isinstance(p.get("input"), dict)
             and str(p["input"].get("params", {}).get("channel", "")).startswith("ticker.")
             and p["input"]["params"]["channel"].endswith(("-C.raw", "-P.raw"))]
    assert len(pairs) >= 5
    decoder = DeribitTickerDecoder()
    for i, pair in enumerate(pairs):
        decoder.feed(CaptureLine(i, RECV, "", json.dumps(pair["input"]).encode(), f"tardis:{i}"))
    rows = decoder.flush(0, "tardis").tables["option_ticker"].to_pylist()
    assert len(rows) == len(pairs)
    for row, pair in zip(rows, pairs, strict=True):
        want = next(e for e in pair["expected"] if e["type"] == "option_summary")
        assert row["symbol"].upper() == want["symbol"]  # Tardis upper-cases: XRP_USDC-...-1D02-C
        assert row["option_type"] == {"call": "C", "put": "P"}[want["optionType"]]
        assert row["strike_price_nanos"] == round(want["strikePrice"] * 1e9)
        assert np.datetime64(row["expiry_ns"], "ns") == np.datetime64(want["expirationDate"].rstrip("Z"))
        assert np.datetime64(row["ts_event_ns"], "ns") == np.datetime64(want["timestamp"].rstrip("Z"))
        assert row["underlying_price_nanos"] == round(want["underlyingPrice"] * 1e9)
        assert row["mark_iv"] == pytest.approx(want["markIV"] / 100)
        assert row["venue_delta"] == pytest.approx(want["delta"])


@pytest.mark.parametrize("name", ["nautilus_ws_trades_option_combo.json",
                                  "nautilus_http_get_last_trades_option_combo.json"])
def test_combo_leg_iv_from_the_leg_price(real_data: Path, name: str) -> None:
    """README oracle for the nautilus messages: a combo trade's legs carry Deribit's ``iv`` of the leg
    price. Black-76 on F = the leg's ``index_price`` (these legs expire within a day, so the forward
    is the index), r = 0, 08:00 UTC expiry, reproduces it to 0.01 vol points (its print precision)."""
    msg = json.loads(need(real_data / "options" / "deribit" / name).read_text())
    trades = msg["params"]["data"] if "params" in msg else msg["result"]["trades"]
    legs = [leg for trade in trades for leg in trade["legs"]]
    assert len(legs) == 2
    for leg in legs:
        option = parse_option_name(leg["instrument_name"])
        forward, strike = leg["index_price"], option.strike_nanos / 1e9
        t_years = (option.expiry_ns - leg["timestamp"] * 1_000_000) / NS_PER_YEAR
        price = leg["price"] * forward
        iv, reason = black76_implied_vol(price, forward, strike, t_years, 0.0, option.is_call)
        print(f"{leg['instrument_name']}: iv {float(iv) * 100:.3f} vol points, venue {leg['iv']}")
        assert reason == 0 and abs(float(iv) * 100 - leg["iv"]) <= 0.015
