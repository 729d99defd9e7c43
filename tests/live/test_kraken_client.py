"""KrakenClient end to end through the replay server on the real book-1000 + trade captures."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from kernels.reference import VALID
from tapeflow.book.l2 import replay_l2
from tapeflow.live.connector import ConnectorSettings
from tapeflow.live.frames import LiveBatch
from tapeflow.schemas.records import F_LAST
from tapeflow.venues.kraken.client import KrakenClient
from tapeflow.venues.kraken.parse import KrakenDecoder
from tests.conftest import need
from tests.live.connb_replay import journal_matches_live, records, run_against_replay, status
from tests.live.connb_support import of_symbol, received

PAIRS = ["WAVES/EUR", "XMR/USD", "KSM/XBT", "GRT/ETH", "SC/EUR", "ETH/CHF", "OCEAN/XBT", "OMG/USD", "XBT/CHF",
         "ADA/XBT"]


@pytest.fixture(scope="module")
def captures(real_data: Path) -> list[Path]:
    folder = real_data / "cryptofeed"
    return [need(folder / "KRAKEN.ws.48.0"), need(folder / "KRAKEN.ws.50.0")]


def _run(captures: list[Path], journal: Path, faults: list[str]):
    # 10x real time: the 31 s capture in ~3 s, and both subscriptions land before their first frame
    return run_against_replay(
        lambda srv: KrakenClient(PAIRS, endpoint=srv.ws_url, journal=journal,
                                 settings=ConnectorSettings(seed=3)),
        "kraken", captures, faults=faults, speed=10.0)


def _crc(asks: list[tuple[int, int]], bids: list[tuple[int, int]], places: tuple[int, int]) -> int:
    """Kraken's CRC32 written out again: digits of price and volume at the pair's decimals, no
    leading zeros, top 10 asks then top 10 bids."""
    def text(nanos: int, decimals: int) -> str:
        return str(nanos // 10 ** (9 - decimals))

    return zlib.crc32("".join(text(p, places[0]) + text(v, places[1]) for p, v in [*asks, *bids]).encode())


def _valid_books_hash_to_c(batches: list[LiveBatch], deltas: pa.Table) -> tuple[int, int]:
    """For every message end the live book publishes as VALID and whose frame carries a checksum,
    hash the rebuilt top 10 and compare with the frame's ``c``. Returns ``(checked, wrong)``."""
    frames = {f.ts_recv_ns: orjson.loads(f.data) for b in batches for f in b.frames if b'"c":' in f.data}
    places: dict[str, tuple[int, int]] = {}
    for b in batches:
        for f in b.frames:
            if b'"as":' in f.data:
                msg = orjson.loads(f.data)
                px, vol = msg[1]["as"][0][:2]
                places[msg[-1]] = (len(px.split(".")[1]), len(vol.split(".")[1]))
    checked = wrong = 0
    for pair in PAIRS:
        rows = of_symbol(deltas, pair)
        ends = np.flatnonzero(rows.column("flags").to_numpy() & F_LAST)
        rep = replay_l2(rows, levels=10, snapshot_rows=ends)
        recv = rows.column("ts_recv_ns").to_numpy()
        for k, i in enumerate(ends):
            msg = frames.get(int(recv[i]))
            if msg is None or rep.snaps["snap_status"][k] != VALID:
                continue
            c = next(int(p["c"]) for p in msg[1:-2] if "c" in p)
            s = rep.snaps
            asks = [(int(p), int(v)) for p, v in zip(s["snap_ask_px"][k], s["snap_ask_sz"][k], strict=True)
                    if v]
            bids = [(int(p), int(v)) for p, v in zip(s["snap_bid_px"][k], s["snap_bid_sz"][k], strict=True)
                    if v]
            checked += 1
            wrong += int(_crc(asks, bids, places[pair]) != c)
    return checked, wrong


