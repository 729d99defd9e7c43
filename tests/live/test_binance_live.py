"""The Binance client against real captures served by the replay server (its real protocol: combined
streams, REST depth snapshots of the book at the tape position, faults by frame index).

Oracles (counted independently from the journal's raw lines): after sync no chain gap; every
bookTicker whose ``u`` is the ``u`` of an applied depth diff equals the rebuilt top of book; the
journal decoded as a batch (and through ``tapeflow book``) equals what the client decoded live;
injected drop / reorder / disconnect are each detected (F_GAP + STATUS ``gap``) and resynced
(STATUS ``recovered``), and nothing between a gap and its resync is published as valid.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import orjson
import pyarrow.compute as pc
import pytest

from tapeflow.live import ConnectorSettings, LiveBatch, RawFrame
from tapeflow.live.frames import REST
from tapeflow.replay import ReplayServer
from tapeflow.schemas.records import BOOK_DELTA, F_GAP, F_MAYBE_BAD_BOOK, F_SNAPSHOT, L2_CLEAR, QUOTE
from tapeflow.venues.binance.client import BinanceClient
from tapeflow.venues.binance.verify import bookticker_matches
from tests.conftest import need
from tests.live.conna_support import (
    assert_journal_equals_live,
    assert_nothing_valid_while_broken,
    journal_file,
    live_tables,
    run_client,
    statuses,
)

PREFIX_LINES = 12_000


@pytest.fixture(scope="module")
def usdm_prefix(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first lines of the hftbacktest USD-M capture (depth@0ms, trade, bookTicker, one REST snapshot)."""
    src = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    out = tmp_path_factory.mktemp("usdm") / "usdm_btcusdt_prefix.jsonl"
    with gzip.open(src, "rb") as fh, open(out, "wb") as dst:
        for _, line in zip(range(PREFIX_LINES), fh, strict=False):
            dst.write(line)
    return out


def tape_kinds(paths: list[Path]) -> list[tuple[str, str]]:
    """(stream kind, file:line) of each frame the server sends, in order (REST snapshots are not sent)."""
    out = []
    for p in paths:
        for n, raw in enumerate(p.read_bytes().splitlines(), 1):
            body = raw.split(b" ", 1)[1] if raw[:1].isdigit() else raw.split(b": ", 1)[1]
            msg = orjson.loads(body)
            if "lastUpdateId" in msg:
                continue
            out.append((msg["data"]["e"], f"{p.name}:{n}"))
    return out


def is_binance_data(data: bytes) -> bool:
    return data.startswith(b'{"stream"')


def expected_tickers(journal: Path, sync_u: dict[str, int]) -> int:
    """bookTickers whose u is the u of a depth diff with levels applied after sync (raw-line count).

    A diff is applied from the bridging one (``sync_u``) on, except those a later snapshot already
    contains (USD-M: ``u`` below the ``lastUpdateId`` of the last REST line before it).
    """
    depth_u: dict[str, set[int]] = {s: set() for s in sync_u}
    ticker_u: dict[str, list[int]] = {s: [] for s in sync_u}
    snapshot_id = dict.fromkeys(sync_u, 0)
    for raw in journal.read_bytes().splitlines():
        msg = orjson.loads(raw.split(b" ", 1)[1])
        if "lastUpdateId" in msg:
            snapshot_id[msg["symbol"]] = msg["lastUpdateId"]
        data = msg.get("data")
        if data is None:
            continue
        s = data["s"]
        applied = data.get("e") == "depthUpdate" and data["u"] >= max(sync_u[s], snapshot_id[s])
        if applied and (data["b"] or data["a"]):
            depth_u[s].add(data["u"])
        elif msg["stream"].endswith("@bookTicker"):  # spot tickers carry no "e"
            ticker_u[s].append(data["u"])
    return sum(u in depth_u[s] for s, us in ticker_u.items() for u in us)


