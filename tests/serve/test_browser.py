"""The dashboard in a real browser (Debian's chromium driven by Playwright) over a live flow: the
simulated feed served by the replay server, ``tapeflow live --publish`` into a lake, ``tapeflow
serve``'s app relaying it. The page must show what the backend computed: the best bid and ask of the
last book snapshot, the last 1 m bar's OHLCV, the number of signals, and the feed state.

Screenshots are kept under ``.tapeflow/artifacts/serve/`` (or ``$TAPEFLOW_ARTIFACTS``).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pytest

from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, SIGNAL, STATUS
from tapeflow.serve.app import build_app
from tapeflow.serve.browser import MISSING, available, launch
from tapeflow.serve.history import final_bars
from tapeflow.serve.settings import ServeSettings
from tapeflow.storage import lake
from tests.serve.conftest import REPO, run_cli
from tests.serve.server import get_json, serving

FEED_S = 20
SPEED = 2.0


def alerts_config(tmp_path: Path) -> Path:
    """Every feed-status row and every signal the flow emits is an alert (no throttle), to a file."""
    path = tmp_path / "alerts.toml"
    path.write_text(f"""\
[channel.log]
type = "file"
path = "{tmp_path / 'alerts.jsonl'}"
[rule.feed]
source = "status"
states = ["connected", "synced", "recovered", "disconnected", "resyncing", "stale", "degraded", "gap"]
channels = ["log"]
window_ns = 0
[rule.signals]
source = "signal"
channels = ["log"]
window_ns = 0
""")
    return path


def free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("TAPEFLOW_ARTIFACTS", REPO / ".tapeflow" / "artifacts")) / "serve"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = tmp_path
    return folder


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201
    if not available():
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def test_the_page_shows_what_the_flow_computed(browser, tmp_path: Path) -> None:  # noqa: ANN001
    from tapeflow.replay import ReplayServer

    seed = random.randrange(1, 10_000)
    print(f"simulator seed {seed}")
    run_cli(
        "simulate",
        "--seed",
        str(seed),
        "--instruments",
        "1",
        "--duration",
        f"{FEED_S}s",
        "--out",
        str(tmp_path / "sim"),
    )
    files = sorted((tmp_path / "sim" / "sim").glob("*/*.events.csv.gz"))
    symbol = files[0].parent.name
    root, publish = tmp_path / "live", free_port()
    app = build_app(ServeSettings(lake=root / "lake", live=("127.0.0.1", publish), acks=tmp_path / "acks"))
    shots = artifacts(tmp_path)
    errors: list[str] = []
    with serving(app) as base:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda e: errors.append(f"{e}\n{e.stack}"))  # the stack says which call
        page.goto(base + "/")
        page.wait_for_function("window.__tapeflowReady === true", timeout=60_000)
        with ReplayServer("sim", files, speed=SPEED).run_in_thread() as srv:
            args = [
                "--venue",
                "sim",
                "--symbols",
                symbol,
                "--endpoint",
                srv.ws_url,
                "--idle-exit",
                "3s",
                "--clock",
                "relative",
                "--lake",
                str(root / "lake"),
                "--no-clickhouse",
                "--journal",
                str(root / "journal"),
                "--publish",
                f"127.0.0.1:{publish}",
                "--bars",
                "1s,1m",
                "--signals",
                "--alerts",
                str(alerts_config(tmp_path)),
            ]
            env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
            log = (tmp_path / "flow.log").open("w")
            flow = subprocess.Popen(
                [sys.executable, "-m", "tapeflow.cli", "live", *args],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                page.wait_for_function("(window.__tapeflowMessages || 0) > 5", timeout=180_000)
                # while the flow runs: labelled live, prices from the stream
                assert page.inner_text("#mode") == "LIVE"
                assert page.get_attribute("#best-bid", "data-nanos")
                page.screenshot(path=str(shots / "dashboard-live.png"), full_page=True)
                flow.wait(timeout=300)
            finally:
                if flow.poll() is None:
                    flow.kill()
                log.close()
                print((tmp_path / "flow.log").read_text()[-3000:])
            assert flow.returncode == 0
        # the flow stopped: the relay says so, and the page reconciles with the lake once
        page.wait_for_function(
            "document.getElementById('mode').textContent !== 'LIVE' && "
            "(window.__tapeflowHistoryLoads || 0) >= 1",
            timeout=60_000,
        )
        page.wait_for_timeout(500)
        _, relayed = get_json(base + "/api/v1/feed")
        _, live_state = get_json(base + "/api/v1/live")
        shown = {
            "bid": int(page.get_attribute("#best-bid", "data-nanos")),
            "ask": int(page.get_attribute("#best-ask", "data-nanos")),
            "bar": tuple(
                int(page.get_attribute("#last-bar", f"data-{k}"))
                for k in ("open", "high", "low", "close", "volume")
            ),
            "signals": int(page.inner_text("#signal-count")),
            "feed": page.inner_text("#feed-state"),
            "messages": page.evaluate("window.__tapeflowMessages"),
            "chart_dropped": page.evaluate("window.__tapeflowChartDropped || 0"),
            "live_alerts": page.eval_on_selector_all(
                "#alerts li[data-live=true]", "els => els.map((e) => e.dataset.alertId)"
            ),
        }
        page.screenshot(path=str(shots / "dashboard-end.png"), full_page=True)
        page.close()
    print(f"page showed {shown}; screenshots in {shots}")
    assert not errors, errors

    out = root / "lake"
    snap = lake.read(BOOK_SNAPSHOT, out).to_pylist()[-1]
    assert (shown["bid"], shown["ask"]) == (snap["bid_price_nanos"][0], snap["ask_price_nanos"][0])
    bars = lake.read(BAR, out)
    minute = final_bars(bars.filter(pc.equal(bars.column("interval"), "1m"))).to_pylist()[-1]
    assert shown["bar"] == (
        minute["open_price_nanos"],
        minute["high_price_nanos"],
        minute["low_price_nanos"],
        minute["close_price_nanos"],
        minute["volume_nanos"],
    )
    signals = lake.read(SIGNAL, out).num_rows if (out / SIGNAL.name).exists() else 0
    assert shown["signals"] == signals
    # the feed state is the last STATUS row the flow emitted, as the relay saw it and as the lake holds it
    [feed] = relayed["feeds"]
    states = set(lake.read(STATUS, out).column("state").to_pylist())
    assert shown["feed"] == feed["state"] and shown["feed"] in states
    assert shown["messages"] > 5
    # the alert feed shows, marked live, the alerts the relay got from the flow: those it delivered
    delivered = [orjson.loads(x)["alert_id"] for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    relayed_alerts = [a["alert_id"] for a in live_state["alerts"]]
    print(f"{len(delivered)} alerts delivered, {len(relayed_alerts)} relayed, "
          f"{len(shown['live_alerts'])} shown live")
    assert relayed_alerts and sorted(shown["live_alerts"]) == sorted(relayed_alerts)
    assert set(relayed_alerts) <= set(delivered)
    if os.environ.get("TAPEFLOW_DOCS_SCREENSHOT"):
        shutil.copy(shots / "dashboard-end.png", REPO / "docs" / "dashboard.png")


@pytest.mark.realdata
def test_the_page_shows_the_latest_option_surface(browser, tmp_path: Path, real_data: Path) -> None:  # noqa: ANN001
    """The real Deribit capture's surfaces in a lake: the page's surfaces table holds the latest
    snapshot's expiries of each underlying with their ATM IV, as the lake has them."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from tapeflow.cli import main
    from tapeflow.options.records import OPTION_SURFACE
    from tapeflow.options.surface import surface_records
    from tapeflow.serve.app import build_app
    from tapeflow.serve.settings import ServeSettings
    from tapeflow.storage.writer import Writer
    from tests.conftest import need

    capture = need(real_data / "options/deribit/cryptofeed_DERIBIT-5dd9ce.0_2021-04-05.txt")
    out, surf = tmp_path / "t.parquet", tmp_path / "s.parquet"
    assert main(["options", "--format", "deribit", str(capture), "--out", str(out), "--surface", str(surf),
                 "--quiet", "--allow-rejects"]) == 0
    surfaces = surface_records(pq.read_table(surf), "deribit")
    with Writer(tmp_path / "lake") as writer:
        slices = sorted({("deribit", s, "2021-04-05") for s in surfaces.column("symbol").to_pylist()})
        writer.replace(OPTION_SURFACE, surfaces, partitions=slices)
    want = []
    for symbol in sorted(set(surfaces.column("symbol").to_pylist())):
        mine = surfaces.filter(pc.equal(surfaces.column("symbol"), symbol))
        last = mine.filter(pc.equal(mine.column("ts_event_ns"), pc.max(mine.column("ts_event_ns"))))
        want += [(f"deribit {symbol}", "-" if atm != atm else f"{100 * atm:.2f}%")
                 for atm in last.column("atm_iv").to_pylist()]
    with serving(build_app(ServeSettings(lake=tmp_path / "lake", acks=tmp_path / "acks.jsonl"))) as base:
        page = browser.new_page()
        page.goto(base + "/")
        page.wait_for_function("document.querySelectorAll('#surfaces tbody tr td').length > 0",
                               timeout=60_000)
        cells = page.eval_on_selector_all("#surfaces tbody tr", "rows => rows.map(r => "
                                          "[...r.children].map(c => c.textContent))")
        page.screenshot(path=str(artifacts(tmp_path) / "surfaces.png"), full_page=True)
        page.close()
    assert sorted((c[0], c[3]) for c in cells) == sorted(want)
