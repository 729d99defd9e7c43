"""Replays Tardis's mapper test pairs through the derivatives decoders and compares each pair's
rows with Tardis's normalized output (tests/derivatives/test_tardis_oracle.py).

Tardis's ``derivative_ticker`` is the running state of an instrument (every field's last value);
the records here are one row per value published. The comparison rebuilds that state from the
decoded rows (mark, index, open interest, funding rate, funding time, predicted rate) and checks it
against every ``derivative_ticker`` (and the mark and open interest of every ``option_summary``)
Tardis emitted for the pair; liquidations are compared row by row. ``lastPrice`` comes from trade
and ticker channels these decoders do not read and is not compared.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import msgspec

from tapeflow.derivatives import channel_of, decoder
from tapeflow.schemas.records import BID, UNDEF_TS
from tapeflow.wire.capture import RECV, CaptureLine

PAIRS = "derivatives/tardis_normalization/tardis_node_mapper_pairs_derivatives_options.jsonl"

# the retired OKEx v3 tables these decoders read
_V3 = {
    "swap/funding_rate",
    "swap/mark_price",
    "futures/mark_price",
    "swap/liquidation",
    "futures/liquidation",
}
# Tardis test -> (format, the channels these decoders read)
_OKX = {
    "funding-rate",
    "mark-price",
    "index-tickers",
    "open-interest",
    "liquidation-orders",
    "liquidations",
    *_V3,
}
TESTS = {
    "map binance futures messages": (
        "binance-futures",
        {"markPrice", "forceOrder", "openInterest", "indexPrice"},
    ),
    "map binance delivery messages": (
        "binance-delivery",
        {"markPrice", "forceOrder", "openInterest", "indexPrice"},
    ),
    "map bybit messages": ("bybit", {"tickers", "liquidation", "allLiquidation", "instrument_info"}),
    "map okex-swap messages": ("okx", _OKX),
    "map okex-futures messages": ("okx", _OKX),
    "map okex-options messages": ("okx", _OKX),
    "map deribit messages": ("deribit", {"ticker"}),
    "map bitmex messages": ("bitmex", {"instrument", "liquidation"}),
}


class _Pair(msgspec.Struct):
    test: str
    index: int
    input: msgspec.Raw
    expected: msgspec.Raw


_EXPECTED = msgspec.json.Decoder(float_hook=str)  # Tardis's numbers as their text


def iso_ns(text: str | None) -> int:
    if text is None:
        return UNDEF_TS
    t = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _nanos(value: Any) -> int | None:
    """Tardis's number in nanos; one with more than 9 decimals (an OKX option mark) to the nearest."""
    if value is None:
        return None
    return int((Decimal(value) * 1_000_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _rate(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class Outcome:
    """One pair's comparison: ``ok`` when every compared value is equal."""

    test: str
    index: int
    fmt: str
    channel: str
    mine: bool  # a channel these decoders read
    compared: int = 0  # values compared
    problems: list[str] = field(default_factory=list)
    rows: Counter[str] = field(default_factory=Counter)
    rejects: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _State:
    """The running ticker state of each instrument, rebuilt from decoded rows."""

    def __init__(self) -> None:
        self.by_symbol: dict[str, dict[str, Any]] = {}
        self.index_by_name: dict[str, tuple[int, int]] = {}
        self.tick = 0

    def get(self, symbol: str) -> dict[str, Any]:
        # Tardis upper-cases symbols (Deribit's MATIC_USDC-9MAR24-1d02-C); the records keep the venue's
        return self.by_symbol.setdefault(symbol.upper(), {})

    def apply(self, tables: dict[str, Any]) -> None:
        for name, table in tables.items():
            for row in table.to_pylist():
                self.tick += 1
                s = self.get(row["symbol"])
                if name == "mark_price":
                    s["markPrice"] = row["mark_price_nanos"]
                elif name == "index_price":
                    s["indexPrice"] = (self.tick, row["index_price_nanos"])
                    self.index_by_name[row["symbol"].upper()] = (self.tick, row["index_price_nanos"])
                elif name == "open_interest":
                    s["openInterest"] = row["open_interest_nanos"]
                elif name == "funding_rate":
                    s["fundingRate"] = None if math.isnan(row["funding_rate"]) else row["funding_rate"]
                    s["fundingTimestamp"] = row["funding_time_ns"]
                    s["predictedFundingRate"] = (
                        None if math.isnan(row["predicted_rate"]) else row["predicted_rate"]
                    )

    def index(self, symbol: str) -> int | None:
        """The latest index of the instrument: its own, or its index's by name (OKX ``BTC-USDT``
        of ``BTC-USDT-SWAP``, Binance ``BTCUSD`` of ``BTCUSD_200925``), whichever came last."""
        own = self.get(symbol).get("indexPrice")
        names = {symbol.rsplit("-", 1)[0], symbol.split("_")[0]}
        found = [own] + [self.index_by_name.get(n) for n in names if n != symbol]
        found = [f for f in found if f is not None]
        return max(found)[1] if found else None


def replay(root: Path) -> list[Outcome]:
    """Every pair of the tests in :data:`TESTS`, in file order, one decoder per test run."""
    outcomes: list[Outcome] = []
    dec = state = None
    last: tuple[str, int] | None = None
    lines = (root / PAIRS).read_bytes().splitlines()
    for n, raw in enumerate(lines):
        pair = msgspec.json.decode(raw, type=_Pair)
        if pair.test not in TESTS:
            continue
        fmt, channels = TESTS[pair.test]
        if last is None or last[0] != pair.test or pair.index <= last[1]:
            dec, state = decoder(fmt), _State()  # a new run of the test: mappers start empty
        last = (pair.test, pair.index)
        expected = _EXPECTED.decode(pair.expected)
        msg = msgspec.json.decode(pair.input)
        recv_ns = iso_ns(expected[0]["localTimestamp"]) if expected else 0
        out = Outcome(pair.test, pair.index, fmt, channel_of(msg), channel_of(msg) in channels)
        dec.feed(CaptureLine(recv_ns, RECV, "", bytes(pair.input), f"pairs:{n + 1}"))
        chunk = dec.flush(0, "pair")
        tables = dict(chunk.tables)
        rejected = tables.pop("rejected", None)
        if rejected is not None:
            out.rejects = rejected.column("reason").to_pylist()
        out.rows.update({k: t.num_rows for k, t in tables.items()})
        state.apply(tables)
        if out.mine:
            _compare(out, expected, tables, state)
        outcomes.append(out)
    return outcomes


_TICKER_FIELDS = (
    "markPrice",
    "openInterest",
    "fundingRate",
    "fundingTimestamp",
    "predictedFundingRate",
    "indexPrice",
)


def _compare(out: Outcome, expected: list[dict[str, Any]], tables: dict[str, Any], state: _State) -> None:
    marks = (
        {r["symbol"].upper(): r["ts_event_ns"] for r in tables["mark_price"].to_pylist()}
        if "mark_price" in tables
        else {}
    )
    for exp in expected:
        kind, symbol = exp["type"], exp["symbol"]
        if kind in ("derivative_ticker", "option_summary"):
            s = state.get(symbol)
            s.setdefault("timestamp", UNDEF_TS)  # the time Tardis last showed
            fields = _TICKER_FIELDS if kind == "derivative_ticker" else ("markPrice", "openInterest")
            for name in fields:
                want: Any
                if name in ("markPrice", "openInterest"):
                    want, got = _nanos(exp[name]), s.get(name)
                elif name == "indexPrice":
                    want, got = _nanos(exp[name]), state.index(symbol)
                elif name == "fundingTimestamp":
                    want, got = iso_ns(exp[name]), s.get(name, UNDEF_TS)
                else:
                    want, got = _rate(exp[name]), s.get(name)
                out.compared += 1
                if want != got:
                    out.problems.append(f"{symbol} {name}: tardis {exp[name]!r}, decoded {got!r}")
            if symbol in marks:
                # Tardis's ticker time only moves forward: an OKX mark older than the funding-rate
                # push before it (stamped with its capture time) leaves the time as it was
                shown = max(marks[symbol], s["timestamp"])
                out.compared += 1
                if shown != iso_ns(exp["timestamp"]):
                    out.problems.append(
                        f"{symbol} timestamp: tardis {exp['timestamp']}, decoded {marks[symbol]}"
                    )
            s["timestamp"] = iso_ns(exp["timestamp"])
    liqs = [e for e in expected if e["type"] == "liquidation"]
    mine = tables["liquidation"].to_pylist() if "liquidation" in tables else []
    if liqs or mine:
        if len(liqs) != len(mine):
            out.problems.append(f"{len(mine)} liquidations decoded, tardis has {len(liqs)}")
            return
        for exp, row in zip(liqs, mine, strict=True):
            pairs = [
                ("symbol", exp["symbol"], row["symbol"]),
                ("side", exp["side"], "buy" if row["side"] == BID else "sell"),
                ("price", _nanos(exp["price"]), row["price_nanos"]),
                ("amount", _nanos(exp["amount"]), row["size_nanos"]),
                ("timestamp", iso_ns(exp["timestamp"]), row["ts_event_ns"]),
                ("id", exp["id"] or "", row["liquidation_id"]),
            ]
            for name, want, got in pairs:
                out.compared += 1
                if want != got:
                    out.problems.append(f"liquidation {name}: tardis {want!r}, decoded {got!r}")
