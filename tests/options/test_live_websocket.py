"""The options flow over Deribit's websocket: the ticker client (``public/get_instruments`` expansion,
``ticker.<option>.100ms`` subscriptions in paced batches) against the replay server's Deribit protocol
on the real captures gives ``option_ticker`` and ``option_surface`` rows equal to ``tapeflow options
--surface`` over the same files; a disconnect loses nothing once resubscribed; a garbled ticker is a
dead letter."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from bytewax.testing import TestingSink, run_main

from flows.market import MarketSinks
from flows.operators import gather
from flows.options import OptionLiveSource, build_options_flow
from tapeflow.errors import ConfigError
from tapeflow.live.connector import ConnectorSettings
from tapeflow.live.frames import RawFrame
from tapeflow.options.definitions import from_deribit_instruments
from tapeflow.replay import ReplayServer
from tapeflow.replay.protocol import adapter_for, loads
from tapeflow.venues.deribit.tickers import DeribitTickerClient
from tests.conftest import need
from tests.options.test_live_options import SORT_S, SORT_T, _batch, _rows

FIXTURE = Path(__file__).parents[1] / "fixtures" / "deribit" / "get_instruments_option.json"
IDLE_STOP_NS = 4_000_000_000  # the tape is served in well under a second; then the feed goes quiet


def _captures(real_data: Path) -> list[Path]:
    paths = sorted(need(real_data / "options" / "deribit").glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures, found {len(paths)}")
    return paths


def _live_ws(paths: list[Path], *, faults: tuple[str, ...] = (), symbols: tuple[str, ...] = ("BTC", "ETH"),
             stale_after_s: float = 30.0, ping_interval_s: float | None = None, duration_ns: int | None = None
             ) -> tuple[dict[str, pa.Table], pa.Table, ReplayServer]:
    got: list = []
    srv = ReplayServer("deribit", paths, speed=None, faults=list(faults))
    with srv.run_in_thread():
        settings = ConnectorSettings(backoff_initial_s=0.05, backoff_max_s=0.2, seed=3,
                                     stale_after_s=stale_after_s, ping_interval_s=ping_interval_s)
        source = OptionLiveSource(list(symbols), endpoint=srv.ws_url, duration_ns=duration_ns,
                                  idle_stop_ns=None if duration_ns else IDLE_STOP_NS,
                                  client_options={"settings": settings})
        run_main(build_options_flow(source, MarketSinks(tables=TestingSink(got))))
    tables = gather(got)
    return tables, tables.get("status", pa.table({})), srv


def _without_recv(table: pa.Table, order: list) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "ts_recv_ns"} for r in _rows(table, order)]


def _states(status: pa.Table, symbol: str) -> list[str]:
    rows = [r for r in status.to_pylist() if r["symbol"] == symbol]
    return [r["state"] for r in rows]


@pytest.mark.realdata
def test_websocket_run_equals_batch_row_for_row_on_the_real_captures(real_data: Path, tmp_path: Path) -> None:
    paths = _captures(real_data)
    live, status, srv = _live_ws(paths)
    tickers, surface = _batch(paths, tmp_path)
    print(f"websocket: {live['option_ticker'].num_rows} tickers, {live['option_surface'].num_rows} surface "
          f"rows, {srv.frames_served} frames served")
    assert (live["option_ticker"].num_rows, live["option_surface"].num_rows) == (365, 36)
    # ts_recv_ns is the live receive time, not the capture's: every other column is the batch's
    assert _without_recv(live["option_ticker"], SORT_T) == _without_recv(tickers, SORT_T)
    assert _rows(live["option_surface"], SORT_S) == _rows(surface, SORT_S)
    assert "rejected" not in live  # only ticker channels were subscribed: no book/trades frame came
    for symbol in ("BTC", "ETH"):
        assert _states(status, symbol)[:3] == ["connected", "syncing", "synced"]


@pytest.mark.realdata
def test_a_disconnect_loses_nothing_once_resubscribed(real_data: Path, tmp_path: Path) -> None:
    """Expectation: the replay server cuts the connection before ticker 100 and holds the tape until
    the client subscribes again; a resubscribed ticker channel first gets the instrument's last
    ticker (a ticker is the whole state), so ticker 100 arrives then, and the instruments whose
    last ticker had arrived get it again (a duplicate, same content). Every batch ticker is there,
    and the surfaces, built from the last ticker per instrument, equal the batch's row for row."""
    paths = _captures(real_data)
    live, status, srv = _live_ws(paths, faults=("disconnect@100",))
    tickers, surface = _batch(paths, tmp_path)
    assert [f.kind for f in srv.injected] == ["disconnect"]
    got = _without_recv(live["option_ticker"], SORT_T)
    distinct = [r for i, r in enumerate(got) if i == 0 or r != got[i - 1]]
    print(f"after the disconnect: {len(got)} tickers ({len(got) - len(distinct)} re-sent), "
          f"batch {len(tickers)}")
    assert distinct == _without_recv(tickers, SORT_T)
    assert 0 < len(got) - len(distinct) <= 20  # at most one re-sent ticker per instrument
    assert _rows(live["option_surface"], SORT_S) == _rows(surface, SORT_S)
    for symbol in ("BTC", "ETH"):
        states = _states(status, symbol)
        assert states.count("synced") == 2 and "disconnected" in states, states  # resubscribed
        assert states.index("disconnected") < len(states) - 1 - states[::-1].index("synced")


