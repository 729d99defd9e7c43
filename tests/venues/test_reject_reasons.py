"""The same damage gets the same reject reason on every JSON venue.

Each venue gets one trade in its own message shape, then the same nine classes of damage; every
damaged frame must become exactly one ``rejected`` row, and its reason is the one this table
expects for the class, on every venue. The venues decode through the registry, so what is
tested is what ``tapeflow ingest`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.wire.rejects import Reason


@dataclass(frozen=True)
class Shape:
    """A venue's trade frame: ``frame`` with ``{type}``, ``{price}`` and ``{size}`` to fill.

    ``price``/``size`` are the JSON values as the venue sends them (strings on most venues);
    ``required`` is the text to delete for a missing required field.
    """

    frame: str
    type: str
    price: str
    size: str
    required: str


SHAPES = {
    "binance": Shape('{{"stream":"btcusdt@trade","data":{{"e":"{type}","E":1,"T":1,"s":"BTCUSDT","t":5,'
                     '"p":{price},"q":{size},"m":true}}}}', "trade", '"100.5"', '"0.1"', '"p":"100.5",'),
    "kraken": Shape('[0,[[{price},{size},"1534614057.3216","s","l",""]],"{type}","XBT/USD"]', "trade",
                    '"100.5"', '"0.1"', ',"s","l",""'),
    "okx": Shape('{{"arg":{{"channel":"{type}","instId":"BTC-USDT"}},"data":[{{"instId":"BTC-USDT",'
                 '"tradeId":"1","px":{price},"sz":{size},"side":"buy","ts":"1"}}]}}', "trades", '"100.5"',
                 '"0.1"', '"px":"100.5",'),
    "coinbase": Shape('{{"type":"{type}","trade_id":1,"product_id":"BTC-USD","side":"buy","price":{price},'
                      '"size":{size},"time":"2021-04-17T00:00:00.000000Z"}}', "match", '"100.5"', '"0.1"',
                      '"price":"100.5",'),
    "bybit": Shape('{{"topic":"{type}.BTCUSDT","data":[{{"T":1,"s":"BTCUSDT","S":"Buy","v":{size},'
                   '"p":{price},"i":"a"}}]}}', "publicTrade", '"100.5"', '"0.1"', ',"p":"100.5"'),
    "kucoin": Shape('{{"type":"message","topic":"/market/match:BTC-USDT","subject":"{type}","data":'
                    '{{"symbol":"BTC-USDT","side":"buy","tradeId":"1","price":{price},"size":{size},'
                    '"sequence":"1","time":"1"}}}}', "trade.l3match", '"100.5"', '"0.1"', '"price":"100.5",'),
    "bitmex": Shape('{{"table":"{type}","action":"insert","data":[{{"timestamp":"2021-04-17T00:00:00.000Z",'
                    '"symbol":"XBTUSD","side":"Buy","size":{size},"price":{price},"trdMatchID":"x"}}]}}',
                    "trade", "100.5", "1", ',"price":100.5'),
}


def _good(s: Shape, **override: str) -> str:
    return s.frame.format(**({"type": s.type, "price": s.price, "size": s.size} | override))


def _negative(s: Shape) -> str:
    return _good(s, size=s.size.replace('"', '"-', 1) if s.size.startswith('"') else "-" + s.size)


def _oversized(s: Shape) -> str:
    digits = "99999999999999999999"  # 1e20: beyond int64 once in 1e-9 units
    return _good(s, price=f'"{digits}"' if s.price.startswith('"') else digits)


# damage class -> (how to make it from a venue's shape, the one reason every venue gives it)
DAMAGE = {
    "truncated JSON": (lambda s: _good(s)[:-6], Reason.TRUNCATED),
    "invalid JSON": (lambda s: _good(s)[:1] + "x" + _good(s)[1:], Reason.BAD_JSON),
    "non-object frame": (lambda s: '"a string, not a message"', Reason.BAD_SHAPE),
    "NaN price": (lambda s: _good(s, price="NaN"), Reason.BAD_NUMBER),
    "Infinity size": (lambda s: _good(s, size="Infinity"), Reason.BAD_NUMBER),
    "number of the wrong type": (lambda s: _good(s, price="true"), Reason.BAD_NUMBER),
    "negative size": (_negative, Reason.NEGATIVE),
    "missing required field": (lambda s: _good(s).replace(s.required, "", 1), Reason.MISSING_FIELD),
    "unknown message type": (lambda s: _good(s, type="mystery"), Reason.UNKNOWN_MESSAGE),
    "oversized number": (_oversized, Reason.OUT_OF_RANGE),
}


def _decode(tmp_path: Path, venue: str, frame: str) -> dict:
    path = tmp_path / f"{venue}.jsonl"
    path.write_text(f"1700000000000000000 {frame}\n")
    return merge(list(get_format(venue).decode([path])))


@pytest.mark.parametrize("venue", sorted(SHAPES))
def test_the_undamaged_frame_is_one_trade(tmp_path: Path, venue: str) -> None:
    tables = _decode(tmp_path, venue, _good(SHAPES[venue]))
    assert "rejected" not in tables
    assert tables["trade"].num_rows == 1
    assert tables["trade"].column("price_nanos").to_pylist() == [100_500_000_000]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("venue", sorted(SHAPES))
def test_each_damage_has_one_reason_on_every_venue(tmp_path: Path, venue: str, damage: str) -> None:
    make, reason = DAMAGE[damage]
    frame = make(SHAPES[venue])
    assert frame != _good(SHAPES[venue])  # the damage changed the frame
    tables = _decode(tmp_path, venue, frame)
    assert "trade" not in tables
    rejected = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rejected] == [reason], rejected
    assert rejected[0]["raw"] == frame.encode() and rejected[0]["location"] == f"{venue}.jsonl:1"


def test_the_reasons_are_a_closed_set(tmp_path: Path) -> None:
    from tapeflow.errors import TapeflowError
    from tapeflow.wire.rejects import Rejects

    rejects = Rejects("x")
    rejects.add(Reason.BAD_JSON, "d", "here", b"raw")
    with pytest.raises(TapeflowError, match="not one of"):
        rejects.add("made_up_reason", "d", "here", b"raw")
    assert {str(r) for r in Reason} >= {reason for _, reason in DAMAGE.values()}