def test_usdm_capture_syncs_once_and_every_bookticker_matches(usdm_prefix: Path, tmp_path: Path) -> None:
    rolled: list[int] = []
    # paced (47 s of capture in ~2.4 s): as fast as possible, the server's tape runs up to its queue
    # and socket buffers ahead of what the client has read, so the REST book it answers the first
    # request with may only bridge at the very end of the prefix, and the new day below needs a
    # synced book with frames still to come
    with ReplayServer("binance", [usdm_prefix], speed=20).run_in_thread() as srv:
        client = BinanceClient(["BTCUSDT"], endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                               journal=tmp_path / "journal", trade_stream="trade",
                               settings=ConnectorSettings(seed=1, stale_after_s=20))

        decode_batch = client.decode_batch

        def new_day_once_synced(frames: list[RawFrame], locations: list[str]) -> None:
            # As if the next frame were the first of a new UTC day: the book re-anchors on a
            # fresh snapshot (so each day's journal file rebuilds alone), without a gap. Done in
            # the client's own thread, after the batch that synced, so it lands mid-tape however
            # fast the client runs ahead of the test's consumer.
            decode_batch(frames, locations)
            if not rolled and client.sync.synced("BTCUSDT"):
                rolled.append(client.snapshots_requested)
                client._day_ns = 0  # noqa: SLF001  (the start of 1970-01-01)

        client.decode_batch = new_day_once_synced  # type: ignore[method-assign]
        batches = run_client(srv, client, is_binance_data)
    rows = statuses(batches)
    states = [r["state"] for r in rows]
    assert states[:2] == ["connected", "syncing"] and states.count("synced") == 1
    assert "gap" not in states and "stale" not in states and client.decoder.stats.gaps == []
    assert client.snapshots_requested == rolled[0] + 1  # the new day's snapshot
    # every snapshot fetched is applied, or left out as older than the diffs already applied (the
    # day roll's fetch can come back behind a client that decoded ahead: the chain goes on, no gap)
    stats = client.decoder.stats
    assert stats.snapshots + stats.stale_snapshots == client.snapshots_requested and stats.snapshots >= 1
    sync_u = next(r["sequence"] for r in rows if r["state"] == "synced")
    # every frame served arrived and went to the journal, plus the REST snapshot(s)
    tape = tape_kinds([usdm_prefix])
    journal = journal_file(tmp_path / "journal", "binance-usdm")
    assert sum(1 for _ in journal.open("rb")) == len(tape) + client.snapshots_requested
    live = live_tables(batches)
    report = bookticker_matches(live["book_delta"], live["quote"])
    want = expected_tickers(journal, {"BTCUSDT": sync_u})
    assert want > 0 and report.total == want and report.ok == want, report.failures[:3]
    assert live["quote"].num_rows == sum(k == "bookTicker" for k, _ in tape)
    assert set(live["trade"].column("venue").to_pylist()) == {"binance-usdm"}
    assert_journal_equals_live("binance", journal, live)
    # rows written before the book first synced say so; none after it does
    flags = live["book_delta"].column("flags").to_numpy()
    seq = live["book_delta"].column("sequence").to_numpy()
    bad = flags & F_MAYBE_BAD_BOOK != 0
    # whether any diff is decoded before the first sync depends on when the REST snapshot returns
    # (the aiohttp client often has it before the first diff): only "none after it" is timing-free
    assert not bad[seq > sync_u].any()


def test_usdm_injected_drop_reorder_disconnect_are_detected_and_resynced(usdm_prefix: Path,
                                                                         tmp_path: Path) -> None:
    tape = tape_kinds([usdm_prefix])
    depth = [i for i, (k, _) in enumerate(tape) if k == "depthUpdate"]
    pairs = [i for i in depth if i + 1 < len(tape) and tape[i + 1][0] == "depthUpdate"]
    plan = ["drop", "reorder", "disconnect"]
    planned: list[int] = []

    # Paced at 4x the recorded rate, so the client is not far behind the tape and there is tape
    # left after each resync for the next fault.
    with ReplayServer("binance", [usdm_prefix], speed=4).run_in_thread() as srv:
        client = BinanceClient(["BTCUSDT"], endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                               journal=tmp_path / "journal", trade_stream="trade",
                               settings=ConnectorSettings(seed=2, stale_after_s=20, backoff_initial_s=0.05))

        def inject(batch: LiveBatch) -> None:
            # Each fault goes in once the book is synced (again), ahead of what the server has sent,
            # on a depth diff (a reorder: one followed by another diff, else it breaks nothing).
            st = batch.status.column("state").to_pylist()
            if plan and ("synced" in st):
                kind = plan.pop(0)
                ahead = srv.frames_served + 200
                index = next(i for i in (pairs if kind == "reorder" else depth) if i >= ahead)
                planned.append(index)
                srv.add_fault(f"{kind}@{index}")

        batches = run_client(srv, client, is_binance_data, inject)
        injected = list(srv.injected)
    assert [f.kind for f in injected] == ["drop", "reorder", "disconnect"]
    assert [f.index for f in injected] == planned
    assert all(f.location == tape[f.index][1] for f in injected)  # the frame we meant
    rows = statuses(batches)
    states = [r["state"] for r in rows]
    assert states.count("gap") == 3 and states.count("recovered") == 3 and states.count("synced") == 4
    assert states.count("disconnected") == 1 and client.connects == 2
    recovered = [r for r in rows if r["state"] == "recovered"]
    assert all(0 <= r["ts_event_ns"] < r["until_ns"] for r in recovered)
    live = live_tables(batches)
    deltas = live["book_delta"]
    assert int((pc.bit_wise_and(deltas.column("flags"), F_GAP).to_numpy() != 0).sum()) == 3
    assert assert_nothing_valid_while_broken(deltas) == 3
    report = bookticker_matches(deltas, live.get("quote", QUOTE.empty_table()))
    assert report.total > 0 and report.ok == report.total, report.failures[:3]
    assert_journal_equals_live("binance", journal_file(tmp_path / "journal", "binance-usdm"), live)
    assert client.decoder.stats.checked == client.decoder.stats.chained + 3


def _usdm_diff(first: int, last: int, prev: int) -> bytes:
    return (b'{"stream":"btcusdt@depth@0ms","data":{"e":"depthUpdate","E":2,"T":2,"s":"BTCUSDT",'
            b'"U":%d,"u":%d,"pu":%d,"b":[["10.0","%d"]],"a":[["11.0","1"]]}}' % (first, last, prev, last))