@pytest.mark.realdata
def test_a_stall_makes_the_feed_stale_and_the_resubscribed_run_equals_batch(real_data: Path,
                                                                          tmp_path: Path) -> None:
    """The server goes silent 8 s before ticker 40 of the 2021-04-17 capture (its answers to the
    0.5 s pings too); the client calls the feed stale after 2 s, reconnects and resubscribes, which
    ends the stall (ticker 40 is then not sent on the old connection, and comes as its
    instrument's last ticker on the new one). The pings keep the feed from going stale after the
    tape, so the run ends on a fixed duration."""
    capture = _captures(real_data)[1]
    live, status, srv = _live_ws([capture], faults=("stall@40:8s",), stale_after_s=2.0, ping_interval_s=0.5,
                                 duration_ns=20_000_000_000)
    tickers, surface = _batch([capture], tmp_path)
    assert [f.kind for f in srv.injected] == ["stall"]
    got = _without_recv(live["option_ticker"], SORT_T)
    distinct = [r for i, r in enumerate(got) if i == 0 or r != got[i - 1]]
    assert distinct == _without_recv(tickers, SORT_T) and len(got) > len(distinct)
    assert _rows(live["option_surface"], SORT_S) == _rows(surface, SORT_S)
    for symbol in ("BTC", "ETH"):
        states = _states(status, symbol)
        assert "stale" in states and states.count("synced") >= 2, states
        assert states.index("stale") < len(states) - 1 - states[::-1].index("synced")  # resubscribed after


@pytest.mark.realdata
def test_a_garbled_ticker_is_a_dead_letter_and_the_rest_equals_batch(real_data: Path, tmp_path: Path) -> None:
    capture = _captures(real_data)[1]
    lines = capture.read_text().splitlines()
    hit = next(i for i, line in enumerate(lines) if '"channel":"ticker.BTC-' in line and '"mark_iv":' in line)
    lines[hit] = re.sub(r'"mark_iv":[0-9.]+', '"mark_iv":"garbled"', lines[hit], count=1)
    damaged = tmp_path / capture.name
    damaged.write_text("\n".join(lines) + "\n")
    live, _, _ = _live_ws([damaged])
    tickers, surface = _batch([damaged], tmp_path)
    [dead] = live["rejected"].to_pylist()
    assert (dead["reason"], dead["venue"]) == ("bad_number", "deribit") and "mark_iv" in dead["detail"]
    assert b'"mark_iv":"garbled"' in dead["raw"]
    assert live["option_ticker"].num_rows == tickers.num_rows == 91  # 92 captured, one garbled
    assert _without_recv(live["option_ticker"], SORT_T) == _without_recv(tickers, SORT_T)
    assert _rows(live["option_surface"], SORT_S) == _rows(surface, SORT_S)


def test_replay_answers_get_instruments_from_the_tape_or_a_recorded_body(tmp_path: Path) -> None:
    def note(name: str) -> str:
        data = {"instrument_name": name, "timestamp": 1618677848563, "underlying_price": 60000.0,
                "mark_price": 0.05, "mark_iv": 70.0}
        return json.dumps({"jsonrpc": "2.0", "method": "subscription",
                           "params": {"channel": f"ticker.{name}.raw", "data": data}})

    names = ["BTC-30APR21-60000-C", "BTC-30APR21-60000-P", "ETH-30APR21-2000-C", "XRP_USDC-30MAY25-2d2-C"]
    cap = tmp_path / "t.txt"
    cap.write_text("".join(f"{1618677848000000000 + i} {note(n)}\n" for i, n in enumerate(names)))
    adapter = adapter_for("deribit")
    adapter.load([cap])
    session = adapter.session(1)

    def ask(currency: str, expired: bool = False) -> bytes:
        params = {"currency": currency, "kind": "option", "expired": expired}
        request = {"jsonrpc": "2.0", "id": 9, "method": "public/get_instruments", "params": params}
        [answer] = session.on_message(json.dumps(request)).send
        return answer

    definitions, rejected = from_deribit_instruments(ask("BTC"))
    assert definitions.column("symbol").to_pylist() == names[:2] and rejected.num_rows == 0
    assert from_deribit_instruments(ask("USDC"))[0].column("symbol").to_pylist() == [names[3]]
    assert loads(ask("BTC", expired=True))["result"] == []
    # a get_instruments answer recorded in the capture is served instead of the composed list
    recorded = orjson.loads(FIXTURE.read_bytes())
    cap.write_text(f"1618677847000000000 {orjson.dumps(recorded).decode()}\n" + cap.read_text())
    adapter = adapter_for("deribit")
    adapter.load([cap])
    request = {"jsonrpc": "2.0", "id": 4, "method": "public/get_instruments",
               "params": {"currency": "BTC", "kind": "option"}}
    answer = loads(adapter.session(1).on_message(json.dumps(request)).send[0])
    btc = [i for i in recorded["result"] if i["kind"] == "option" and i["base_currency"] == "BTC"]
    assert answer["id"] == 4 and answer["result"] == btc and len(btc) == 2
    # the ticker a mid-stream subscriber gets first is the last one the tape passed, as captured
    for frame in adapter.load([cap]):
        adapter.apply(frame)
    assert adapter.snapshot(("ticker", names[0])) == [note(names[0]).encode()]


