"""The Binance USD-M BTCUSDT capture (6 minutes of 2024-08-08) through the trades suite.

The trades are judged against the venue's own bookTicker BBO prevailing at capture time. The
expected counts come from the raw capture lines, parsed here with ``json`` and ``Decimal``.
"""

from __future__ import annotations

import bisect
import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from quality import QualityConfig, run_suite
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

CAPTURE = "binance/usdm_btcusdt_20240808.gz"


@pytest.fixture(scope="module")
def capture(real_data: Path):
    path = need(real_data / CAPTURE)
    trades, tickers = [], []
    with gzip.open(path, "rt") as f:
        for line in f:
            recv, _, payload = line.partition(" ")
            msg = json.loads(payload)
            stream, data = msg.get("stream", ""), msg.get("data", {})
            if stream.endswith("@trade"):
                trades.append((int(recv), int(data["t"]), Decimal(data["p"])))
            elif stream.endswith("@bookTicker"):
                tickers.append((int(recv), Decimal(data["b"]), Decimal(data["a"])))
    tables = merge(list(get_format("binance").decode([path])))
    return tables, trades, tickers


def _outside(trades, tickers, tolerance_bps: Decimal) -> int:
    """Trades further than the tolerance outside the last bookTicker received at or before them."""
    recv = [t[0] for t in tickers]
    count = 0
    for t_recv, _, price in trades:
        i = bisect.bisect_right(recv, t_recv) - 1
        if i < 0:
            continue
        _, bid, ask = tickers[i]
        gap = max(bid - price, price - ask, Decimal(0))
        count += gap / price * 10_000 > tolerance_bps
    return count


@pytest.mark.realdata
def test_binance_trades_against_the_book_ticker(capture):
    tables, trades, tickers = capture
    ids = [t[1] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # the raw trade ids are consecutive
    result = run_suite("trades", tables["trade"], partition_day="2024-08-08", book=tables["quote"])
    assert result.row_count == len(trades) == 21_313
    assert result.passed, [(c.name, c.unexpected_count) for c in result.failed]
    gaps = result.check("sequence_gaps")
    assert gaps.details["contiguous"] is True and gaps.element_count == len(trades)
    assert _outside(trades, tickers, Decimal(10)) == 0

    # a 5 bps band catches the trades printed through a book that lags the fast market
    tight = run_suite("trades", tables["trade"], partition_day="2024-08-08", book=tables["quote"],
                      config=QualityConfig(trade_in_book_tolerance_bps=5.0))
    expected = _outside(trades, tickers, Decimal(5))
    assert expected > 1000
    assert {c.name: c.unexpected_count for c in tight.failed} == {"trade_inside_book": expected}