def _usdm_snapshot(last_id: int) -> bytes:
    return (b'{"symbol":"BTCUSDT","lastUpdateId":%d,"E":1,"T":1,"bids":[["10.0","1"]],'
            b'"asks":[["11.0","1"]]}' % last_id)


def test_a_snapshot_landing_after_its_bridge_still_flags_the_diffs_it_contains() -> None:
    # The client lagging behind the feed (a loaded machine): by the time the REST snapshot is
    # decoded, the diffs it contains AND the one that bridges it are buffered. That one frame
    # writes the contained diffs (before the snapshot's clear row: a broken book), the snapshot,
    # the bridge, and syncs the book. The contained rows were once published with no flag, so a
    # row between a gap and its resync looked valid (the usdm fault test failed under load).
    client = BinanceClient(["BTCUSDT"], endpoint="ws://unused", rest_endpoint="http://unused")
    client.request_rest = lambda *a, **k: False  # type: ignore[method-assign]  # no network here
    client.sync.connected("test")
    t = 1_700_000_000_000_000_000
    feed = [(_usdm_diff(90, 95, 89), "ws"), (_usdm_diff(96, 101, 95), "ws"),  # first sync at 100
            (_usdm_snapshot(100), REST),
            (_usdm_diff(102, 103, 101), "ws"), (_usdm_diff(110, 112, 108), "ws"),  # the gap
            (_usdm_diff(104, 107, 103), "ws"), (_usdm_diff(113, 120, 112), "ws"),  # late + bridge
            (_usdm_snapshot(115), REST)]
    frames = [RawFrame(client.venue, t + i, data, channel) for i, (data, channel) in enumerate(feed)]
    batch = client._process(frames)  # noqa: SLF001 - one micro-batch, no socket
    states = batch.status.column("state").to_pylist()
    assert [s for s in states if s in ("synced", "gap")] == ["synced", "gap", "synced"]
    deltas = batch.get(BOOK_DELTA)
    assert client.sync.synced("BTCUSDT") and client.decoder.stats.chained == 3
    seq, flags = deltas.column("sequence").to_pylist(), deltas.column("flags").to_numpy()
    clears = [i for i, a in enumerate(deltas.column("action").to_pylist())
              if a == L2_CLEAR and flags[i] & F_SNAPSHOT]
    assert len(clears) == 2 and seq[clears[0] - 1] == 95 and seq[clears[1] - 1] == 107
    # every row before each snapshot (the first sync's, and after the gap) is flagged maybe-bad ...
    for start, clear in ((0, clears[0]), (int(np.flatnonzero(flags & F_GAP)[0]), clears[1])):
        assert (flags[start:clear] & F_MAYBE_BAD_BOOK != 0).all(), (start, clear, flags.tolist())
    assert assert_nothing_valid_while_broken(deltas) == 1
    # ... and the bridged rows after it are not: the book is valid again
    assert not (flags[clears[1]:] & F_MAYBE_BAD_BOOK).any() and seq[-1] == 120


@pytest.mark.parametrize(("market", "capture", "symbols"), [
    ("usdm", "BINANCE_FUTURES", ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]),
    ("spot", "BINANCE", ["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"]),
])
def test_cryptofeed_captures_four_symbols(real_data: Path, tmp_path: Path, market: str, capture: str,
                                          symbols: list[str]) -> None:
    ws = need(real_data / "cryptofeed" / f"{capture}.ws.1.0")
    http = need(real_data / "cryptofeed" / f"{capture}.http.0.0")
    # 30 s of capture at 5x: the client keeps pace, so it syncs about where the capture did.
    with ReplayServer("binance", [ws, http], speed=5).run_in_thread() as srv:
        client = BinanceClient(symbols, market=market, endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                               journal=tmp_path / "journal", trade_stream="aggTrade",
                               settings=ConnectorSettings(seed=3, stale_after_s=20))
        batches = run_client(srv, client, is_binance_data)
    rows = statuses(batches)
    synced = {r["symbol"]: r["sequence"] for r in rows if r["state"] == "synced"}
    assert sorted(synced) == sorted(symbols)
    assert [r["state"] for r in rows].count("synced") == 4
    assert "gap" not in [r["state"] for r in rows] and client.decoder.stats.gaps == []
    assert client.decoder.stats.checked == client.decoder.stats.chained > 0
    live = live_tables(batches)
    journal = journal_file(tmp_path / "journal", client.venue)
    report = bookticker_matches(live["book_delta"], live["quote"])
    want = expected_tickers(journal, synced)
    assert want > 0 and report.total == want and report.ok == want, report.failures[:3]
    assert_journal_equals_live("binance", journal, live)
    assert set(live["trade"].column("venue").to_pylist()) == {client.venue}
    # each symbol's REST snapshot went to the journal under its own name
    rest = [orjson.loads(f.data) for b in batches for f in b.frames if f.channel == "rest"]
    assert {r["symbol"] for r in rest} == set(symbols)
    assert BOOK_DELTA.name in live
