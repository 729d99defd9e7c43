"""Binance bookTicker oracle on the whole USD-M capture (replays ~445k book rows).

The count of comparable bookTickers is established here from the raw file: those whose ``u``
is the ``u`` of a depth diff at or after the snapshot's ``lastUpdateId``.
"""

from __future__ import annotations

from pathlib import Path

from tapeflow.venues.binance.verify import verify
from tests.conftest import need
from tests.venues.test_binance import USDM, _ns_lines


def test_usdm_bookticker_oracle(real_data: Path) -> None:
    path = need(real_data / USDM)
    lines = _ns_lines(path)
    snap = next(m for _, m in lines if "lastUpdateId" in m)
    depth_u = {m["data"]["u"] for _, m in lines if m.get("stream", "").endswith("@depth@0ms")
               and m["data"]["u"] >= snap["lastUpdateId"]}
    comparable = sum(1 for _, m in lines
                     if m.get("stream", "").endswith("@bookTicker") and m["data"]["u"] in depth_u)
    chain, ticker = verify([path])
    assert chain.line() == "verified: 6547 of 6547 binance depth messages chained" and chain.passed
    assert comparable == 629
    assert (ticker.ok, ticker.total, ticker.failures) == (comparable, comparable, [])
