"""The Bybit client against real data served by the replay server in Bybit's protocol.

v5: the ``orderbook.500`` history file (1 snapshot + 49 deltas, ``u`` +1 each); legacy v2: the
cryptofeed ``BYBIT.ws.25.0`` capture (``orderBookL2_25`` on 8 symbols, trades). Oracles counted
from the journal's raw lines: the v5 ``u`` chain, v2 deltas only touching held ids, trades; the
journal decoded as a batch equals the live rows; injected drop / reorder / disconnect are each
detected and resynced by resubscribing, with nothing valid published from a broken book.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from tapeflow.live import ConnectorSettings, LiveBatch, RawFrame
from tapeflow.replay import ReplayServer
from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues.base import Rejects
from tapeflow.venues.bybit.client import BybitClient
from tapeflow.wire.capture import RECV, read_capture
from tests.conftest import need
from tests.live.conna_support import (
    assert_journal_equals_live,
    assert_nothing_valid_while_broken,
    journal_file,
    live_tables,
    run_client,
    statuses,
)

V2_SYMBOLS = ["BCHUSDT", "XTZUSDT", "UNIUSDT", "LTCUSDT", "DOTUSDT", "LINKUSDT", "ADAUSDT", "ETHUSDT"]


def is_topic(data: bytes) -> bool:
    return b'"topic"' in data


def journal_messages(journal: Path) -> list[dict]:
    return [m for raw in journal.read_bytes().splitlines()
            if isinstance(m := orjson.loads(raw.split(b" ", 1)[1]), dict) and "topic" in m]


def count_gaps(batches: list[LiveBatch]) -> int:
    d = live_tables(batches)["book_delta"]
    return int((pc.bit_wise_and(d.column("flags"), F_GAP).to_numpy() != 0).sum())


@pytest.fixture(scope="module")
def v5_zip(real_data: Path) -> Path:
    return need(real_data / "bybit" / "xrpusdt-ob500.data.zip")


@pytest.fixture(scope="module")
def v2_capture(real_data: Path) -> Path:
    return need(real_data / "cryptofeed" / "BYBIT.ws.25.0")


def test_v5_history_chain_holds_live(v5_zip: Path, tmp_path: Path) -> None:
    with ReplayServer("bybit", [v5_zip]).run_in_thread() as srv:
        client = BybitClient(["XRPUSDT"], depth=500, trades=False, endpoint=srv.ws_url,
                             journal=tmp_path / "j", settings=ConnectorSettings(seed=1))
        batches = run_client(srv, client, is_topic)
    journal = journal_file(tmp_path / "j", "bybit")
    msgs = journal_messages(journal)
    deltas = [m for m in msgs if m["type"] == "delta"]
    us = [m["data"]["u"] for m in msgs]
    assert len(deltas) == 49 and all(b == a + 1 for a, b in zip(us, us[1:], strict=False))
    stats = client.decoder.stats
    assert stats.checked == stats.chained == len(deltas) and stats.gaps == []
    states = [r["state"] for r in statuses(batches)]
    assert states.count("synced") == 1 and "gap" not in states
    live = live_tables(batches)
    assert not (pc.bit_wise_and(live["book_delta"].column("flags"), F_MAYBE_BAD_BOOK).to_numpy()).any()
    assert_journal_equals_live("bybit", journal, live)


def test_v5_injected_drop_reorder_disconnect_resync_by_resubscribing(v5_zip: Path, tmp_path: Path) -> None:
    # At recorded speed (a delta every ~100 ms) each resync is done long before the next fault.
    faults = ["drop@10", "reorder@20", "disconnect@35"]
    with ReplayServer("bybit", [v5_zip], speed=1, faults=faults).run_in_thread() as srv:
        client = BybitClient(["XRPUSDT"], depth=500, trades=False, endpoint=srv.ws_url,
                             journal=tmp_path / "j",
                             settings=ConnectorSettings(seed=2, backoff_initial_s=0.05))
        batches = run_client(srv, client, is_topic)
        injected = [f.kind for f in srv.injected]
    assert injected == ["drop", "reorder", "disconnect"]
    rows = statuses(batches)
    states = [r["state"] for r in rows]
    assert states.count("gap") == 2 and states.count("disconnected") == 1
    assert states.count("recovered") == 3 and states.count("synced") == 4
    assert client.resubscribes == 2 and client.connects == 2
    gap_details = [r["detail"] for r in rows if r["state"] == "gap"]
    # the dropped delta was u=20254879 (frame 10 after the snapshot's u); the reordered one u=20254889
    assert gap_details == ["bybit XRPUSDT: u=20254880 after u=20254878",
                           "bybit XRPUSDT: u=20254890 after u=20254888"]
    live = live_tables(batches)
    assert assert_nothing_valid_while_broken(live["book_delta"]) == 2 == count_gaps(batches)
    # 4 snapshots: the first, one per resubscription, one on the new connection
    assert client.decoder.stats.snapshots == 4
    assert_journal_equals_live("bybit", journal_file(tmp_path / "j", "bybit"), live)


def test_v2_capture_ids_and_trades_live(v2_capture: Path, tmp_path: Path) -> None:
    rolled: list[bool] = []
    with ReplayServer("bybit", [v2_capture], speed=5).run_in_thread() as srv:
        client = BybitClient(V2_SYMBOLS, protocol="v2", endpoint=srv.ws_url, journal=tmp_path / "j",
                             settings=ConnectorSettings(seed=3))

        decode_batch = client.decode_batch

        def new_day_once_synced(frames: list[RawFrame], locations: list[str]) -> None:
            # As if the next frame began a new UTC day: every book re-anchors on a fresh snapshot.
            # Done in the client's own thread, after the batch that synced them, so it lands
            # mid-tape however fast the client runs ahead of the test's consumer.
            decode_batch(frames, locations)
            if not rolled and all(client.sync.synced(s) for s in V2_SYMBOLS):
                rolled.append(True)
                client._day_ns = 0  # noqa: SLF001  (the start of 1970-01-01)

        client.decode_batch = new_day_once_synced  # type: ignore[method-assign]
        batches = run_client(srv, client, is_topic)
    assert client.resubscribes == len(V2_SYMBOLS) and client.decoder.stats.snapshots == 2 * len(V2_SYMBOLS)
    journal = journal_file(tmp_path / "j", "bybit")
    msgs = journal_messages(journal)
    anchored: set[str] = set()
    after_snapshot = 0
    for m in msgs:
        topic, _, sym = m["topic"].partition(".")
        if topic == "orderBookL2_25":
            if m["type"] == "snapshot":
                anchored.add(sym)
            elif sym in anchored:
                after_snapshot += 1
    # Deltas sent while a book topic was being resubscribed never arrive (its new snapshot covers
    # them): the capture's 3252 anchored deltas (the README oracle) are those received + those.
    received_payloads = {raw.split(b" ", 1)[1] for raw in journal.read_bytes().splitlines()}
    capture_deltas = [ln.payload for ln in read_capture(v2_capture, Rejects("test")) if ln.kind == RECV
                      and b'"orderBookL2_25.' in ln.payload and b'"type":"delta"' in ln.payload]
    missed = sum(p not in received_payloads for p in capture_deltas)
    assert len(capture_deltas) == 3252 and after_snapshot + missed == 3252
    dec = client.decoder
    assert dec.legacy_checked == dec.legacy_ok == after_snapshot
    assert sorted(anchored) == sorted(V2_SYMBOLS)
    live = live_tables(batches)
    assert live["trade"].num_rows == sum(len(m["data"]) for m in msgs if m["topic"].startswith("trade."))
    states = [r["state"] for r in statuses(batches)]
    assert states.count("synced") == 8 and "gap" not in states
    assert_journal_equals_live("bybit", journal, live)


def v2_fault_candidates(capture: Path) -> tuple[list[int], list[int], list[str]]:
    """Tape indices where a drop (an insert whose id a later delta of the symbol touches) or a
    reorder (that later delta is the very next frame) must break the v2 book; each frame's location."""
    tape, locations = [], []
    for line in read_capture(capture, Rejects("test")):
        msg = orjson.loads(line.payload) if line.kind == RECV else None
        if isinstance(msg, dict) and "topic" in msg:
            tape.append(msg)
            locations.append(line.location)

    def ids(m: dict, kinds: tuple[str, ...]) -> set[str]:
        if m.get("type") != "delta" or not m["topic"].startswith("orderBookL2"):
            return set()
        return {str(r["id"]) for k in kinds for r in m["data"].get(k, [])}

    drops, reorders = [], []
    for i, m in enumerate(tape):
        inserted = ids(m, ("insert",))
        for j in range(i + 1, min(len(tape), i + 40)) if inserted else ():
            if tape[j]["topic"] != m["topic"]:
                continue
            if inserted & ids(tape[j], ("update", "delete")):
                drops.append(i)
                if j == i + 1:
                    reorders.append(i)
                break
            if inserted & ids(tape[j], ("insert",)):
                break
    return drops, reorders, locations


