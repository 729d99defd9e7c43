"""KuCoin decoder: chain oracle on the real capture (counts established here), sync rules, rejects."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.book.l2 import replay_l2
from tapeflow.schemas.records import ASK, BID, F_GAP, F_SUPERSEDED
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.kucoin.parse import KucoinDecoder, decode
from tests.conftest import need

SUB_NANO = re.compile(r'"\d*\.\d{10,}"')  # a decimal string with more than 9 decimals


def _decode(paths: list[Path], **kw) -> tuple[KucoinDecoder, dict[str, pa.Table]]:
    dec = KucoinDecoder(**kw)
    return dec, merge(list(dec.run(paths)))


def _received(path: Path) -> list[tuple[str, dict]]:
    out = []
    for line in path.read_text().splitlines():
        head, _, body = line.partition(": ")
        if body and " " not in head:
            out.append((body, json.loads(body)))
    return out


def _inexact_decoded_field(m: dict) -> bool:
    """Whether a number the decoder reads (not e.g. the ticker's last trade) has more than 9 decimals."""
    d, subject = m.get("data", {}), m.get("subject")
    if subject == "trade.l2update":
        texts = [x for side in d["changes"].values() for row in side for x in row[:2]]
    elif subject == "trade.ticker":
        texts = [d["bestBid"], d["bestBidSize"], d["bestAsk"], d["bestAskSize"]]
    elif subject == "trade.l3match":
        texts = [d["price"], d["size"]]
    else:
        return False
    return any(SUB_NANO.fullmatch(json.dumps(t)) for t in texts)


@pytest.fixture(scope="module")
def capture(real_data: Path) -> tuple[Path, Path]:
    return need(real_data / "cryptofeed/KUCOIN.ws.1.0"), need(real_data / "cryptofeed/KUCOIN.http.0.0")


def test_registry_names_kucoin() -> None:
    assert get_format("kucoin").decode is decode


def test_chain_oracle_on_the_capture(capture: tuple[Path, Path]) -> None:
    ws, http = capture
    snaps: dict[str, int] = {}
    inexact_snaps = 0
    for line in http.read_text().splitlines():
        if line.strip():
            url, _, body = line.partition(": ")
            symbol = url.split("symbol=")[1].split(" ")[0]
            if SUB_NANO.search(body):
                inexact_snaps += 1  # a level with more than 9 decimals: the snapshot is rejected
            else:
                snaps[symbol] = int(json.loads(body)["data"]["sequence"])
    frames = _received(ws)
    updates = [(raw, m["data"]) for raw, m in frames if m.get("subject") == "trade.l2update"]
    after = [(raw, d) for raw, d in updates if d["symbol"] in snaps and d["sequenceEnd"] > snaps[d["symbol"]]]
    assert not any(SUB_NANO.search(raw) for raw, _ in after)
    report = get_format("kucoin").verify([ws, http])[0]
    assert report.line() == f"verified: {len(after)} of {len(after)} kucoin l2 updates chained"
    assert report.passed and len(after) == 966 and len(snaps) == 5

    _, tables = _decode([ws, http])
    reasons = tables["rejected"].column("reason").to_pylist()
    inexact_frames = sum(1 for _, m in frames if _inexact_decoded_field(m))
    assert reasons.count("bad_number") == inexact_frames + inexact_snaps
    assert reasons.count("unsupported_channel") == sum(
        1 for _, m in frames if str(m.get("subject", "")).startswith("trade.candles"))
    assert len(reasons) == reasons.count("bad_number") + reasons.count("unsupported_channel")


def test_exact_trade_values(capture: tuple[Path, Path]) -> None:
    ws, http = capture
    raw, first = next((raw, m["data"]) for raw, m in _received(ws)
                      if m.get("subject") == "trade.l3match" and not SUB_NANO.search(raw))
    _, tables = _decode([ws, http])
    t = tables["trade"].slice(0, 1).to_pylist()[0]
    assert t["trade_id"] == first["tradeId"] and t["sequence"] == int(first["sequence"])
    assert t["ts_event_ns"] == int(first["time"])
    assert t["aggressor_side"] == (BID if first["side"] == "buy" else ASK)
    whole, _, frac = first["price"].partition(".")
    assert t["price_nanos"] == int(whole) * 10**9 + int(frac.ljust(9, "0") or 0)


def _cf(path: Path, lines: list[tuple[float, str | None, object]]) -> Path:
    out = []
    for ts, url, body in lines:
        text = body if isinstance(body, str) else json.dumps(body)
        out.append(f"{url} -> {ts}: {text}" if url else f"{ts}: {text}")
    path.write_text("\n".join(out) + "\n")
    return path


def _upd(start: int, end: int, asks: list, bids: list | None = None, sym: str = "X-USDT") -> dict:
    return {"type": "message", "subject": "trade.l2update", "topic": f"/market/level2:{sym}",
            "data": {"symbol": sym, "sequenceStart": start, "sequenceEnd": end,
                     "changes": {"asks": asks, "bids": bids or []}}}


def _snap_line(ts: float, seq: int, sym: str = "X-USDT") -> tuple[float, str, dict]:
    return (ts, f"https://api.kucoin.com/api/v3/market/orderbook/level2?symbol={sym}",
            {"code": "200000", "data": {"time": 1, "sequence": str(seq),
                                        "bids": [["9", "1"]], "asks": [["11", "1"]]}})


def test_bridging_update_supersedes_its_old_changes_and_gaps_resync(tmp_path: Path) -> None:
    lines = [
        (1.0, None, _upd(8, 10, [["12", "1", "8"], ["13", "1", "9"], ["14", "2", "10"]])),
        _snap_line(1.1, 9),
        (1.2, None, _upd(11, 11, [["0", "0", "11"]])),     # sequence-only change: no row
        (1.3, None, _upd(12, 12, [["12", "0", "12"]])),     # delete
        (1.4, None, _upd(14, 14, [["15", "3", "14"]])),     # 13 is missing: gap
        _snap_line(1.5, 14),
        (1.6, None, _upd(15, 15, [], [["10", "4", "15"]])),
    ]
    dec, tables = _decode([_cf(tmp_path / "k.ws", lines)])
    d = tables["book_delta"]
    assert d.column("sequence").to_pylist() == [9, 9, 9, 8, 9, 10, 12, 14, 14, 14, 14, 15]
    flags = d.column("flags").to_pylist()
    assert [bool(f & F_SUPERSEDED) for f in flags[3:6]] == [True, True, False]
    assert [i for i, f in enumerate(flags) if f & F_GAP] == [7]
    assert replay_l2(d, levels=1).bbo["status"].tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0]
    # the bridge (8..10), the sequence-only 11 and the delete 12 chain; 14 does not; 15 bridges the second
    assert (dec.stats.checked, dec.stats.chained) == (5, 4)


