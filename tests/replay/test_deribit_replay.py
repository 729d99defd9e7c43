"""The replay server's Deribit protocol and the Deribit live client: the real option capture served
over JSON-RPC ``public/subscribe``, the client's rows equal the batch decode of the capture and its
``prev_change_id`` chain holds; a mid-stream subscriber gets a snapshot its next change links to."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.live import LiveBatch
from tapeflow.live.connector import ConnectorSettings
from tapeflow.replay import ReplayServer
from tapeflow.replay.protocol import adapter_for, loads
from tapeflow.schemas.records import BOOK_DELTA
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.deribit.client import DeribitClient
from tests.conftest import need

CAPTURE = "options/deribit/cryptofeed_DERIBIT.ws.30.0_2021-04-17.txt"
KEY = ("symbol", "sequence", "side", "action", "price_nanos", "size_nanos", "flags", "ts_event_ns")


async def _run(srv: ReplayServer, client: DeribitClient) -> list[LiveBatch]:
    batches: list[LiveBatch] = []

    async def consume() -> None:
        async for batch in client.batches():
            batches.append(batch)

    task = asyncio.get_running_loop().create_task(consume())
    start = time.monotonic()
    while time.monotonic() - start < 30 and not srv.finished:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    client.close()
    await asyncio.wait_for(task, 10)
    return batches


def _rows(table: pa.Table) -> list[tuple]:
    return [tuple(r[k] for k in KEY) for r in table.to_pylist()]


@pytest.mark.realdata
def test_live_client_through_the_replay_server_equals_the_batch_decode(real_data: Path) -> None:
    capture = need(real_data / CAPTURE)
    batch = merge(list(get_format("deribit").decode([capture])))
    symbols = sorted(set(batch["book_delta"].column("symbol").to_pylist()))
    srv = ReplayServer("deribit", [capture])
    with srv.run_in_thread():
        client = DeribitClient(symbols, endpoint=srv.ws_url, trades=True,
                               settings=ConnectorSettings(seed=2, backoff_initial_s=0.1))
        batches = asyncio.run(_run(srv, client))
    live = pa.concat_tables([b.get(BOOK_DELTA) for b in batches])
    print(f"{len(batches)} batches, {live.num_rows} book rows (batch {batch['book_delta'].num_rows}); "
          f"links {client.stats.links_ok}/{client.stats.links}, snapshots {client.stats.snapshots}")
    assert client.connects == 1 and client.stats.breaks == []
    assert (client.stats.snapshots, client.stats.links_ok, client.stats.links) == (10, 46, 46)
    assert sorted(_rows(live)) == sorted(_rows(batch["book_delta"]))


def test_session_speaks_json_rpc_and_a_mid_stream_snapshot_links_to_the_next_change(tmp_path: Path) -> None:
    def note(data: dict) -> str:
        return json.dumps({"jsonrpc": "2.0", "method": "subscription",
                           "params": {"channel": f"book.{data['instrument_name']}.raw", "data": data}})

    snap = {"type": "snapshot", "timestamp": 1, "instrument_name": "BTC-PERPETUAL", "change_id": 5,
            "bids": [["new", 100.0, 1.0], ["new", 99.5, 2.0]], "asks": [["new", 101.0, 3.0]]}
    change = {"type": "change", "timestamp": 2, "instrument_name": "BTC-PERPETUAL", "prev_change_id": 5,
              "change_id": 7, "bids": [["delete", 99.5, 0.0]], "asks": [["change", 101.0, 4.0]]}
    cap = tmp_path / "d.txt"
    cap.write_text(f"1617644856000000000 {note(snap)}\n1617644856000000001 {note(change)}\n")
    adapter = adapter_for("deribit")
    tape = adapter.load([cap])
    for frame in tape:
        adapter.apply(frame)
    [msg] = adapter.snapshot(("book", "BTC-PERPETUAL"))
    data = loads(msg)["params"]["data"]
    assert (data["type"], data["change_id"], data["bids"], data["asks"]) == (
        "snapshot", 7, [["new", 100.0, 1.0]], [["new", 101.0, 4.0]])
    session = adapter.session(1)
    channels = ["book.BTC-PERPETUAL.raw", "book.NOPE.raw"]
    reply = session.on_message(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "public/subscribe",
                                           "params": {"channels": channels}}))
    assert reply.subscribe == [("book", "BTC-PERPETUAL")]
    ack = loads(reply.send[0])
    assert {k: ack.pop(k) for k in ("usIn", "usOut", "usDiff")}["usDiff"] == 0  # as Deribit stamps answers
    assert ack == {"jsonrpc": "2.0", "id": 3, "result": ["book.BTC-PERPETUAL.raw"], "testnet": False}
    assert loads(session.on_message('{"id": 4, "method": "private/buy"}').send[0])["error"]["code"] == -32601
