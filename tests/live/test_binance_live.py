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
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kernels.reference import RESYNC
from tapeflow.book import book_snapshots, replay_l2
from tapeflow.live import ConnectorSettings, LiveBatch, iterate_in_thread
from tapeflow.rebuild import snapshots_for_format
from tapeflow.replay import ReplayServer
from tapeflow.schemas import concat
from tapeflow.schemas.records import (
    ALL_RECORDS,
    BOOK_DELTA,
    F_GAP,
    F_MAYBE_BAD_BOOK,
    F_SNAPSHOT,
    F_SUPERSEDED,
    L2_CLEAR,
    QUOTE,
)
from tapeflow.venues.base import merge
from tapeflow.venues.binance.client import BinanceClient
from tapeflow.venues.binance.parse import decode
from tapeflow.venues.binance.verify import bookticker_matches
from tests.conftest import need

PREFIX_LINES = 12_000
SECOND_NS = 1_000_000_000


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


def run_client(srv: ReplayServer, client: BinanceClient, on_batch: Callable[[LiveBatch], None] | None = None,
               timeout_s: float = 90) -> list[LiveBatch]:
    """Pull batches until the tape is finished and every frame served has been received."""
    batches: list[LiveBatch] = []
    received = 0
    deadline = time.monotonic() + timeout_s
    it = iterate_in_thread(client)
    try:
        while time.monotonic() < deadline:
            b = it.poll(0.2)
            if b is not None:
                batches.append(b)
                received += sum(f.channel == "ws" for f in b.frames)
                if on_batch is not None:
                    on_batch(b)
            st = srv.status()
            if st["finished"] and received >= st["frames_served"] and not client.rest_requests_in_flight:
                break
        else:
            pytest.fail(f"replay not finished after {timeout_s} s: {srv.status()}")
    finally:
        it.close()
    return batches


def live_tables(batches: list[LiveBatch]) -> dict[str, pa.Table]:
    names = {n for b in batches for n in b.records}
    return {n: concat(ALL_RECORDS[n], [b.records[n] for b in batches if n in b.records]) for n in names}


def statuses(batches: list[LiveBatch]) -> list[dict]:
    return [r for b in batches for r in b.status.to_pylist()]


def journal_file(root: Path, venue: str) -> Path:
    files = sorted((root / venue).glob("*.jsonl"))
    assert len(files) == 1, files
    return files[0]


def expected_tickers(journal: Path, sync_u: dict[str, int]) -> int:
    """bookTickers whose u is the u of a depth diff with levels applied after sync (raw-line count)."""
    depth_u: dict[str, set[int]] = {s: set() for s in sync_u}
    ticker_u: dict[str, list[int]] = {s: [] for s in sync_u}
    for raw in journal.read_bytes().splitlines():
        msg = orjson.loads(raw.split(b" ", 1)[1])
        data = msg.get("data")
        if data is None:
            continue
        s = data["s"]
        if data["e"] == "depthUpdate" and data["u"] >= sync_u[s] and (data["b"] or data["a"]):
            depth_u[s].add(data["u"])
        elif data["e"] == "bookTicker":
            ticker_u[s].append(data["u"])
    return sum(u in depth_u[s] for s, us in ticker_u.items() for u in us)


def without_live_bit(t: pa.Table) -> pa.Table:
    i = t.schema.get_field_index("flags")
    flags = pc.bit_wise_and(t.column("flags"), pa.scalar(0xFF ^ F_MAYBE_BAD_BOOK, pa.uint8()))
    return t.set_column(i, t.schema.field(i), flags)


def assert_journal_equals_live(journal: Path, live: dict[str, pa.Table], venue: str) -> None:
    batch = merge(list(decode([journal])))
    for name in ("book_delta", "trade", "quote", "rejected"):
        want = batch.get(name, ALL_RECORDS[name].empty_table())
        got = live.get(name, ALL_RECORDS[name].empty_table())
        if name == "book_delta":
            assert got.num_rows == want.num_rows and got.num_rows > 0
            assert without_live_bit(got).equals(want), "live book rows differ from the batch decode"
        else:
            assert got.equals(want), f"live {name} rows differ from the batch decode"
    assert set(live.get("trade").column("venue").unique().to_pylist()) == {venue}
    # and through what `tapeflow book` does on the journal
    snaps, _ = snapshots_for_format("binance", [journal], levels=10, interval_ns=SECOND_NS)
    assert book_snapshots(live["book_delta"], levels=10, interval_ns=SECOND_NS).equals(snaps)