def test_v2_injected_faults_are_detected_and_resynced(v2_capture: Path, tmp_path: Path) -> None:
    drops, reorders, locations = v2_fault_candidates(v2_capture)
    plan = ["reorder", "drop", "disconnect"]  # reorder candidates are the rarest: first

    # 30 s of capture at 5x: room after each resync for the next fault.
    with ReplayServer("bybit", [v2_capture], speed=5).run_in_thread() as srv:
        client = BybitClient(V2_SYMBOLS, protocol="v2", endpoint=srv.ws_url, journal=tmp_path / "j",
                             settings=ConnectorSettings(seed=4, backoff_initial_s=0.05))

        offsets: dict[int, int] = {}

        def inject(batch: LiveBatch) -> None:
            st = batch.status.column("state").to_pylist()
            # the next fault only once the one before it has happened: a far-off reorder candidate
            # must not be overtaken by a nearer drop planned while the book was still synced
            waiting = len(srv.injected) < 3 - len(plan)
            if plan and not waiting and ("synced" in st) and all(client.sync.synced(s) for s in V2_SYMBOLS):
                kind = plan.pop(0)
                ahead = srv.frames_served + 60
                # fault indices count the frames routed to a connection; a frame that passed while a
                # symbol was being resubscribed (more of them the slower this machine) took none, so
                # tape position = index + frames unrouted so far (nothing is unrouted while all are
                # synced, so the offset holds for the frames ahead)
                off = srv.frames_unrouted
                pool = {"drop": drops, "reorder": reorders}.get(kind, range(ahead + off, ahead + off + 1))
                index = next(i for i in pool if i - off >= ahead) - off
                offsets[index] = off
                srv.add_fault(f"{kind}@{index}")

        batches = run_client(srv, client, is_topic, inject)
        injected = list(srv.injected)
    assert [f.kind for f in injected] == ["reorder", "drop", "disconnect"]
    meant = [(f.kind, f.index, f.location, locations[f.index + offsets[f.index]]) for f in injected]
    # the drop and the reorder hit the frames chosen for them; a disconnect may land on any frame (a
    # frame that passes while the client resubscribes takes no index, shifting later indices by one)
    assert all(f.location == locations[f.index + offsets[f.index]]
               for f in injected if f.kind != "disconnect"), meant
    rows = statuses(batches)
    states = [r["state"] for r in rows]
    assert states.count("gap") == 2 and states.count("disconnected") == len(V2_SYMBOLS)  # a row per symbol
    # the two broken symbols, then all eight after the reconnect, recover from fresh snapshots
    assert states.count("recovered") == 2 + len(V2_SYMBOLS)
    assert all("not held" in r["detail"] or " held" in r["detail"] for r in rows if r["state"] == "gap")
    live = live_tables(batches)
    assert assert_nothing_valid_while_broken(live["book_delta"]) == 2 == count_gaps(batches)
    assert_journal_equals_live("bybit", journal_file(tmp_path / "j", "bybit"), live,
                               live_bits=F_MAYBE_BAD_BOOK | F_GAP)
