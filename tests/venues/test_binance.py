"""Binance decoder and oracles on the real captures, with counts established independently here."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.schemas.records import BID, F_LAST, F_SNAPSHOT, L2_CLEAR
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.binance.parse import BinanceDecoder, decode
from tapeflow.venues.binance.verify import verify
from tests.conftest import need

RESYNC = 1
USDM = "binance/usdm_btcusdt_20240808.gz"


def _ns_lines(path: Path) -> list[tuple[int, dict]]:
    with gzip.open(path, "rt") as fh:
        return [(int(ts), json.loads(body)) for ts, body in (line.rstrip("\n").split(" ", 1) for line in fh)]


def _cf_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("wss://") and "<->" in line:
            continue
        head, _, body = line.partition(": ")
        if body and " <- " not in head:
            out.append(json.loads(body))
    return out


def _decode(paths: list[Path], **kw) -> tuple[BinanceDecoder, dict[str, pa.Table]]:
    dec = BinanceDecoder(**kw)
    return dec, merge(list(dec.run(paths)))


@pytest.fixture(scope="module")
def usdm(real_data: Path) -> tuple[Path, list[tuple[int, dict]], BinanceDecoder, dict[str, pa.Table]]:
    """The USD-M capture: path, its lines parsed by json here, and one decode pass."""
    path = need(real_data / USDM)
    dec, tables = _decode([path])
    return path, _ns_lines(path), dec, tables


def test_registry_names_binance() -> None:
    assert get_format("binance").decode is decode
    assert get_format("binance").verify is verify


def test_usdm_capture_counts_and_chain(usdm) -> None:
    _, lines, dec, tables = usdm
    snap = next(m for _, m in lines if "lastUpdateId" in m)
    depth = [m["data"] for _, m in lines if m.get("stream", "").endswith("@depth@0ms")]
    applied = [d for d in depth if d["u"] >= snap["lastUpdateId"]]
    n_levels = sum(len(d["b"]) + len(d["a"]) for d in depth) + len(snap["bids"]) + len(snap["asks"]) + 1
    assert (dec.stats.checked, dec.stats.chained, dec.stats.gaps) == (len(applied), len(applied), [])
    assert len(applied) == 6547
    assert tables["book_delta"].num_rows == n_levels
    assert tables["trade"].num_rows == sum(1 for _, m in lines if m.get("stream", "").endswith("@trade"))
    assert tables["quote"].num_rows == sum(1 for _, m in lines if m.get("stream", "").endswith("@bookTicker"))
    assert "rejected" not in tables
    assert set(tables["book_delta"].column("venue").to_pylist()) == {"binance-usdm"}


def test_usdm_first_trade_exact(usdm) -> None:
    tables = usdm[3]
    t = tables["trade"].slice(0, 1).to_pylist()[0]
    # line 3 of the capture: "t":5266583935,"p":"61800.30","q":"0.006","m":false,"T":1723161256322
    assert (t["sequence"], t["trade_id"], t["price_nanos"], t["size_nanos"]) == (
        5266583935, "5266583935", 61_800_300_000_000, 6_000_000)
    assert t["aggressor_side"] == BID
    assert (t["ts_event_ns"], t["ts_recv_ns"]) == (1723161256322_000_000, 1723161255088176367)


def test_usdm_snapshot_rows_precede_the_diff_that_bridges_them(usdm) -> None:
    _, lines, _, tables = usdm
    snap = next(m for _, m in lines if "lastUpdateId" in m)
    d = tables["book_delta"]
    flags = d.column("flags").to_numpy()
    snap_rows = np.flatnonzero(flags & F_SNAPSHOT)
    assert len(snap_rows) == len(snap["bids"]) + len(snap["asks"]) + 1
    first, last = snap_rows[0], snap_rows[-1]
    assert d.column("action")[first].as_py() == L2_CLEAR
    assert flags[last] & F_LAST and not (flags[snap_rows[:-1]] & F_LAST).any()
    seq = d.column("sequence").to_numpy()
    # the bridging diff (U <= lastUpdateId <= u) arrived before the REST body but is written after it
    bridge = next(x["data"] for _, x in lines if "stream" in x and x["data"].get("e") == "depthUpdate"
                  and x["data"]["U"] <= snap["lastUpdateId"] <= x["data"]["u"])
    assert seq[last + 1] == bridge["u"]
    assert (seq[: first] < snap["lastUpdateId"]).all()


def _cryptofeed_expectations(ws: Path, http: Path, *, futures: bool) -> tuple[int, int]:
    snaps = {}
    for line in http.read_text().splitlines():
        if line.strip():
            url, _, body = line.partition(": ")
            snaps[url.split("symbol=")[1].split("&")[0]] = json.loads(body)["lastUpdateId"]
    frames = [f["data"] for f in _cf_lines(ws) if "data" in f]
    applied = [d for d in frames if d.get("e") == "depthUpdate"
               and (d["u"] >= snaps[d["s"]] if futures else d["u"] > snaps[d["s"]])]
    depth_u = {(d["s"], d["u"]) for d in applied}
    tickers = sum(1 for d in frames if "B" in d and "A" in d and (d["s"], d["u"]) in depth_u)
    return len(applied), tickers


def test_cryptofeed_spot_chain_and_tickers(real_data: Path) -> None:
    ws, http = need(real_data / "cryptofeed/BINANCE.ws.1.0"), need(real_data / "cryptofeed/BINANCE.http.0.0")
    chained, tickers = _cryptofeed_expectations(ws, http, futures=False)
    chain, ticker = verify([ws, http])
    assert (chain.ok, chain.total, chain.passed) == (chained, chained, True)
    assert (ticker.ok, ticker.total, ticker.passed) == (tickers, tickers, True)
    assert (chained, tickers) == (172, 26)


def test_cryptofeed_futures_chain_tickers_and_klines(real_data: Path) -> None:
    ws = need(real_data / "cryptofeed/BINANCE_FUTURES.ws.1.0")
    http = need(real_data / "cryptofeed/BINANCE_FUTURES.http.0.0")
    chained, tickers = _cryptofeed_expectations(ws, http, futures=True)
    chain, ticker = verify([ws, http])
    assert (chain.ok, chain.total, chain.passed) == (chained, chained, True)
    assert (ticker.ok, ticker.total, ticker.passed) == (tickers, tickers, True)
    assert (chained, tickers) == (752, 50)
    _, tables = _decode([ws, http])
    frames = [f["data"] for f in _cf_lines(ws) if "data" in f]
    assert tables["trade"].num_rows == sum(1 for d in frames if d.get("e") == "aggTrade")
    reasons = tables["rejected"].column("reason").to_pylist()
    assert reasons == ["unsupported_channel"] * sum(1 for d in frames if d.get("e") == "kline")
    assert set(tables["book_delta"].column("venue").to_pylist()) == {"binance-usdm"}