def test_client_expands_underlyings_and_subscribes_in_paced_batches() -> None:
    client = DeribitTickerClient("BTC,ETH-30APR21-2000-C", channels_per_request=2)
    assert (client.underlyings, client.options) == (["BTC"], ["ETH-30APR21-2000-C"])
    batches = client.subscribe_batches(["A-1", "B-1", "C-1", "A-1", "D-1"])
    channels = [json.loads(m)["params"]["channels"] for _, m in batches]
    assert channels == [["ticker.A-1.100ms", "ticker.B-1.100ms"], ["ticker.C-1.100ms", "ticker.D-1.100ms"]]
    assert all(json.loads(m)["method"] == "public/subscribe" for _, m in batches)
    with pytest.raises(ConfigError, match="interval"):
        DeribitTickerClient("BTC", interval="1s")
    with pytest.raises(ConfigError, match="no Deribit option"):
        DeribitTickerClient("BTC-PERPETUAL")

    async def expand() -> list[str]:
        sent: list[str] = []

        async def send(message: str) -> None:
            sent.append(message)

        client.send = send  # type: ignore[method-assign]
        await client.on_open()
        [request] = [json.loads(m) for m in sent]
        assert request["method"] == "public/get_instruments"
        assert request["params"] == {"currency": "BTC", "kind": "option", "expired": False}
        answer = FIXTURE.read_bytes().replace(b'"id": 1', f'"id": {request["id"]}'.encode())
        client.after_frame(RawFrame("deribit", 1, answer))
        await asyncio.gather(*client._tasks)
        return sent[1:]

    subscribes = asyncio.run(expand())
    channels = [c for m in subscribes for c in json.loads(m)["params"]["channels"]]
    # the answer's linear XRP_USDC option and its perpetual are no BTC options
    assert channels == ["ticker.ETH-30APR21-2000-C.100ms", "ticker.BTC-30APR21-60000-C.100ms",
                        "ticker.BTC-30APR21-60000-P.100ms"]
    assert [len(json.loads(m)["params"]["channels"]) for m in subscribes] == [2, 1]
    assert client.subscribe_limiter.granted == 2


@pytest.mark.realdata
def test_tapeflow_live_venue_deribit_options_writes_the_batch_rows_to_the_lake(real_data: Path,
                                                                                tmp_path: Path) -> None:
    from tapeflow.cli import main
    from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
    from tapeflow.schemas.records import STATUS
    from tapeflow.storage import lake

    paths = _captures(real_data)
    root = tmp_path / "lake"
    with ReplayServer("deribit", paths, speed=None).run_in_thread() as srv:
        assert main(["live", "--venue", "deribit", "--options", "--symbols", "BTC,ETH",
                     "--endpoint", srv.ws_url, "--idle-exit", "4s", "--lake", str(root), "--no-clickhouse",
                     "--journal", str(tmp_path / "journal")]) == 0
    tickers, surface = _batch(paths, tmp_path)
    stored_t = lake.read(OPTION_TICKER, root).select(OPTION_TICKER.column_names)
    stored_s = lake.read(OPTION_SURFACE, root).select(OPTION_SURFACE.column_names)
    assert _without_recv(stored_t, SORT_T) == _without_recv(tickers.select(stored_t.column_names), SORT_T)
    assert _rows(stored_s, SORT_S) == _rows(surface.select(stored_s.column_names), SORT_S)
    states = lake.read(STATUS, root).column("state").to_pylist()
    assert {"connected", "syncing", "synced"} <= set(states)  # per symbol, on connect and once subscribed
    # every frame was journaled before it was decoded: the batch over the journal is the live run,
    # receive times included
    journal = sorted(p for p in (tmp_path / "journal").rglob("*") if p.is_file())
    (tmp_path / "from_journal").mkdir()
    journaled, _ = _batch(journal, tmp_path / "from_journal")
    assert _rows(stored_t, SORT_T) == _rows(journaled.select(stored_t.column_names), SORT_T)


def test_options_flag_refuses_another_venue(capsys: pytest.CaptureFixture[str]) -> None:
    from tapeflow.cli import main

    assert main(["live", "--venue", "binance", "--options", "--symbols", "BTCUSDT", "--no-lake",
                 "--no-clickhouse"]) == 2
    assert "--options reads Deribit option tickers" in capsys.readouterr().err
