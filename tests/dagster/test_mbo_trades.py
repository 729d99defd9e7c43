"""Trades derived from MBO order events equal what the vendor derives (Databento's trades schema).

Oracles: Databento ships an ICE Brent MBO fixture together with the trades file it derives from
the same feed; and on the CME ES MBO day, the trades and 1-minute bars are rebuilt here in plain
Python from the ``T`` records as ``databento_dbn`` reads them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import databento_dbn
import pytest
import zstandard

from tests.conftest import need

FIXTURES = "databento/fixtures/databento-python/IFEU.IMPACT"
ES = "databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
MINUTE_NS = 60_000_000_000


def _records(path: Path) -> list:
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    decoder = databento_dbn.DBNDecoder()
    decoder.write(raw)
    return decoder.decode()[1:]


@pytest.mark.realdata
def test_derived_trades_equal_databentos_trades_file(real_data: Path) -> None:
    from tapeflow.derived.trades import trades_from_order_events
    from tapeflow.venues.databento.parse import decode_all

    mbo, trades = need(real_data / FIXTURES / "test_data.mbo.dbn.zst"), need(real_data / FIXTURES /
                                                                              "test_data.trades.dbn.zst")
    raw_trades = _records(trades)
    assert sum(r.action == databento_dbn.Action.TRADE for r in _records(mbo)) == len(raw_trades) == 4
    derived = trades_from_order_events(decode_all([mbo])["order_event"])
    assert derived.num_rows == 4
    assert derived.equals(decode_all([trades])["trade"])


@pytest.mark.realdata
def test_es_trades_and_minute_bars_from_the_mbo_day(real_data: Path) -> None:
    from tapeflow.derived.bars import time_bars
    from tapeflow.derived.trades import trades_from_order_events
    from tapeflow.venues.databento.parse import decode_all

    path = need(real_data / ES)
    raw = [r for r in _records(path) if isinstance(r, databento_dbn.MBOMsg)
           and r.action == databento_dbn.Action.TRADE]
    trades = trades_from_order_events(decode_all([path])["order_event"])
    assert trades.num_rows == len(raw) == 2_973
    assert trades.column("sequence").to_pylist() == [r.sequence for r in raw]
    assert trades.column("ts_recv_ns").to_pylist() == [r.ts_recv for r in raw]
    assert trades.column("price_nanos").to_pylist() == [r.price for r in raw]
    sides = Counter(chr(s) for s in trades.column("aggressor_side").to_pylist())
    assert sides == Counter(str(r.side.value) for r in raw) == {"B": 1_542, "A": 1_430, "N": 1}

    # independent 1-minute OHLCV by venue time, trades in feed order
    expected: dict[int, list[int]] = {}
    for r in raw:
        minute = r.ts_event // MINUTE_NS * MINUTE_NS
        bar = expected.setdefault(minute, [r.price, r.price, r.price, r.price, 0])
        bar[1], bar[2], bar[3] = max(bar[1], r.price), min(bar[2], r.price), r.price
        bar[4] += r.size * 1_000_000_000
    bars = time_bars(trades, "1m").to_pylist()
    assert len(bars) == len(expected) == 60  # the first hour of the session
    assert {b["ts_event_ns"]: [b["open_price_nanos"], b["high_price_nanos"], b["low_price_nanos"],
                               b["close_price_nanos"], b["volume_nanos"]] for b in bars} == expected
