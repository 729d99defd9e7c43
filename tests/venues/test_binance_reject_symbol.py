"""Binance dead letters name their instrument whenever the frame does (issue 9: they lost it even
with ``"s"`` present, and landed under the empty symbol)."""

from __future__ import annotations

from pathlib import Path

from tapeflow.venues import get_format
from tapeflow.venues.base import merge

BINANCE = get_format("binance")
T0 = 1_723_075_200_000_000_000

FRAMES = [
    # a depth diff with a NaN size: parsed, "s" read before the check failed
    ('{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":1723075200000,"T":1723075200000,'
     '"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1.0","NaN"]],"a":[]}}', "BTCUSDT"),
    # a trade cut short: no JSON, the symbol is still in its text
    ('{"stream":"ethusdt@trade","data":{"e":"trade","E":1723075200000,"s":"ETHUSDT","t":5,"p":"1.0"',
     "ETHUSDT"),
    # a trade without "s": the stream names it
    ('{"stream":"solusdt@trade","data":{"e":"trade","E":1723075200000,"t":5,"p":"x","q":"1","m":true,'
     '"T":1723075200000}}', "SOLUSDT"),
    # nothing names an instrument
    ("not json at all", ""),
]


def test_rejects_keep_the_symbol_the_frame_names(tmp_path: Path) -> None:
    path = tmp_path / "binance.ns"
    path.write_text("".join(f"{T0 + i} {frame}\n" for i, (frame, _) in enumerate(FRAMES)))
    rejected = merge(list(BINANCE.decode([path])))["rejected"].to_pylist()
    assert [r["location"] for r in rejected] == [f"binance.ns:{i + 1}" for i in range(len(FRAMES))]
    assert [r["symbol"] for r in rejected] == [symbol for _, symbol in FRAMES]