def test_every_checksum_after_sync_through_the_replay_server(captures: list[Path], tmp_path: Path) -> None:
    expected = sum(1 for ln in captures[1].read_text().splitlines() if '"c":' in ln and '"event"' not in ln)
    expected_trades = sum(ln.count('","b","') + ln.count('","s","')
                          for ln in captures[0].read_text().splitlines()
                          if '"trade"' in ln and '"event"' not in ln)
    client, srv, batches = _run(captures, tmp_path, [])
    assert (client.stats.checksums, client.stats.checksums_ok) == (expected, 4269)
    assert client.stats.breaks == [] and client.resubscribes == 0
    live = records(batches)
    assert live["trade"].num_rows == expected_trades == 10
    states = status(batches).column("state").to_pylist()
    assert states.count("synced") == len(PAIRS) and "gap" not in states and "checksum_mismatch" not in states
    assert _valid_books_hash_to_c(batches, live["book_delta"]) == (expected, 0)
    counts = journal_matches_live(tmp_path, "kraken", live)
    assert counts["book_delta"] == live["book_delta"].num_rows > 0


def _pairs_broken_by_drops(book_capture: Path, dropped: set[str]) -> set[str]:
    """The pairs whose checksum fails when the frames at ``dropped`` (capture locations) never
    arrive, according to the batch decoder over the capture without them."""
    decoder = KrakenDecoder()
    for line in received(book_capture):
        if line.location not in dropped:
            decoder.feed(line)
    return {f.split(": ")[1].split(" checksum")[0] for f in decoder.stats.failures}


def test_injected_drops_and_reorder_are_detected_and_resynced(captures: list[Path], tmp_path: Path) -> None:
    faults = [f"drop@{i}" for i in range(2000, 2010)] + ["reorder@3000"]
    client, srv, batches = _run(captures, tmp_path, faults)
    assert sorted(i.kind for i in srv.injected) == ["drop"] * 10 + ["reorder"]
    dropped = {i.location for i in srv.injected if i.kind == "drop"}
    expected = _pairs_broken_by_drops(captures[1], dropped)
    assert expected, "the dropped frames must change some pair's top 10"
    broken = {b.split(": ")[1].split(" checksum")[0] for b in client.stats.breaks}
    assert all("checksum" in b for b in client.stats.breaks)
    assert expected <= broken and len(broken - expected) <= 1  # the reorder may break one more pair
    assert client.stats.resyncs == len(client.stats.breaks) == client.resubscribes
    # checks on synced books all pass but those that revealed a fault
    assert client.stats.checksums_ok == client.stats.checksums - len(client.stats.breaks)
    st = status(batches).column("state").to_pylist()
    assert st.count("checksum_mismatch") == st.count("recovered") == len(client.stats.breaks)
    live = records(batches)
    checked, wrong = _valid_books_hash_to_c(batches, live["book_delta"])
    assert wrong == 0  # nothing published as valid from a broken book
    assert checked == client.stats.checksums_ok
    journal_matches_live(tmp_path, "kraken", live)


def test_disconnect_reconnects_and_every_pair_resyncs(captures: list[Path], tmp_path: Path) -> None:
    client, srv, batches = run_against_replay(
        lambda srv: KrakenClient(PAIRS, endpoint=srv.ws_url, journal=tmp_path,
                                 settings=ConnectorSettings(seed=3, backoff_initial_s=0.1)),
        "kraken", captures, faults=["disconnect@1500"], speed=10.0)
    assert [i.kind for i in srv.injected] == ["disconnect"]
    assert client.connects == 2 and len(client.delays_s) == 1
    st = status(batches).to_pylist()
    for pair in PAIRS:
        states = [r["state"] for r in st if r["symbol"] == pair]
        # the cut, then a fresh connection whose subscription brings a fresh snapshot
        assert states == ["connected", "syncing", "synced", "disconnected", "connected", "syncing", "synced",
                          "disconnected"], pair
    # a new snapshot re-anchors each book: no checksum on a synced book fails
    assert client.stats.breaks == [] and client.stats.snapshots == 2 * len(PAIRS)
    assert client.stats.checksums_ok == client.stats.checksums > 0
    live = records(batches)
    assert _valid_books_hash_to_c(batches, live["book_delta"]) == (client.stats.checksums, 0)
    journal_matches_live(tmp_path, "kraken", live)
