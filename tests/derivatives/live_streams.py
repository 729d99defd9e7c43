"""Real derivatives websocket frames as capture files for the replay server, and a driver that runs
a derivatives client against it (tests/derivatives/test_live_streams.py, tests/flows).

The frames are every real websocket message of the channels the live clients subscribe to that
the data folder holds: the raw inputs of Tardis's mapper pairs (``derivatives/tardis_normalization``)
and nautilus_trader's recorded stream messages (``derivatives/nautilus_fixtures``; Binance's come
as raw-stream events and are put in the combined-stream envelope the replay server serves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa

from tapeflow.derivatives import channel_of
from tapeflow.live.connector import Connector
from tapeflow.live.frames import LiveBatch
from tapeflow.replay import ReplayServer
from tapeflow.schemas import ALL_RECORDS, concat
from tests.derivatives.tardis_pairs import PAIRS

T0 = 1_700_000_000_000_000_000
FIXTURES = "derivatives/nautilus_fixtures"

# venue -> (Tardis tests, channels the live client subscribes, nautilus websocket fixtures)
SOURCES: dict[str, tuple[set[str], set[str], list[str]]] = {
    "binance": ({"map binance futures messages"}, {"markPrice", "forceOrder"},
                ["binance_mark_price_stream.json", "binance_liquidation_stream.json"]),
    # COIN-M (BinanceDerivativesClient(market="coinm")): Tardis's binance-delivery messages
    "binance-coinm": ({"map binance delivery messages"}, {"markPrice", "forceOrder", "indexPrice"}, []),
    "bybit": ({"map bybit messages"}, {"tickers", "liquidation", "allLiquidation"},
              ["bybit_ws_ticker_linear.json"]),
    "okx": ({"map okex-swap messages", "map okex-futures messages", "map okex-options messages"},
            {"funding-rate", "mark-price", "index-tickers", "open-interest", "liquidation-orders"},
            ["okx_ws_funding_rate.json"]),
}
FORMATS = {"binance": "binance-futures", "bybit": "bybit", "okx": "okx"}


def real_frames(root: Path, venue: str) -> list[bytes]:
    """The venue's real derivatives websocket frames, in file order (Tardis pairs, then fixtures)."""
    tests, channels, fixtures = SOURCES[venue]
    out = []
    for raw in (root / PAIRS).read_bytes().splitlines():
        pair = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        if msgspec.json.decode(pair["test"]) not in tests:
            continue
        msg = msgspec.json.decode(pair["input"])
        generated = msg.get("generated") or msg.get("arg", {}).get("generated")  # Tardis's, from REST
        if channel_of(msg) in channels and not generated:
            out.append(msgspec.json.encode(msg))
    for name in fixtures:
        msg = msgspec.json.decode((root / FIXTURES / name).read_bytes())
        if venue == "binance":  # a raw-stream event: the combined stream wraps it
            symbol = (msg.get("s") or msg["o"]["s"]).lower()
            stream = "markPrice@1s" if msg["e"] == "markPriceUpdate" else msg["e"]
            msg = {"stream": f"{symbol}@{stream}", "data": msg}
        out.append(msgspec.json.encode(msg))
    return out


def write_capture(path: Path, frames: list[bytes]) -> Path:
    """``<recv_ns> <json>`` lines, 1 ms apart."""
    path.write_bytes(b"".join(b"%d %s\n" % (T0 + i * 1_000_000, f) for i, f in enumerate(frames)))
    return path


def symbols_of(frames: list[bytes], venue: str) -> list[str]:
    """The instruments the frames are about, as the venue's client takes them."""
    out: dict[str, None] = {}
    for raw in frames:
        msg = msgspec.json.decode(raw)
        if venue.startswith("binance"):
            data = msg["data"]
            if data["e"] != "indexPriceUpdate":  # a COIN-M pair's index: its symbols subscribe it
                out[(data.get("s") or data["o"]["s"]).upper()] = None
        elif venue == "bybit":
            out[msg["topic"].split(".")[-1]] = None
        elif "instId" in msg["arg"] and msg["arg"]["channel"] != "index-tickers":
            out[msg["arg"]["instId"]] = None
    return list(out)


async def _drive(client: Connector, srv: ReplayServer, idle_s: float, limit_s: float) -> list[LiveBatch]:
    batches: list[LiveBatch] = []

    async def consume() -> None:
        async for batch in client.batches():
            batches.append(batch)

    task = asyncio.get_running_loop().create_task(consume())
    start = seen_at = time.monotonic()
    seen = 0
    while time.monotonic() - start < limit_s and not task.done():
        await asyncio.sleep(0.05)
        if len(batches) != seen:
            seen, seen_at = len(batches), time.monotonic()
        elif srv.drained and time.monotonic() - seen_at > idle_s:
            break
    client.close()
    await asyncio.wait_for(task, 10)
    return batches


def run_live(make_client: Callable[[ReplayServer], Connector], fmt: str, paths: list[Path], *,
             idle_s: float = 0.5, limit_s: float = 30.0) -> tuple[Connector, ReplayServer, list[LiveBatch]]:
    """Serve ``paths`` (replay format ``fmt``) from a thread, run the client until the tape is
    served and nothing came for ``idle_s``; the client, the server and every batch."""
    with ReplayServer(fmt, paths).run_in_thread() as srv:
        client = make_client(srv)
        batches = asyncio.run(_drive(client, srv, idle_s, limit_s))
    return client, srv, batches


def records(batches: list[LiveBatch]) -> dict[str, pa.Table]:
    """Every batch's records, concatenated per record."""
    names = sorted({n for b in batches for n in b.records})
    return {n: concat(ALL_RECORDS[n], [b.records[n] for b in batches if n in b.records]) for n in names}


def rows(table: pa.Table) -> list[dict[str, Any]]:
    """The rows as comparable text (NaN == NaN) without the receive time, which live stamps at
    its own clock: an event time that is the receive time (a frame without a venue time: OKX
    ``funding-rate`` pushes before 2022) reads ``"recv"``."""
    out = []
    for r in table.to_pylist():
        recv = r.pop("ts_recv_ns", None)
        if "ts_event_ns" in r and r["ts_event_ns"] == recv:
            r["ts_event_ns"] = "recv"
        out.append({k: repr(v) for k, v in r.items()})
    return out
