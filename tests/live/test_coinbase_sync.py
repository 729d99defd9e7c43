"""Coinbase live sync on the real capture: rows equal batch rows, trade-id and heartbeat gaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.coinbase.sync import CoinbaseSync
from tapeflow.venues.livesync import GAP, SYNCED
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.live.connb_support import feed, of_symbol, received


@pytest.fixture(scope="module")
def capture(real_data: Path) -> Path:
    return need(real_data / "cryptofeed" / "COINBASE.ws.28.0")


def _msg(line: CaptureLine) -> dict:
    return json.loads(line.payload)


def test_whole_capture_chains_and_rows_equal_batch(capture: Path) -> None:
    lines = received(capture)
    matches = [_msg(ln) for ln in lines
               if b'"type":"match"' in ln.payload or b'"type":"last_match"' in ln.payload]
    anchored: set[str] = set()
    links = 0
    for m in matches:  # a match links when its product was anchored by a last_match or a match before
        links += int(m["type"] == "match" and m["product_id"] in anchored)
        anchored.add(m["product_id"])
    assert links == 97
    sync = CoinbaseSync()
    events = feed(sync, lines)
    assert [e.state for e in events] == [SYNCED] * 10
    assert (sync.stats.links, sync.stats.links_ok) == (links, links)
    live = sync.take()
    batch = merge(list(get_format("coinbase").decode([capture])))
    assert sorted(live) == sorted(batch)
    for name in live:
        assert live[name].to_pylist() == batch[name].to_pylist(), name


def test_missing_trade_id_breaks_the_product_until_its_snapshot(capture: Path) -> None:
    lines = received(capture)
    skl = [i for i, ln in enumerate(lines) if b'"type":"match"' in ln.payload and b'"SKL-USD"' in ln.payload]
    k = skl[5]
    dropped = _msg(lines[k])
    snapshot = next(ln for ln in lines if b'"type":"snapshot"' in ln.payload and b'"SKL-USD"' in ln.payload)
    resync_at = skl[8]
    fresh = CaptureLine(lines[resync_at].recv_ns, RECV, "", snapshot.payload, "resubscribed")
    faulty = lines[:k] + lines[k + 1:resync_at] + [fresh] + lines[resync_at:]
    sync = CoinbaseSync()
    events = [e for e in feed(sync, faulty) if e.symbol == "SKL-USD"]
    assert [e.state for e in events] == [SYNCED, GAP, SYNCED]
    assert f"trade_id {dropped['trade_id'] + 1} after {dropped['trade_id'] - 1}" in events[1].detail
    assert sync.stats.resyncs == 1 and sync.broken() == set()
    tables = sync.take()
    rows = of_symbol(tables["book_delta"], "SKL-USD")
    flags = rows.column("flags").to_numpy()
    recv = rows.column("ts_recv_ns").to_numpy()
    gap_at, fresh_at = lines[skl[6]].recv_ns, fresh.recv_ns
    between = (recv > gap_at) & (recv < fresh_at)
    # every book row after the gap was seen and before the fresh snapshot is flagged, the first with F_GAP
    assert between.any() and np.all(flags[between] & F_MAYBE_BAD_BOOK)
    assert int((flags & F_GAP != 0).sum()) == 1 and flags[np.flatnonzero(between)[0]] & F_GAP
    assert not np.any(flags[recv >= fresh_at] & F_MAYBE_BAD_BOOK)
    trade = of_symbol(tables["trade"], "SKL-USD")
    assert trade.column("flags").to_numpy()[trade.column("trade_id").to_pylist().index(
        str(dropped["trade_id"] + 1))] & F_GAP


def test_heartbeat_reveals_lost_matches_on_a_quiet_product(capture: Path) -> None:
    lines = received(capture)
    k = next(i for i, ln in enumerate(lines) if b'"type":"match"' in ln.payload and b'"NU-GBP"' in ln.payload)
    last = _msg(lines[k])
    beat = {"type": "heartbeat", "sequence": last["sequence"] + 9, "last_trade_id": last["trade_id"] + 1,
            "product_id": "NU-GBP", "time": last["time"]}
    sync = CoinbaseSync()
    in_step = json.dumps({**beat, "last_trade_id": last["trade_id"]}).encode()
    ok = feed(sync, lines[:k + 1] + [CaptureLine(lines[k].recv_ns + 1, RECV, "", in_step, "beat")])
    assert [e.state for e in ok if e.symbol == "NU-GBP"] == [SYNCED]
    events = feed(sync, [CaptureLine(lines[k].recv_ns + 2, RECV, "", json.dumps(beat).encode(), "beat2")])
    assert [(e.symbol, e.state, e.sequence) for e in events] == [("NU-GBP", GAP, beat["sequence"])]
    assert sync.broken() == {"NU-GBP"}


def _match(kind: str, trade_id: int, sequence: int) -> bytes:
    return json.dumps({"type": kind, "trade_id": trade_id, "maker_order_id": "m", "taker_order_id": "t",
                       "side": "sell", "size": "1.5", "price": "10.25", "product_id": "A-B",
                       "sequence": sequence, "time": "2021-04-17T16:43:37.075687Z"}).encode()


def test_a_resubscriptions_last_match_repeating_a_trade_is_no_second_row(tmp_path: Path) -> None:
    snapshot = b'{"type":"snapshot","product_id":"A-B","bids":[["10.0","1"]],"asks":[["11.0","2"]]}'
    frames = [snapshot, _match("last_match", 100, 1), _match("match", 101, 2), _match("match", 103, 4),
              # resubscribed after the gap: a fresh snapshot and the latest trade again (103)
              snapshot, _match("last_match", 103, 4), _match("match", 104, 5),
              # resubscribed once more; trade 105 passed while unsubscribed: its last_match is new
              snapshot, _match("last_match", 105, 6), _match("match", 106, 7)]
    t0 = 1_700_000_000_000_000_000
    lines = [CaptureLine(t0 + i, RECV, "", f, f"t:{i + 1}") for i, f in enumerate(frames)]
    sync = CoinbaseSync()
    events = feed(sync, lines)
    assert [e.state for e in events] == [SYNCED, GAP, SYNCED, SYNCED]
    assert "trade_id 103 after 101" in events[1].detail
    # the repeated last_match anchors the chain: 104 and 106 link, no second gap
    assert (sync.stats.links, sync.stats.links_ok) == (4, 3) and sync.broken() == set()
    trades = sync.take()["trade"].column("trade_id").to_pylist()
    assert trades == ["100", "101", "103", "104", "105", "106"]
    assert sync.decoder.repeated_last_matches == 1
    # the batch decoder reads the journal of that stream the same way
    journal = tmp_path / "coinbase.jsonl"
    journal.write_bytes(b"".join(b"%d %s\n" % (ln.recv_ns, ln.payload) for ln in lines))
    batch = merge(list(get_format("coinbase").decode([journal])))
    assert batch["trade"].column("trade_id").to_pylist() == trades
