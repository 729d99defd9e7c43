"""Deribit instruments mapped to the index they are priced against (``derived.index_symbol``), so the
rows of ``deribit_price_index.<index_name>`` (btc_usd, eth_usd, <coin>_usdc, <coin>_usdt: the
``index_name`` values of Deribit's API reference) join an instrument's marks in the basis.

Oracles: in the two real Deribit websocket captures, every group of tickers the mapping puts under one
index name at one venue time shows one ``index_price`` (Deribit publishes the instrument's price
index in its ticker); and each real ticker of the Tardis pairs (perpetual, futures, options, combos,
a linear USDC option), its index published as a ``deribit_price_index`` frame of the reference's
shape, gives the basis of the ticker's own decimal text once the ticker's own index rows are gone."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.derivatives import decoder
from tapeflow.derivatives import derived as derived_mod
from tapeflow.derivatives.derived import basis, index_symbol, instrument_index, is_option
from tapeflow.venues.base import merge
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.tardis_pairs import PAIRS

MS = 1_000_000
DAY_NS = 86_400 * 10**9


def test_deribit_index_names() -> None:
    assert index_symbol("deribit", "BTC-PERPETUAL") == "btc_usd"
    assert index_symbol("deribit", "ETH-27DEC24") == "eth_usd"
    assert index_symbol("deribit", "BTC-27DEC24-60000-C") == "btc_usd"
    assert index_symbol("deribit", "BTC-FS-30SEP22_PERP") == "btc_usd"  # a future spread (combo)
    assert index_symbol("deribit", "BTC_USDC-PERPETUAL") == "btc_usdc"
    assert index_symbol("deribit", "SOL_USDC-PERPETUAL") == "sol_usdc"
    assert index_symbol("deribit", "BTC_USDT-PERPETUAL") == "btc_usdt"
    assert index_symbol("deribit", "MATIC_USDC-9MAR24-1d02-C") == "matic_usdc"
    assert index_symbol("deribit", "BTC_USDC") is None  # a spot pair: no index of its own
    assert index_symbol("deribit", "btc_usd") is None  # an index name itself
    assert index_symbol("deribit", "-PERPETUAL") is None


def _decode(lines: list[bytes]) -> dict[str, pa.Table]:
    dec = decoder("deribit")
    dec.feed_many([CaptureLine(i + 1, RECV, "", line, f"t:{i}") for i, line in enumerate(lines)])
    return dict(merge([dec.flush(0, "t")]))


@pytest.mark.realdata
def test_one_index_name_is_one_index_in_the_real_captures(real_data: Path) -> None:
    captures = sorted((real_data / "options" / "deribit").glob("cryptofeed_DERIBIT*"))
    if len(captures) < 2:
        pytest.skip(f"the two real Deribit captures are not in {real_data / 'options' / 'deribit'}")
    tables = dict(merge(list(decoder("deribit").run(captures))))
    index = tables["index_price"].to_pylist()
    groups: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
    for r in index:
        groups[(index_symbol("deribit", r["symbol"]), r["ts_event_ns"])][r["symbol"]] = r["index_price_nanos"]
    shared = {k: v for k, v in groups.items() if len(v) >= 2}
    names = {name for name, _ in shared}
    assert names == {"btc_usd", "eth_usd"}, names
    assert len(shared) >= 20  # 20 in the two captures (4 + 16), each of 2 or more instruments
    assert all(len(set(v.values())) == 1 for v in shared.values()), shared
    # (no venue time of the two captures holds both a BTC and an ETH ticker: no cross check there)


_TEXT = json.JSONDecoder(parse_float=Decimal)


def _tardis_tickers(real_data: Path) -> list[bytes]:
    out = []
    for raw in need(real_data / PAIRS).read_bytes().splitlines():
        pair = json.loads(raw)
        given = pair["input"] if isinstance(pair["input"], dict) else {}
        channel = (given.get("params") or {}).get("channel", "")
        if pair["test"] == "map deribit messages" and channel.startswith("ticker."):
            out.append(json.dumps(pair["input"], separators=(",", ":")).encode())
    return out


def _index_frame(name: str, price: Decimal, ts_ms: int) -> bytes:
    # deribit_price_index.(index_name) as Deribit's subscription reference shows it
    return json.dumps({"jsonrpc": "2.0", "method": "subscription",
                       "params": {"channel": f"deribit_price_index.{name}",
                                  "data": {"index_name": name, "price": float(price), "timestamp": ts_ms}}},
                      separators=(",", ":")).encode()


@pytest.mark.realdata
@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "unmapped"])
def test_basis_joins_the_published_index(real_data: Path, mapped: bool,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tickers = _tardis_tickers(real_data)
    assert len(tickers) == 10
    frames, want = [], {}
    for raw in tickers:
        data = _TEXT.decode(raw.decode())["params"]["data"]
        name, ts_ms = data["instrument_name"], int(data["timestamp"])
        mark, idx = Decimal(str(data["mark_price"])), Decimal(str(data["index_price"]))
        frames += [raw, _index_frame(index_symbol("deribit", name), idx, ts_ms)]
        want[name] = (ts_ms * MS, float((mark - idx) / idx * 10_000))
    tables = _decode(frames)
    marks, index = tables["mark_price"], tables["index_price"]
    # the tickers' own index rows go: what is left is what deribit_price_index published
    index = index.filter(pc.invert(pc.is_in(index.column("symbol"), pa.array(list(want)))))
    assert sorted(set(index.column("symbol").to_pylist())) == ["btc_usd", "eth_usd", "matic_usdc"]
    if not mapped:
        monkeypatch.setattr(derived_mod, "index_symbol", lambda venue, symbol: None)
    got = {}
    for name, (ts, _) in want.items():
        mine = marks.filter(pc.equal(marks.column("symbol"), name))
        rows = basis(mine, instrument_index(index, "deribit", name), np.array([ts]), max_staleness_ns=DAY_NS)
        if is_option(name):  # an option's mark is its premium (in the coin on Deribit): no basis row
            assert rows.num_rows == 0, name
            continue
        got[name] = rows.column("basis_bps")[0].as_py()
    want = {k: v for k, v in want.items() if not is_option(k)}
    assert len(want) >= 3, sorted(want)  # futures and perpetuals keep a basis
    if mapped:
        assert got == pytest.approx({k: v for k, (_, v) in want.items()}, rel=1e-12, abs=1e-9)
    else:
        assert all(math.isnan(v) for v in got.values())
