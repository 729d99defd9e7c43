"""An index published under its own name joins the basis of the instruments priced against it
(``derived.index_symbol``): OKX ``index-tickers`` ``BTC-USDT`` for ``BTC-USDT-SWAP``, Binance COIN-M
``indexPriceUpdate`` ``BTCUSD`` for ``BTCUSD_PERP``. Proven on the real OKX frames against Tardis's own
``derivative_ticker``, which pairs them the same way, in batch and live."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.derivatives import decoder
from tapeflow.derivatives.derived import basis, index_symbol, instrument_index, is_option
from tapeflow.derivatives.live_derived import DerivedConfig, LiveDerived, batch_derived
from tapeflow.schemas.records import UNDEF_PRICE
from tapeflow.venues.base import merge
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.live_streams import PAIRS, T0, real_frames

S = 1_000_000_000
CONFIG = DerivedConfig(interval_ns=S, max_staleness_ns=86_400 * S, window_ns=3600 * S)


def test_index_names() -> None:
    assert index_symbol("okx", "BTC-USDT-SWAP") == "BTC-USDT"
    assert index_symbol("okx", "FIL-USDT-220325") == "FIL-USDT"
    assert index_symbol("okx", "ETH-USD-211231-9600-C") == "ETH-USD"
    assert index_symbol("okx", "BTC-USDT") is None  # an index (or spot) name itself
    assert index_symbol("binance-coinm", "BTCUSD_PERP") == "BTCUSD"
    assert index_symbol("binance-coinm", "BTCUSD_240927") == "BTCUSD"
    assert index_symbol("binance-usdm", "BTCUSDT") is None  # its mark frames carry the index (`i`)
    assert index_symbol("bybit", "BTC-USDT-SWAP") is None


def _decoded(real_data: Path) -> tuple[list[bytes], dict[str, pa.Table]]:
    frames = real_frames(real_data, "okx")
    dec = decoder("okx")
    dec.feed_many([CaptureLine(T0 + i, RECV, "", f, f"okx:{i}") for i, f in enumerate(frames)])
    return frames, dict(merge([dec.flush(0, "okx")]))


def _tardis_tickers(real_data: Path) -> list[dict]:
    """Tardis's OKX tickers that show both a mark and an index (its index comes from ``index-tickers``)."""
    out = []
    for raw in (real_data / PAIRS).read_bytes().splitlines():
        pair = json.loads(raw)
        if not pair["test"].startswith("map okex"):
            continue
        for row in pair["expected"] or []:
            if row.get("type") == "derivative_ticker" and row["markPrice"] and row["indexPrice"]:
                out.append(row)
    return out


def test_okx_basis_joins_the_index_tickers_as_tardis_does(real_data: Path) -> None:
    need(real_data / PAIRS)
    _, tables = _decoded(real_data)
    assert set(tables["index_price"].column("symbol").to_pylist()) >= {"FIL-USDT", "ETH-USD"}  # index names
    tickers = _tardis_tickers(real_data)
    assert len(tickers) >= 1
    for t in tickers:  # the basis at Tardis's own time, from its instrument's family index
        ts = int(datetime.fromisoformat(t["timestamp"].replace("Z", "+00:00")).timestamp() * 1000) * 1_000_000
        mark = tables["mark_price"].filter(pc.equal(tables["mark_price"].column("symbol"), t["symbol"]))
        index = instrument_index(tables["index_price"], "okx", t["symbol"])
        (r,) = basis(mark, index, np.array([ts]), max_staleness_ns=CONFIG.max_staleness_ns).to_pylist()
        assert r["mark_price_nanos"] == round(t["markPrice"] * 1e9), t
        assert r["index_price_nanos"] == round(t["indexPrice"] * 1e9), t
        want = (t["markPrice"] - t["indexPrice"]) / t["indexPrice"] * 1e4
        assert math.isclose(r["basis_bps"], want, rel_tol=1e-9), (r, want)
    basis_rows = batch_derived(tables, CONFIG)["derivative_basis"]
    rows = {(r["symbol"], r["ts_event_ns"]): r for r in basis_rows.to_pylist()}
    # every OKX basis with prices is (mark - index) / index of an index-tickers value of its family
    index = tables["index_price"].to_pylist()
    priced = [r for r in rows.values() if r["index_price_nanos"] != UNDEF_PRICE]
    assert priced
    for r in priced:
        assert any(i["symbol"] == index_symbol("okx", r["symbol"]) and i["index_price_nanos"] ==
                   r["index_price_nanos"] for i in index), r
        assert math.isclose(r["basis_bps"], (r["mark_price_nanos"] - r["index_price_nanos"])
                            / r["index_price_nanos"] * 1e4, rel_tol=1e-12)


