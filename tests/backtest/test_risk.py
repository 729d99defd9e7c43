"""Risk measures against values computed by hand (in the comments), never by the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tapeflow.backtest import risk
from tapeflow.errors import ConfigError

PNL = np.array([1.0, -2.0, 3.0, -4.0, 2.0])  # mean 0, sum of squares 34, sample var 34/4 = 8.5


def test_sharpe_and_sortino_by_hand():
    # mean 0 -> both 0
    assert risk.sharpe(PNL) == 0.0
    x = np.array([1.0, 2.0, 3.0, -2.0])
    # mean 1, sample std sqrt(((0)^2+1+4+9)/3) = sqrt(14/3); annualized over 4 periods: * 2
    assert risk.sharpe(x, 4) == pytest.approx(1 / math.sqrt(14 / 3) * 2)
    # downside deviation sqrt((0+0+0+4)/4) = 1 -> sortino = 1 * sqrt(4) = 2
    assert risk.sortino(x, 4) == pytest.approx(2.0)
    assert math.isnan(risk.sortino(np.array([1.0, 2.0])))
    assert math.isnan(risk.sharpe(np.array([1.0])))


def test_max_drawdown_by_hand():
    # peaks 1, 3, 3, 3, 4; falls 0, 0, 2, 1, 0 (the 3 -> 1 fall is the largest)
    assert risk.max_drawdown(np.array([1.0, 3.0, 1.0, 2.0, 4.0])) == 2.0
    assert risk.max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0


def test_historical_var_cvar_by_hand():
    # sorted: -4, -2, 1, 2, 3; the 5% quantile at position 0.05 * 4 = 0.2:
    # -4 + 0.2 * (-2 - -4) = -3.6 -> VaR 3.6; the tail <= -3.6 is {-4}: CVaR 4
    assert risk.var_historical(PNL, 0.95) == pytest.approx(3.6)
    assert risk.cvar_historical(PNL, 0.95) == pytest.approx(4.0)
    # 1% at position 0.04: -4 + 0.04 * 2 = -3.92
    assert risk.var_historical(PNL, 0.99) == pytest.approx(3.92)
    assert risk.cvar_historical(PNL, 0.99) == pytest.approx(4.0)
    x = np.arange(1.0, 101.0) - 50.0  # -49 .. 50; 5% position 4.95: -45 + 0.95 = -44.05
    assert risk.var_historical(x, 0.95) == pytest.approx(44.05)
    # tail <= -44.05: -49..-45, mean -47
    assert risk.cvar_historical(x, 0.95) == pytest.approx(47.0)


def test_parametric_var_cvar_by_hand():
    # mu 0, sigma sqrt(8.5) = 2.915476; z95 = 1.644854, z99 = 2.326348
    sigma = math.sqrt(8.5)
    assert risk.var_parametric(PNL, 0.95) == pytest.approx(1.6448536 * sigma, rel=1e-6)
    assert risk.var_parametric(PNL, 0.99) == pytest.approx(2.3263479 * sigma, rel=1e-6)
    # phi(z95) = 0.1031356, / 0.05 = 2.062713; phi(z99) = 0.0266521, / 0.01 = 2.665214
    assert risk.cvar_parametric(PNL, 0.95) == pytest.approx(2.0627128 * sigma, rel=1e-6)
    assert risk.cvar_parametric(PNL, 0.99) == pytest.approx(2.6652142 * sigma, rel=1e-6)
    shifted = PNL + 1.0  # a positive mean lowers both by 1
    assert risk.var_parametric(shifted, 0.95) == pytest.approx(1.6448536 * sigma - 1.0, rel=1e-6)


def test_bad_level_is_a_clear_error():
    with pytest.raises(ConfigError, match="VaR level"):
        risk.var_historical(PNL, 95)


def test_pnl_breakdown_by_hand():
    # buy 2 @ 10, buy 2 @ 12 (avg 11), sell 3 @ 13: realized 3 * 2 = 6 (a win),
    # sell 2 @ 9: closes 1 at 9 - 11 = -2 (a loss), opens short 1 @ 9; mark 8: unrealized 1
    side = np.array([1, 1, -1, -1])
    price = np.array([10.0, 12.0, 13.0, 9.0])
    qty = np.array([2.0, 2.0, 3.0, 2.0])
    br = risk.pnl_breakdown(side, price, qty, mark=8.0)
    assert br.realized == pytest.approx(4.0)
    assert br.unrealized == pytest.approx(1.0)
    assert br.position == pytest.approx(-1.0)
    assert br.avg_cost == pytest.approx(9.0)
    assert (br.closing_fills, br.winning_fills) == (2, 1)
    assert br.hit_rate == 0.5
    # cash view: -20 - 24 + 39 + 18 = 13, position -1 at 8 -> equity 5 = realized + unrealized
    assert br.realized + br.unrealized == pytest.approx(5.0)