def assert_nothing_valid_while_broken(deltas: pa.Table) -> int:
    """Every row from a gap to the next snapshot: book in RESYNC and flagged maybe-bad or superseded."""
    gaps_seen = 0
    for (sym,) in {(s,) for s in deltas.column("symbol").to_pylist()}:
        d = deltas.filter(pc.equal(deltas.column("symbol"), sym))
        status = replay_l2(d, levels=1).bbo["status"]
        flags = d.column("flags").to_numpy()
        clears = np.flatnonzero((d.column("action").to_numpy() == L2_CLEAR) & (flags & F_SNAPSHOT != 0))
        for g in np.flatnonzero(flags & F_GAP):
            gaps_seen += 1
            nxt = clears[clears > g]
            end = int(nxt[0]) if len(nxt) else d.num_rows
            assert (status[g:end] == RESYNC).all()
            assert ((flags[g:end] & (F_MAYBE_BAD_BOOK | F_SUPERSEDED)) != 0).all()
    return gaps_seen


def test_usdm_capture_syncs_once_and_every_bookticker_matches(usdm_prefix: Path, tmp_path: Path) -> None:
    with ReplayServer("binance", [usdm_prefix]).run_in_thread() as srv:
        client = BinanceClient(["BTCUSDT"], endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                               journal=tmp_path / "journal", trade_stream="trade",
                               settings=ConnectorSettings(seed=1, stale_after_s=20))
        batches = run_client(srv, client)
    rows = statuses(batches)
    states = [r["state"] for r in rows]
    assert states[:2] == ["connected", "syncing"] and states.count("synced") == 1
    assert "gap" not in states and "stale" not in states and client.decoder.stats.gaps == []
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
    assert_journal_equals_live(journal, live, "binance-usdm")
    # rows written before the book first synced say so; none after it does
    flags = live["book_delta"].column("flags").to_numpy()
    seq = live["book_delta"].column("sequence").to_numpy()
    bad = flags & F_MAYBE_BAD_BOOK != 0
    assert bad.any() and not bad[seq > sync_u].any()


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

        batches = run_client(srv, client, inject)
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
    assert_journal_equals_live(journal_file(tmp_path / "journal", "binance-usdm"), live, "binance-usdm")
    assert client.decoder.stats.checked == client.decoder.stats.chained + 3


def test_cryptofeed_futures_capture_four_symbols(real_data: Path, tmp_path: Path) -> None:
    ws = need(real_data / "cryptofeed" / "BINANCE_FUTURES.ws.1.0")
    http = need(real_data / "cryptofeed" / "BINANCE_FUTURES.http.0.0")
    symbols = ["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"]
    # 30 s of capture at 5x: the client keeps pace, so it syncs about where the capture did.
    with ReplayServer("binance", [ws, http], speed=5).run_in_thread() as srv:
        client = BinanceClient(symbols, endpoint=srv.ws_url, rest_endpoint=srv.rest_url,
                               journal=tmp_path / "journal",
                               settings=ConnectorSettings(seed=3, stale_after_s=20))
        batches = run_client(srv, client)
    rows = statuses(batches)
    synced = {r["symbol"]: r["sequence"] for r in rows if r["state"] == "synced"}
    assert sorted(synced) == sorted(symbols)
    assert [r["state"] for r in rows].count("synced") == 4
    assert "gap" not in [r["state"] for r in rows] and client.decoder.stats.gaps == []
    live = live_tables(batches)
    journal = journal_file(tmp_path / "journal", "binance-usdm")
    report = bookticker_matches(live["book_delta"], live["quote"])
    want = expected_tickers(journal, synced)
    assert want > 0 and report.total == want and report.ok == want, report.failures[:3]
    assert_journal_equals_live(journal, live, "binance-usdm")
    # each symbol's REST snapshot went to the journal under its own name
    rest = [orjson.loads(f.data) for b in batches for f in b.frames if f.channel == "rest"]
    assert {r["symbol"] for r in rest} == set(symbols)
    assert BOOK_DELTA.name in live