def test_bad_frames_become_rejects(tmp_path: Path) -> None:
    good = json.dumps(_upd(1, 1, [["1", "1", "1"]]))
    lines = [
        (1.0, None, good[:-9]),
        (1.1, None, json.dumps(_upd(2, 2, [["1", "-2", "2"]]))),
        (1.2, None, json.dumps(_upd(3, 3, [["0.00000000012", "1", "3"]]))),
        (1.3, None, {"type": "message", "subject": "trade.weird", "topic": "/x", "data": {}}),
        (1.4, None, json.dumps(_upd(4, 4, [["1", "1", "4"]], sym="Y-USDT"))),
        (1.5, None, {"type": "error", "code": 404, "data": "topic not found"}),
        (1.6, None, json.dumps(_upd(5, 5, [["1", "1"]]))),
        (1.7, None, {"type": "message", "subject": "trade.l2update", "data": {"symbol": "X-USDT"}}),
    ]
    _, tables = _decode([_cf(tmp_path / "bad.ws", lines)], symbols=["X-USDT"])
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == ["truncated", "negative", "bad_number", "unknown_message",
                                          "unknown_symbol", "venue_error", "bad_shape", "missing_field"]
    assert [r["location"] for r in rej] == [f"bad.ws:{i}" for i in range(1, 9)]
    assert "'0.00000000012'" in rej[2]["detail"] and "sequenceStart" in rej[7]["detail"]
