"""OKX live sync on the recorded v5 payloads: chain and checksum counts, flags on a broken book."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.livesync import CHECKSUM_MISMATCH, SYNCED
from tapeflow.venues.okx.sync import OkxSync
from tapeflow.wire.capture import RECV, CaptureLine
from tests.live.connb_support import feed, of_symbol, received

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "okx"


@pytest.mark.parametrize("name", ["books_trades.ns.jsonl", "books_trades.cryptofeed"])
def test_every_link_and_checksum_and_rows_equal_batch(name: str) -> None:
    path = FIXTURES / name
    text = path.read_text()
    checksums, links = text.count('"checksum":'), text.count('"action":"update"')
    assert (checksums, links) == (12, 10)
    sync = OkxSync()
    events = feed(sync, received(path))
    assert [(e.symbol, e.state) for e in events] == [("BTC-USDT", SYNCED), ("ETH-USDT-SWAP", SYNCED)]
    assert (sync.stats.checksums, sync.stats.checksums_ok) == (checksums, checksums)
    assert (sync.stats.links, sync.stats.links_ok) == (links, links)
    live = sync.take()
    batch = merge(list(get_format("okx").decode([path])))
    assert sorted(live) == sorted(batch)
    for table in live:
        assert live[table].to_pylist() == batch[table].to_pylist(), table


def test_checksum_mismatch_flags_the_message_that_shows_it() -> None:
    lines = received(FIXTURES / "books_trades.ns.jsonl")
    k = next(i for i, ln in enumerate(lines)
             if b'"action":"update"' in ln.payload and b'"BTC-USDT"' in ln.payload
             and json.loads(ln.payload)["data"][0]["asks"])
    msg = json.loads(lines[k].payload)
    msg["data"][0]["asks"][0][1] = "7.77"  # a size the venue never sent: the checksum cannot match
    altered = CaptureLine(lines[k].recv_ns, RECV, "", json.dumps(msg).encode(), lines[k].location)
    sync = OkxSync()
    events = feed(sync, lines[:k] + [altered] + lines[k + 1:])
    broken = [e for e in events if e.state != SYNCED]
    assert [(e.symbol, e.state, e.sequence) for e in broken] == [
        ("BTC-USDT", CHECKSUM_MISMATCH, msg["data"][0]["seqId"])]
    assert sync.broken() == {"BTC-USDT"}
    rows = of_symbol(sync.take()["book_delta"], "BTC-USDT")
    flags = rows.column("flags").to_numpy()
    seq = rows.column("sequence").to_numpy()
    at = np.flatnonzero(seq == msg["data"][0]["seqId"])
    # live: F_GAP on the altered message itself (a batch decode flags only the next one)
    assert flags[at[0]] & F_GAP and np.all(flags[at[0]:] & F_MAYBE_BAD_BOOK)
    assert not np.any(flags[:at[0]] & (F_GAP | F_MAYBE_BAD_BOOK))
