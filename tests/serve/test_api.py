"""The read API against a real uvicorn over a lake built by the simulator and the live flow: pages,
cursors, downloads, bad parameters, acknowledgements, the token gate, ClickHouse as the source."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tapeflow.errors import ConfigError
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, SIGNAL, STATUS
from tapeflow.secrets import Secret
from tapeflow.serve.app import build_app
from tapeflow.serve.history import LakeHistory, Query, WarehouseHistory, final_bars
from tapeflow.serve.settings import ServeSettings, check_bind, resolve_token
from tapeflow.storage import lake
from tests.serve.conftest import ALERT_ID, REPO, SYMBOL
from tests.serve.server import get, get_json, serving


def test_instruments_and_health(served: str) -> None:
    assert get_json(served + "/health") == (200, {"status": "ok"})
    status, ready = get_json(served + "/ready")
    assert status == 200 and ready["ready"] is True
    status, body = get_json(served + "/api/v1/instruments")
    assert status == 200
    [inst] = body["instruments"]
    assert (inst["venue"], inst["symbol"], inst["live"]) == ("sim", SYMBOL, False)
    assert {"bars", "snapshots", "metrics", "signals", "trades", "status"} <= set(inst["datasets"])


def test_cursor_pages_add_up_to_the_whole_range(served: str, api_lake: Path) -> None:
    bars = lake.read(BAR, api_lake)
    one_second = final_bars(bars.filter(pc.equal(bars.column("interval"), "1s")))
    assert one_second.num_rows >= 8
    got, cursor, pages = [], None, 0
    while True:
        url = served + "/api/v1/bars?interval=1s&limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, body = get_json(url)
        assert status == 200
        got += body["rows"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == -(-one_second.num_rows // 3)
    assert [r["ts_event_ns"] for r in got] == one_second.column("ts_event_ns").to_pylist()
    assert [r["close_price_nanos"] for r in got] == one_second.column("close_price_nanos").to_pylist()


def test_a_cursor_splits_rows_that_share_a_timestamp(served: str) -> None:
    # signals come in bursts stamped alike: walk them one row per page
    status, whole = get_json(served + "/api/v1/signals?limit=10000")
    rows, cursor = [], None
    for _ in range(len(whole["rows"]) + 1):
        status, body = get_json(served + "/api/v1/signals?limit=1" + (f"&cursor={cursor}" if cursor else ""))
        rows += body["rows"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert rows == whole["rows"] and len(rows) > 1


def test_time_range_is_half_open(served: str, api_lake: Path) -> None:
    snaps = lake.read(BOOK_SNAPSHOT, api_lake).column("ts_event_ns").to_pylist()
    start, end = snaps[2], snaps[5]
    status, body = get_json(served + f"/api/v1/snapshots?start={start}&end={end}")
    assert [r["ts_event_ns"] for r in body["rows"]] == snaps[2:5]
    iso = "2024-01-01T00:00:02Z"
    status, body = get_json(served + f"/api/v1/snapshots?start={iso}&end={end}")
    assert [r["ts_event_ns"] for r in body["rows"]] == [
        t for t in snaps if 1_704_067_202_000_000_000 <= t < end
    ]


@pytest.mark.parametrize("fmt", ["arrow", "parquet", "csv"])
def test_downloads_stream_the_whole_range(served: str, api_lake: Path, fmt: str) -> None:
    status, headers, body = get(served + f"/api/v1/snapshots?format={fmt}")
    assert status == 200
    if fmt == "arrow":
        assert headers["content-type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(body).read_all()
    elif fmt == "parquet":
        table = pq.read_table(io.BytesIO(body))
    else:
        assert headers["content-type"].startswith("text/csv")
        table = pacsv.read_csv(io.BytesIO(body))
    expected = lake.read(BOOK_SNAPSHOT, api_lake)
    assert table.num_rows == expected.num_rows
    assert table.column("ts_event_ns").to_pylist() == expected.column("ts_event_ns").to_pylist()
    if fmt != "csv":
        assert table.column("bid_price_nanos").to_pylist() == expected.column("bid_price_nanos").to_pylist()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("/api/v1/bars?start=yesterday", "start"),
        ("/api/v1/bars?venue=", "venue"),
        ("/api/v1/bars?end=-5", "end"),
        ("/api/v1/bars?start=20&end=10", "end"),
        ("/api/v1/bars?limit=0", "limit"),
        ("/api/v1/bars?limit=10001", "limit"),
        ("/api/v1/bars?limit=ten", "limit"),
        ("/api/v1/bars?cursor=abc", "cursor"),
        ("/api/v1/bars?format=xlsx", "format"),
        ("/api/v1/bars?format=csv&limit=5", "limit"),
        ("/api/v1/bars?intervall=1m", "intervall"),
        ("/api/v1/signals?min_confidence=2", "min_confidence"),
        ("/api/v1/signals?min_confidence=nan", "min_confidence"),
        ("/api/v1/feed?kind=whale", "kind"),
        ("/api/v1/runs?limit=-1", "limit"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(served: str, query: str, parameter: str) -> None:
    status, body = get_json(served + query)
    assert status == 400
    assert body["parameter"] == parameter and body["error"].startswith(parameter + ":")


def test_feed_state_from_the_lake(served: str) -> None:
    status, body = get_json(served + "/api/v1/feed")
    [feed] = body["feeds"]
    # the connection row has no venue time: it sorts by its capture time, before the others
    assert (feed["state"], feed["source"]) == ("recovered", "lake")
    assert feed["counts"] == {"connected": 1, "degraded": 1, "recovered": 1}
    status, body = get_json(served + "/api/v1/status")
    assert [r["state"] for r in body["rows"]] == ["connected", "degraded", "recovered"]


def test_acknowledge_an_alert(api_lake: Path, tmp_path: Path) -> None:
    settings = ServeSettings(lake=api_lake, acks=tmp_path / "acks.jsonl")
    url = f"/api/v1/alerts/{ALERT_ID}/ack"
    with serving(build_app(settings)) as base:
        assert get_json(base + url)[1]["acknowledged"] is False
        status, body = get_json(
            base + url, data=b'{"by": "alice"}', method="POST", headers={"Content-Type": "application/json"}
        )
        assert status == 201 and body["by"] == "alice"
        status, again = get_json(
            base + url, data=b'{"by": "bob"}', method="POST", headers={"Content-Type": "application/json"}
        )
        assert status == 200 and again["by"] == "alice"  # the first acknowledgement stands
        status, missing = get_json(
            base + "/api/v1/alerts/nope/ack",
            data=b'{"by": "bob"}',
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        assert status == 404 and missing["parameter"] == "alert_id"
        status, bad = get_json(
            base + url, data=b'{"who": "bob"}', method="POST", headers={"Content-Type": "application/json"}
        )
        assert status == 400 and bad["parameter"] == "body"
    with serving(build_app(settings)) as base:  # kept across a restart
        assert get_json(base + url)[1] == {
            "alert_id": ALERT_ID,
            "acknowledged": True,
            "by": "alice",
            "at_ns": body["at_ns"],
        }


def test_the_token_gate(api_lake: Path, tmp_path: Path) -> None:
    token = "s3cret-token-0123456789"
    secret = Secret(token, "test")
    with serving(build_app(ServeSettings(lake=api_lake, token=secret))) as base:
        status, headers, _ = get(base + "/api/v1/instruments")
        assert status == 401 and headers["www-authenticate"].startswith("Bearer")
        assert (
            get(base + "/api/v1/instruments", headers={"Authorization": "Bearer wrong-token-000000"})[0]
            == 401
        )
        assert get(base + "/api/v1/instruments", headers={"Authorization": f"Bearer {token}"})[0] == 200
        assert get(base + f"/api/v1/instruments?token={token}")[0] == 200
        assert get(base + "/health")[0] == 200  # orchestrators probe without it
    with pytest.raises(ConfigError, match="without a token"):
        check_bind(ServeSettings(host="0.0.0.0"))
    check_bind(ServeSettings(host="0.0.0.0", token=secret))
    check_bind(ServeSettings(host="::1"))
    (tmp_path / "token").write_text(token + "\n")
    from_file = resolve_token(None, {"TAPEFLOW_SERVE_TOKEN_FILE": str(tmp_path / "token")})
    assert isinstance(from_file, Secret) and from_file.reveal() == token
    with pytest.raises(ConfigError, match="at least 16"):
        resolve_token("short", {})
    assert token not in repr(ServeSettings(token=secret))
    with pytest.raises(TypeError, match="Secret"):
        ServeSettings(token=token)  # type: ignore[arg-type]  # a bare string is refused


def test_serve_refuses_a_public_address_without_a_token_and_never_prints_it(
    api_lake: Path, caplog: pytest.LogCaptureFixture
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "serve", "--host", "0.0.0.0", "--lake", str(api_lake)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2 and "without a token" in done.stderr
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    token = "canary-token-ABCDEFGHIJ"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tapeflow.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lake",
            str(api_lake),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "TAPEFLOW_SERVE_TOKEN": token},
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "serve: dashboard" in line
        for _ in range(100):
            try:
                status, _, _ = get(f"http://127.0.0.1:{port}/api/v1/instruments?token={token}")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert token not in line + out
    # the command's settings: the token is a Secret, masked wherever it is printed
    from tapeflow.cli import _parser
    from tapeflow.serve.cli import settings_of
    from tapeflow.settings import Settings

    with caplog.at_level(logging.DEBUG):
        args = _parser().parse_args(["serve", "--lake", str(api_lake), "--token", token])
        settings = settings_of(args, Settings())
        logging.getLogger("tapeflow.serve").info("settings %r %s", settings, settings.token)
        app = build_app(settings)
    assert isinstance(settings.token, Secret) and settings.token.reveal() == token
    shown = [repr(settings), str(settings.token), repr(settings.token), repr(app.state.settings),
             caplog.text, *(f"{k}={v!s} {v!r}" for k, v in vars(settings).items())]
    assert not [s for s in shown if token in s]


def test_ready_is_503_while_the_lake_is_missing(tmp_path: Path) -> None:
    with serving(build_app(ServeSettings(lake=tmp_path / "none"))) as base:
        status, body = get_json(base + "/ready")
        assert status == 503 and body["ready"] is False
        assert get_json(base + "/api/v1/bars")[1]["rows"] == []


def test_clickhouse_pages_equal_the_lakes(api_lake: Path, dsn: str) -> None:
    from tapeflow.storage.warehouse import Warehouse

    with Warehouse(dsn) as wh:
        wh.ensure_tables()
        for record in (BAR, SIGNAL, STATUS, BOOK_SNAPSHOT):
            wh.load(record, lake.read(record, api_lake))
    source = WarehouseHistory(dsn)
    try:
        by_lake = LakeHistory(api_lake)
        for record, equals in ((BAR, {"interval": "1s"}), (SIGNAL, {}), (STATUS, {}), (BOOK_SNAPSHOT, {})):
            q = Query(record, "sim", SYMBOL, 0, 2**62, equals)
            want, cursor = [], None
            got: list[dict[str, object]] = []
            while True:
                page, cursor = source.page(q, cursor, 4)
                got += page.to_pylist()
                if cursor is None:
                    break
            want = by_lake.page(q, None, 10_000)[0].to_pylist()
            key = ("ts_event_ns", "ts_recv_ns")
            assert sorted(tuple(r[k] for k in key) for r in got) == sorted(
                tuple(r[k] for k in key) for r in want
            )
            assert len(got) == len(want) > 0
        assert [i["symbol"] for i in source.instruments()] == [SYMBOL]
        assert source.page(Query(ALERT_DELIVERY, None, None, 0, 2**62, {}), None, 5)[0].num_rows == 0
    finally:
        source.warehouse.close()


@pytest.mark.realdata
def test_option_surfaces_and_tickers_are_served(real_data: Path, tmp_path: Path) -> None:
    """The surfaces and priced tickers of the real Deribit captures, written to a lake, come back
    from /api/v1/surfaces and /api/v1/option_tickers row for row."""
    from tapeflow.cli import main
    from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
    from tapeflow.options.surface import surface_records
    from tapeflow.storage.writer import Writer
    from tests.conftest import need

    capture = need(real_data / "options/deribit/cryptofeed_DERIBIT-5dd9ce.0_2021-04-05.txt")
    out, surf = tmp_path / "t.parquet", tmp_path / "s.parquet"
    assert main(["options", "--format", "deribit", str(capture), "--out", str(out), "--surface", str(surf),
                 "--quiet", "--allow-rejects"]) == 0
    tickers = pq.read_table(out).select(OPTION_TICKER.column_names).cast(OPTION_TICKER.arrow_schema())
    surfaces = surface_records(pq.read_table(surf), "deribit")
    with Writer(tmp_path / "lake") as writer:
        for record, table in ((OPTION_TICKER, tickers), (OPTION_SURFACE, surfaces)):
            day = "2021-04-05"
            slices = sorted({(v, s, day) for v, s in zip(table.column("venue").to_pylist(),
                                                          table.column("symbol").to_pylist(), strict=True)})
            writer.replace(record, table, partitions=slices)
    btc = surfaces.filter(pc.equal(surfaces.column("symbol"), "BTC"))
    assert btc.num_rows > 0
    with serving(build_app(ServeSettings(lake=tmp_path / "lake", acks=tmp_path / "acks.jsonl"))) as base:
        status, body = get_json(base + "/api/v1/surfaces?venue=deribit&symbol=BTC&limit=1000")
        assert status == 200 and body["next_cursor"] is None
        assert [r["expiry_ns"] for r in body["rows"]] == btc.column("expiry_ns").to_pylist()
        status, body = get_json(base + "/api/v1/option_tickers?venue=deribit&limit=5000")
        assert status == 200 and len(body["rows"]) == tickers.num_rows
