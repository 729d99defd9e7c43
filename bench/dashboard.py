"""The dashboard's live path: flow publisher -> ``tapeflow serve`` relay -> WebSocket -> the page.

In Debian's chromium (headless, Playwright), the page of ``tapeflow serve`` relays a publisher that
emits 10,000 trade rows/s (100-row batches every 10 ms) over 50 instruments, plus a book snapshot and
a 1 s bar per instrument each second. Measured: each batch from ``publish()`` (its ``pub_ns``) to
the page's WebSocket ``onmessage`` (p50, p99), and the page's frame times (``requestAnimationFrame``
intervals, p50, p99, max) while it renders the overview of 50 streaming instruments. Skips, saying
why, without chromium.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench import Goal, Report
from tapeflow.schemas.records import BAR, BOOK_SNAPSHOT, TRADE
from tapeflow.serve.browser import MISSING, available, launch

INSTRUMENTS = 50
ROWS_PER_S = 10_000
BATCH_ROWS = 100
FIGURES = (
    Goal("dashboard event -> page p99 (10k events/s)", "ms", None, higher_is_better=False),
    Goal("dashboard frame time p99 (50 instruments)", "ms", None, higher_is_better=False),
)
_PAGE_PROBE = """
window.__lat = []; window.__frames = [];
window.__tapeflowOnMessage = (m) =>
  window.__lat.push(performance.timeOrigin + performance.now() - m.pub_ns / 1e6);
let last = performance.now();
const tick = (t) => { window.__frames.push(t - last); last = t; requestAnimationFrame(tick); };
requestAnimationFrame(tick);
"""


def _trades(i0: int, now_ns: int) -> pa.Table:
    n = BATCH_ROWS
    idx = np.arange(i0, i0 + n)
    return pa.table(
        {
            "ts_event_ns": now_ns + idx,
            "ts_recv_ns": now_ns + idx,
            "venue": ["bench"] * n,
            "symbol": [f"SYM{k % INSTRUMENTS:02d}" for k in idx],
            "sequence": idx,
            "trade_id": [str(k) for k in idx],
            "price_nanos": 100_000_000_000 + (idx % 50) * 10_000_000,
            "size_nanos": 1_000_000_000 + idx % 7,
            "aggressor_side": np.where(idx % 2 == 0, 66, 65).astype(np.uint8),
            "flags": np.zeros(n, np.uint8),
        },
        schema=TRADE.arrow_schema(),
    )


def _books(now_ns: int) -> tuple[pa.Table, pa.Table]:
    n = INSTRUMENTS
    symbols = [f"SYM{k:02d}" for k in range(n)]
    snap = pa.table(
        {
            "ts_event_ns": [now_ns] * n,
            "ts_recv_ns": [now_ns] * n,
            "venue": ["bench"] * n,
            "symbol": symbols,
            "sequence": list(range(n)),
            "levels": [10] * n,
            "bid_price_nanos": [[100_000_000_000 - j * 10_000_000 for j in range(10)]] * n,
            "bid_size_nanos": [[(j + 1) * 1_000_000_000 for j in range(10)]] * n,
            "ask_price_nanos": [[100_010_000_000 + j * 10_000_000 for j in range(10)]] * n,
            "ask_size_nanos": [[(j + 1) * 1_000_000_000 for j in range(10)]] * n,
            "flags": [0] * n,
        },
        schema=BOOK_SNAPSHOT.arrow_schema(),
    )
    second = now_ns // 1_000_000_000 * 1_000_000_000
    bar = pa.table(
        {
            "ts_event_ns": [second] * n,
            "ts_recv_ns": [now_ns] * n,
            "venue": ["bench"] * n,
            "symbol": symbols,
            "interval": ["1s"] * n,
            "open_price_nanos": [100_000_000_000] * n,
            "high_price_nanos": [100_500_000_000] * n,
            "low_price_nanos": [99_500_000_000] * n,
            "close_price_nanos": [100_100_000_000] * n,
            "volume_nanos": [200_000_000_000] * n,
            "vwap_price_nanos": [100_000_000_000] * n,
            "trade_count": [200] * n,
            "buy_volume_nanos": [100_000_000_000] * n,
            "sell_volume_nanos": [100_000_000_000] * n,
            "flags": [0] * n,
            "revision": [0] * n,
        },
        schema=BAR.arrow_schema(),
    )
    return snap, bar


def run(report: Report) -> None:
    if not available():
        report.skip(MISSING)
        return
    from playwright.sync_api import sync_playwright

    from tapeflow.serve.app import build_app
    from tapeflow.serve.publish import Publisher
    from tapeflow.serve.settings import ServeSettings
    from tapeflow.serve.thread import serving

    seconds = 4 if report.quick else 10
    report.section(
        f"dashboard live path: {ROWS_PER_S:,} trade rows/s over {INSTRUMENTS} instruments for {seconds} s"
    )
    publisher = Publisher("127.0.0.1:0")
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        app = build_app(ServeSettings(lake=Path(tmp) / "lake", live=("127.0.0.1", publisher.port)))
        browser = launch(p)
        try:
            with serving(app) as base:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(base + "/")
                page.wait_for_function("window.__tapeflowReady === true", timeout=60_000)
                deadline = time.monotonic() + 30
                while publisher.subscribers == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)
                page.evaluate(_PAGE_PROBE)
                sent, start = 0, time.perf_counter()
                next_book = start
                cpu = time.process_time()
                while (elapsed := time.perf_counter() - start) < seconds:
                    due = int(elapsed * ROWS_PER_S) // BATCH_ROWS
                    while sent < due:
                        publisher.publish("trade", _trades(sent * BATCH_ROWS, time.time_ns()))
                        sent += 1
                    if time.perf_counter() >= next_book:
                        snap, bar = _books(time.time_ns())
                        publisher.publish("book_snapshot", snap)
                        publisher.publish("bar", bar)
                        next_book += 1.0
                    time.sleep(0.002)
                cpu = time.process_time() - cpu
                page.wait_for_timeout(1000)
                latency = np.array(page.evaluate("window.__lat"))
                frames = np.array(page.evaluate("window.__frames"))[5:]
        finally:
            browser.close()
            publisher.close()
    received = latency.size
    p50, p99 = np.percentile(latency, [50, 99]) if received else (float("nan"), float("nan"))
    f50, f99, fmax = (
        np.percentile(frames, [50, 99]).tolist() + [frames.max()] if frames.size else [float("nan")] * 3
    )
    report.note(
        f"{sent} trade batches ({sent * BATCH_ROWS:,} rows) sent, {received} messages received by the page "
        f"(incl. snapshots and bars); publisher process CPU {cpu:.1f} s"
    )
    report.note(f"publish -> page onmessage: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    report.note(
        f"frame interval: p50 {f50:.1f} ms, p99 {f99:.1f} ms, max {fmax:.1f} ms ({frames.size} frames)"
    )
    report.record(FIGURES[0], float(p99), note=f"p50 {p50:.1f} ms; {received} messages")
    report.record(
        FIGURES[1], float(f99), note=f"p50 {f50:.1f} ms, max {fmax:.1f} ms over {frames.size} frames"
    )