def test_okx_basis_live_equals_batch(real_data: Path) -> None:
    need(real_data / PAIRS)
    frames, _ = _decoded(real_data)
    dec, stage, chunks, items = decoder("okx"), LiveDerived(CONFIG), [], []
    for start in range(0, len(frames), 3):  # micro-batches of three frames, in file order
        dec.feed_many([CaptureLine(T0 + i, RECV, "", f, f"live:{i}")
                       for i, f in enumerate(frames[start:start + 3], start)])
        chunk = dec.flush(0, "live")
        chunks.append(chunk)
        items += stage.update(dict(chunk.tables))
    items += stage.flush()
    live: dict[str, list[pa.Table]] = {}
    for name, table in items:
        live.setdefault(name, []).append(table)
    late = pa.concat_tables(live.pop("rejected")).to_pylist() if "rejected" in live else []
    late_keys = {(r["symbol"], r["ts_event_ns"]) for r in late}
    decoded = merge(chunks)
    accepted = {}
    for name in ("mark_price", "index_price", "open_interest"):
        t = decoded[name]
        keys = zip(t.column("symbol").to_pylist(), t.column("ts_event_ns").to_pylist(), strict=True)
        accepted[name] = t.filter(pa.array([k not in late_keys for k in keys]))
    batch = batch_derived(accepted, CONFIG)
    got = pa.concat_tables(live["derivative_basis"])
    assert sorted(map(repr, got.to_pylist())) == sorted(map(repr, batch["derivative_basis"].to_pylist()))
    assert sum(1 for v in got.column("basis_bps").to_pylist() if not math.isnan(v)) > 0  # NaN before


def test_options_are_told_apart() -> None:
    for option in ("ETH-USD-211231-9600-C", "BTC-27DEC24-60000-P", "BTC-240927-60000-C",
                   "MATIC_USDC-9MAR24-1d02-C"):
        assert is_option(option), option
    for other in ("BTC-USDT-SWAP", "BTC-USD-240927", "ETH-27DEC24", "BTC-PERPETUAL", "BTCUSD_PERP",
                  "ETH-USD"):
        assert not is_option(other), other


def test_the_real_okx_option_has_no_basis_against_its_index(real_data: Path) -> None:
    need(real_data / PAIRS)
    frames, tables = _decoded(real_data)
    option = "ETH-USD-211231-9600-C"
    raw = [json.loads(f) for f in frames if option.encode() in f and b'"mark-price"' in f]
    (mark_px,) = [float(d["markPx"]) for m in raw for d in m["data"]]
    index = [r["index_price_nanos"] / 1e9 for r in tables["index_price"].to_pylist()
             if r["symbol"] == "ETH-USD"]
    # the frame's own evidence: a call is worth at most one underlying coin, so a mark of 3.80 is not
    # in ETH; against an ETH-USD index near 3,800 it is a premium in USD, not a price of ETH
    assert mark_px > 1 and min(index) > 3000
    basis_rows = batch_derived(tables, CONFIG)["derivative_basis"]
    symbols = set(basis_rows.column("symbol").to_pylist())
    assert option in set(tables["mark_price"].column("symbol").to_pylist()) and option not in symbols
    assert symbols  # the futures and swaps of the same frames keep theirs
    # the live stage writes none either
    stage = LiveDerived(CONFIG)
    items = stage.update(tables) + stage.flush()
    live = {s for name, t in items if name == "derivative_basis" for s in t.column("symbol").to_pylist()}
    assert live == symbols
