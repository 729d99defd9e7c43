"""The flow's publisher -> the server's relay -> a WebSocket client, in one process with real sockets."""

from __future__ import annotations

import socket
import time

import orjson
import pyarrow as pa
import pytest
from websockets.sync.client import connect

from tapeflow.errors import ConfigError
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, STATUS
from tapeflow.secrets import Secret
from tapeflow.serve.app import build_app
from tapeflow.serve.publish import Publisher
from tapeflow.serve.settings import ServeSettings
from tests.serve.server import get_json, serving

T = 1_704_067_200_000_000_000


def snapshot(bid: int, ask: int, ts: int) -> pa.Table:
    return pa.table(
        {
            "ts_event_ns": [ts],
            "ts_recv_ns": [ts],
            "venue": ["sim"],
            "symbol": ["X"],
            "sequence": [1],
            "levels": [2],
            "bid_price_nanos": [[bid, bid - 1]],
            "bid_size_nanos": [[5, 6]],
            "ask_price_nanos": [[ask, ask + 1]],
            "ask_size_nanos": [[7, 8]],
            "flags": [0],
        },
        schema=BOOK_SNAPSHOT.arrow_schema(),
    )


def bar(close: int, revision: int) -> pa.Table:
    return pa.table(
        {
            "ts_event_ns": [T],
            "ts_recv_ns": [T],
            "venue": ["sim"],
            "symbol": ["X"],
            "interval": ["1m"],
            "open_price_nanos": [10],
            "high_price_nanos": [max(12, close)],
            "low_price_nanos": [9],
            "close_price_nanos": [close],
            "volume_nanos": [3],
            "vwap_price_nanos": [11],
            "trade_count": [2],
            "buy_volume_nanos": [2],
            "sell_volume_nanos": [1],
            "flags": [0],
            "revision": [revision],
        },
        schema=BAR.arrow_schema(),
    )


def status(state: str) -> pa.Table:
    return pa.table(
        {
            "ts_event_ns": [-1],
            "ts_recv_ns": [T],
            "venue": ["sim"],
            "symbol": ["X"],
            "state": [state],
            "sequence": [-1],
            "until_ns": [-1],
            "detail": ["why"],
        },
        schema=STATUS.arrow_schema(),
    )


def wait_for(predicate, timeout_s: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_publisher_binds_loopback_only() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        Publisher("0.0.0.0:0")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        Publisher("127.0.0.1")


def test_rows_reach_a_websocket_and_the_state(tmp_path) -> None:  # noqa: ANN001
    publisher = Publisher("127.0.0.1:0")
    app = build_app(ServeSettings(lake=tmp_path / "lake", live=("127.0.0.1", publisher.port)))
    try:
        with serving(app) as base:
            wait_for(lambda: publisher.subscribers == 1)
            ws_url = base.replace("http://", "ws://") + "/ws/live"
            with connect(ws_url) as ws:
                hello = orjson.loads(ws.recv(timeout=10))
                assert (
                    hello["type"] == "hello" and hello["live"] is True and hello["state"]["connected"] is True
                )
                publisher.publish("book_snapshot", snapshot(100, 101, T))
                publisher.publish("bar", bar(11, 0))
                publisher.publish("bar", bar(13, 1))  # a late trade restates the bar
                publisher.publish("order_event", snapshot(1, 2, T))  # not dashboard data: not published
                publisher.publish("status", status("degraded"))
                got = [orjson.loads(ws.recv(timeout=10)) for _ in range(4)]
            assert [m["table"] for m in got] == ["book_snapshot", "bar", "bar", "status"]
            assert got[0]["rows"][0]["bid_price_nanos"] == [100, 99]
            status_code, live = get_json(base + "/api/v1/live")
            inst = live["instruments"]["sim|X"]
            assert inst["snapshot"]["ask_price_nanos"][0] == 101
            assert inst["bars"]["1m"]["close_price_nanos"] == 13 and inst["bars"]["1m"]["revision"] == 1
            status_code, feed = get_json(base + "/api/v1/feed")
            assert feed["feeds"] == [
                {
                    "venue": "sim",
                    "symbol": "X",
                    "state": "degraded",
                    "since_ns": T,
                    "detail": "why",
                    "counts": {"degraded": 1},
                    "rejects": {},
                    "source": "live",
                }
            ]
            status_code, instruments = get_json(base + "/api/v1/instruments")
            assert instruments["instruments"][0]["live"] is True
    finally:
        publisher.close()


def test_a_subscriber_that_stops_reading_is_dropped_not_waited_for() -> None:
    publisher = Publisher("127.0.0.1:0", queue_lines=4)
    stuck = socket.create_connection(("127.0.0.1", publisher.port))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        wait_for(lambda: publisher.subscribers == 1)
        big = pa.concat_tables([snapshot(100, 101, T)] * 2000)  # ~0.3 MB a line: socket buffers fill fast
        for _ in range(200):
            publisher.publish("book_snapshot", big)
            if publisher.dropped_subscribers:
                break
        assert publisher.dropped_subscribers == 1 and publisher.subscribers == 0
    finally:
        stuck.close()
        publisher.close()


def test_tapeflow_live_publish_reaches_the_flows_settings() -> None:
    from tapeflow.cli import _parser
    from tapeflow.live.cli import live_env
    from tapeflow.settings import LiveSettings, Settings

    def env(*extra: str) -> dict[str, str]:
        args = _parser().parse_args(["live", "--capture", "a.gz", "--format", "sim", *extra])
        return live_env(args, Settings())

    assert LiveSettings.from_env(env("--publish", "127.0.0.1:8765")).publish == "127.0.0.1:8765"
    assert LiveSettings.from_env(env()).publish is None
    with pytest.raises(ConfigError, match="loopback"):
        env("--publish", "0.0.0.0:8765")
    with pytest.raises(ConfigError, match="HOST:PORT"):
        env("--publish", "8765")


def test_the_websocket_needs_the_token_when_one_is_set(tmp_path) -> None:  # noqa: ANN001
    from websockets.exceptions import InvalidStatus

    token = "ws-token-0123456789abcdef"
    publisher = Publisher("127.0.0.1:0")
    app = build_app(ServeSettings(lake=tmp_path / "lake", live=("127.0.0.1", publisher.port),
                                  token=Secret(token, "test")))
    try:
        with serving(app) as base:
            url = base.replace("http://", "ws://") + "/ws/live"
            with pytest.raises(InvalidStatus) as refused:  # closed before accept: the handshake is refused
                with connect(url) as ws:
                    ws.recv(timeout=10)
            assert refused.value.response.status_code == 403
            with connect(url + f"?token={token}") as ws:
                assert orjson.loads(ws.recv(timeout=10))["type"] == "hello"
    finally:
        publisher.close()
