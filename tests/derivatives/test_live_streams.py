"""The derivatives websocket channels through the live connectors, served by the replay server
from the real captures: live rows == file decode rows, row for row (receive time aside)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from tapeflow.derivatives import decode
from tapeflow.errors import ConfigError
from tapeflow.live.connector import ConnectorSettings
from tapeflow.venues.base import merge
from tapeflow.venues.binance.client import BinanceDerivativesClient
from tapeflow.venues.bybit.client import BybitDerivativesClient
from tapeflow.venues.okx.client import OkxDerivativesClient
from tests.conftest import need
from tests.derivatives.live_streams import (
    FORMATS,
    PAIRS,
    real_frames,
    records,
    rows,
    run_live,
    symbols_of,
    write_capture,
)

CLIENTS = {"binance": BinanceDerivativesClient, "bybit": BybitDerivativesClient, "okx": OkxDerivativesClient}
SETTINGS = ConnectorSettings(seed=3, stale_after_s=60)


def _client(venue: str, symbols: list[str], **options: object):
    def make(srv):
        return CLIENTS[venue](symbols, endpoint=srv.ws_url, settings=SETTINGS, **options)
    return make


def _compare(live: dict, batch: dict) -> None:
    data = sorted((set(live) | set(batch)) - {"rejected"})
    for name in data:
        assert name in live and name in batch, name
        assert rows(live[name]) == rows(batch[name]), name


@pytest.mark.parametrize("venue", sorted(CLIENTS))
def test_live_through_the_replay_server_equals_the_file_decode(real_data: Path, tmp_path: Path,
                                                                venue: str) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, venue)
    path = write_capture(tmp_path / f"{venue}.jsonl", frames)
    batch = merge(list(decode(FORMATS[venue], [path])))
    symbols = symbols_of(frames, venue)
    options = {"liquidations": "both"} if venue == "bybit" else {}  # the tape has both topics
    _, srv, batches = run_live(_client(venue, symbols, **options), venue, [path])
    live = records(batches)
    assert srv.bad_lines == 0 and srv.frames_served > 0
    _compare(live, batch)
    counts = {k: t.num_rows for k, t in batch.items()}
    print(venue, len(frames), "frames ->", counts)
    assert sum(counts.values()) >= len(frames)
    # the only dead letters: the venue's answer to a subscription the tape has no frame for
    rejected = live.get("rejected")
    reasons = set(rejected.column("reason").to_pylist()) if rejected is not None else set()
    assert reasons <= {"venue_error"}, reasons
    assert "rejected" not in batch


def test_binance_all_market_liquidations(real_data: Path, tmp_path: Path) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, "binance")
    path = write_capture(tmp_path / "binance.jsonl", frames)
    batch = merge(list(decode("binance-futures", [path])))
    _, srv, batches = run_live(_client("binance", ["BTCUSDT"], all_liquidations=True), "binance", [path])
    live = records(batches)
    assert rows(live["liquidation"]) == rows(batch["liquidation"]) and batch["liquidation"].num_rows == 2
    assert b'"stream":"!forceOrder@arr"' in b"".join(f.data for b in batches for f in b.frames)


_DAMAGE = {
    "binance": [(b'"p":"', b'"p":"x'), (b'"S":"', b'"S":"Q')],
    "bybit": [(b'"markPrice":"', b'"markPrice":"-'), (b'"data":', b'"data_":')],
    "okx": [(b'"markPx":"', b'"markPx":"1e'), (b'"oi":"', b'"oi":"-')],
}


@pytest.mark.parametrize("venue", sorted(CLIENTS))
def test_bad_frames_are_dead_letters_with_a_reason(real_data: Path, tmp_path: Path, venue: str) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, venue)
    damaged = []
    for old, new in _DAMAGE[venue]:
        hit = next(f for f in frames if old in f)
        damaged.append(hit.replace(old, new, 1))
    path = write_capture(tmp_path / f"{venue}.jsonl", frames + damaged)
    batch = merge(list(decode(FORMATS[venue], [path])))
    options = {"liquidations": "both"} if venue == "bybit" else {}
    _, _, batches = run_live(_client(venue, symbols_of(frames, venue), **options), venue, [path])
    live = records(batches)
    bad = [r for r in live["rejected"].to_pylist() if r["reason"] != "venue_error"]
    want = batch["rejected"].to_pylist()
    assert len(want) == len(damaged)
    assert [(r["reason"], r["raw"]) for r in bad] == [(r["reason"], r["raw"]) for r in want]
    assert all(r["reason"] not in ("", "internal") and r["detail"] for r in bad)


def test_okx_pong_is_a_control_frame() -> None:
    from tapeflow.derivatives import decoder
    from tapeflow.wire.capture import RECV, CaptureLine

    dec = decoder("okx")
    dec.feed(CaptureLine(1, RECV, "", b"pong", "live:1"))
    assert "rejected" not in dec.flush(0, "okx").tables and dec.quiet_frames["pong"] == 1


def test_client_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="USD-M"):
        BinanceDerivativesClient(["BTCUSDT"], market="spot")
    with pytest.raises(ConfigError, match="speed"):
        BinanceDerivativesClient(["BTCUSDT"], mark_speed="5s")
    with pytest.raises(ConfigError, match="linear or inverse"):
        BybitDerivativesClient(["BTCUSDT"], category="spot")
    with pytest.raises(ConfigError, match="liquidations"):
        BybitDerivativesClient(["BTCUSDT"], liquidations="some")
    with pytest.raises(ConfigError, match="channels"):
        OkxDerivativesClient(["BTC-USDT-SWAP"], channels=["books"])
    okx = OkxDerivativesClient(["BTC-USDT-SWAP", "BTC-USD-240628", "BTC-USD-240628-60000-C"])
    args = msgspec.json.decode(okx.subscribe_messages()[0])["args"]
    assert {"channel": "funding-rate", "instId": "BTC-USD-240628"} not in args
    assert {"channel": "index-tickers", "instId": "BTC-USD"} in args
    types = [a["instType"] for a in args if a["channel"] == "liquidation-orders"]
    assert types == ["SWAP", "FUTURES", "OPTION"]
