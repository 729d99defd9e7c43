"""The same damage gets the same reject reason on every derivatives decoder, as on the book venues
(tests/venues/test_reject_reasons.py): each damaged frame is exactly one ``rejected`` row, never a
traceback and never a row of a record."""

from __future__ import annotations

from pathlib import Path

import pytest

from tapeflow.derivatives import decode
from tapeflow.venues.base import merge
from tests.venues.test_reject_reasons import DAMAGE, Shape, _good

# a liquidation (Deribit: a ticker, its mark as the price and its open interest as the size)
SHAPES = {
    "binance-futures": Shape(
        '{{"stream":"btcusdt@forceOrder","data":{{"e":"{type}","E":1,"o":{{"s":"BTCUSDT","S":"SELL",'
        '"o":"LIMIT","q":{size},"p":{price},"T":1568014460893}}}}}}',
        "forceOrder",
        '"100.5"',
        '"0.1"',
        '"p":"100.5",',
    ),
    "bybit": Shape(
        '{{"topic":"{type}.BTCUSDT","type":"snapshot","ts":1,"data":{{"updatedTime":1673251091822,'
        '"symbol":"BTCUSDT","side":"Buy","size":{size},"price":{price}}}}}',
        "liquidation",
        '"100.5"',
        '"0.1"',
        ',"price":"100.5"',
    ),
    "okx": Shape(
        '{{"arg":{{"channel":"{type}","instType":"SWAP"}},"data":[{{"details":[{{"bkPx":{price},'
        '"side":"buy","sz":{size},"ts":"1680173247614"}}],"instId":"BTC-USDT-SWAP"}}]}}',
        "liquidation-orders",
        '"100.5"',
        '"0.1"',
        '"bkPx":"100.5",',
    ),
    "bitmex": Shape(
        '{{"table":"{type}","action":"insert","data":[{{"orderID":"x","symbol":"XBTUSD","side":"Buy",'
        '"price":{price},"leavesQty":{size}}}]}}',
        "liquidation",
        "100.5",
        "1",
        '"price":100.5,',
    ),
    "deribit": Shape(
        '{{"jsonrpc":"2.0","method":"subscription","params":{{"channel":"{type}.BTC-PERPETUAL.raw",'
        '"data":{{"timestamp":1564617604229,"instrument_name":"BTC-PERPETUAL","mark_price":{price},'
        '"open_interest":{size}}}}}}}',
        "ticker",
        "100.5",
        "66128281",
        '"mark_price":100.5,',
    ),
}


def _decode(tmp_path: Path, fmt: str, frame: str) -> dict:
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text(f"1700000000000000000 {frame}\n")
    return merge(list(decode(fmt, [path])))


@pytest.mark.parametrize("fmt", sorted(SHAPES))
def test_the_undamaged_frame_decodes(tmp_path: Path, fmt: str) -> None:
    tables = _decode(tmp_path, fmt, _good(SHAPES[fmt]))
    assert "rejected" not in tables
    record, column = (
        ("mark_price", "mark_price_nanos") if fmt == "deribit" else ("liquidation", "price_nanos")
    )
    assert tables[record].column(column).to_pylist() == [100_500_000_000]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("fmt", sorted(SHAPES))
def test_each_damage_has_one_reason_on_every_decoder(tmp_path: Path, fmt: str, damage: str) -> None:
    make, reason = DAMAGE[damage]
    frame = make(SHAPES[fmt])
    assert frame != _good(SHAPES[fmt])
    tables = _decode(tmp_path, fmt, frame)
    assert set(tables) == {"rejected"}, tables
    rejected = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rejected] == [reason], rejected
    assert rejected[0]["raw"] == frame.encode() and rejected[0]["location"] == f"{fmt}.jsonl:1"
