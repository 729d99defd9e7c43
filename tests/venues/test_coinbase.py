"""Coinbase decoder on the real capture: counts, uncrossed book oracle, trades, quotes, rejects."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tapeflow.schemas.records import ASK, BID, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_DELETE
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

COINBASE = get_format("coinbase")


def _messages(path: Path) -> list[dict]:
    return [json.loads(ln.split(": ", 1)[1]) for ln in path.read_text().splitlines() if ": {" in ln
            and not ln.startswith("wss://")]


def test_real_book_never_crossed(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    text = path.read_text()
    expected = text.count('"type":"l2update"') + text.count('"type":"snapshot"')
    assert expected == 9729
    (report,) = COINBASE.verify([path])
    assert (report.ok, report.total, report.failures) == (expected, expected, [])
    assert report.line() == "verified: 9729 of 9729 coinbase uncrossed books"


def test_real_rows_match_the_capture(real_data: Path) -> None:
    path = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    msgs = _messages(path)
    snaps = [m for m in msgs if m["type"] == "snapshot"]
    updates = [m for m in msgs if m["type"] == "l2update"]
    matches = [m for m in msgs if m["type"] in ("match", "last_match")]
    tickers = [m for m in msgs if m["type"] == "ticker"]
    tables = merge(list(COINBASE.decode([path])))
    deltas = tables["book_delta"]
    n_snap_levels = sum(len(s["bids"]) + len(s["asks"]) for s in snaps)
    n_changes = sum(len(u["changes"]) for u in updates)
    assert deltas.num_rows == len(snaps) + n_snap_levels + n_changes
    flags = deltas.column("flags").to_pylist()
    assert sum(f & F_LAST != 0 for f in flags) == len(snaps) + len(updates)
    assert sum(f & F_SNAPSHOT != 0 for f in flags) == len(snaps) + n_snap_levels
    assert Counter(deltas.column("action").to_pylist())[L2_CLEAR] == len(snaps) == 10
    assert Counter(deltas.column("action").to_pylist())[L2_DELETE] == sum(
        float(c[2]) == 0 for u in updates for c in u["changes"])
    assert set(deltas.column("sequence").to_pylist()) == {-1}  # level2 has no sequence
    assert "rejected" not in tables
    trades = tables["trade"].to_pylist()
    assert len(trades) == len(matches) == 107
    assert [t["aggressor_side"] for t in trades] == [BID if m["side"] == "sell" else ASK for m in matches]
    assert [t["trade_id"] for t in trades] == [str(m["trade_id"]) for m in matches]
    quotes = tables["quote"].to_pylist()
    assert len(quotes) == len(tickers) == 107
    assert quotes[0]["bid_price_nanos"] == 14_755_000_000 and quotes[0]["ask_price_nanos"] == 14_806_000_000
    epoch_s = int(datetime(2021, 4, 17, 16, 43, 30, tzinfo=UTC).timestamp())
    assert quotes[0]["ts_event_ns"] == epoch_s * 10**9 + 244_075_000
    assert quotes[0]["sequence"] == 333938798


def _capture(tmp_path: Path, frames: list[str]) -> Path:
    path = tmp_path / "cb.jsonl"
    path.write_text("".join(f"{1_700_000_000_000_000_000 + i} {f}\n" for i, f in enumerate(frames)))
    return path


SNAP = '{"type":"snapshot","product_id":"A-B","bids":[["10.0","1"]],"asks":[["11.0","2"]]}'


def _upd(side: str, px: str, size: str) -> str:
    change = json.dumps([[side, px, size]], separators=(",", ":"))
    return f'{{"type":"l2update","product_id":"A-B","changes":{change},"time":"2021-04-17T16:43:37.075687Z"}}'


def test_crossed_book_is_reported(tmp_path: Path) -> None:
    frames = [SNAP, _upd("buy", "10.5", "1"), _upd("buy", "12.0", "1"), _upd("buy", "12.0", "0")]
    path = _capture(tmp_path, frames)
    (report,) = COINBASE.verify([path])
    assert (report.ok, report.total) == (3, 4)
    assert report.failures and report.failures[0].startswith("A-B: crossed after row 4")


@pytest.mark.parametrize(("frame", "reason"), [
    (_upd("buy", "10.5", "1")[:-5], "truncated"),
    (_upd("buy", "10.5", "1").replace('"1"]', "NaN]"), "bad_number"),
    (_upd("buy", "10.5", "NaN"), "bad_number"),
    (_upd("buy", "10.5", "-1"), "negative"),
    (_upd("hold", "10.5", "1"), "bad_field"),
    (_upd("buy", "10.5", "1").replace("2021-04-17T", "yesterday "), "bad_timestamp"),
    ('{"type":"full_channel_thing","product_id":"A-B"}', "unknown_message"),
])
def test_bad_frames_become_rejects(tmp_path: Path, frame: str, reason: str) -> None:
    tables = merge(list(COINBASE.decode([_capture(tmp_path, [SNAP, frame])])))
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == [reason]
    assert (rej[0]["location"], rej[0]["raw"]) == ("cb.jsonl:2", frame.encode())
    assert tables["book_delta"].num_rows == 3
