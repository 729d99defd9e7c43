"""Alerts: signal -> delivered latency on loopback, and an alert storm (issue 11).

Latency: one webhook channel to an aiohttp receiver on 127.0.0.1 (in a thread of this process),
each signal submitted and delivered in turn; the latency is the ledger's (the alert's creation to
the receiver's 200, HMAC signing and the HTTP round trip included). Goal p99 <= 250 ms.

Storm: 1,000 signals/s of venue time for 30 s (30,000 signals over 20 instruments, one rule with a
60 s window) submitted as fast as they go; the figures are the engine's signals/s and the
deliveries it queued (bounded: one per instrument per window), delivered to the same receiver.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from bench import Goal, Report

LATENCY_SIGNALS = 500
STORM_RATE_PER_S, STORM_SECONDS, STORM_INSTRUMENTS = 1_000, 30, 20
FIGURES = (
    Goal("alert signal -> delivered p99 (loopback webhook)", "ms", 250.0, "no alerts",
         higher_is_better=False),
)


class _Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.port = asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(30)

    async def _serve(self) -> int:
        async def handle(request: web.Request) -> web.Response:
            await request.read()
            self.count += 1
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/hook", handle)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        return int(self.runner.addresses[0][1])

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _engine(folder: Path, port: int, window_ns: int) -> Any:
    from tapeflow.alerts.config import load
    from tapeflow.alerts.engine import AlertEngine

    path = folder / "alerts.toml"
    path.write_text(f"""[allow]\nloopback = true\n[channel.hook]\ntype = "webhook"
url = "http://127.0.0.1:{port}/hook"\nsecret = "env:BENCH_HOOK_KEY"
[rule.all]\nchannels = ["hook"]\nwindow_ns = {window_ns}\n""")
    return AlertEngine(load(path, env={"BENCH_HOOK_KEY": "bench-key"}))


def _signal(ts_ns: int, symbol: str) -> dict[str, Any]:
    return {"ts_event_ns": ts_ns, "ts_recv_ns": ts_ns, "venue": "sim", "symbol": symbol, "kind": "whale",
            "confidence": 0.9, "detector": "whale/1", "evidence": '{"size_x_median": 80.0}'}


def run(report: Report) -> None:
    receiver = _Receiver()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _latency(report, _engine(Path(tmp), receiver.port, 0))
            _storm(report, _engine(Path(tmp), receiver.port, 60_000_000_000), receiver)
    finally:
        receiver.stop()


def _latency(report: Report, engine: Any) -> None:
    report.section("alert signal -> delivered, loopback webhook (one at a time)")
    for i in range(20):  # warm-up: imports, first connections
        engine.submit(_signal(i, "WARM"))
        engine.deliver_pending()
    warm = len(engine.ledger)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(LATENCY_SIGNALS):
        engine.submit(_signal(1_000 + i, "SIM"))
        engine.deliver_pending()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latency_ms = np.array([r["latency_ns"] for r in engine.ledger[warm:]]) / 1e6
    report.add("tapeflow alerts webhook", LATENCY_SIGNALS, (cpu, wall), ours=True,
               note=f"p50 {np.percentile(latency_ms, 50):.2f} ms, p99 {np.percentile(latency_ms, 99):.2f} ms")
    report.record(FIGURES[0], float(np.percentile(latency_ms, 99)),
                  note=f"p50 {np.percentile(latency_ms, 50):.2f} ms over {LATENCY_SIGNALS} alerts")


def _storm(report: Report, engine: Any, receiver: _Receiver) -> None:
    report.section(f"alert storm: {STORM_RATE_PER_S:,} signals/s for {STORM_SECONDS} s of venue time")
    n = STORM_RATE_PER_S * STORM_SECONDS
    step_ns = 1_000_000_000 // STORM_RATE_PER_S
    symbols = [f"SIM{i}" for i in range(STORM_INSTRUMENTS)]
    rows = [_signal(i * step_ns, symbols[i % STORM_INSTRUMENTS]) for i in range(n)]
    before = receiver.count
    cpu, wall = time.process_time(), time.perf_counter()
    queued = sum(len(engine.submit(row)) for row in rows)
    engine.close_windows(n * step_ns + 60_000_000_000)
    while engine.pending:
        engine.deliver_pending()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    report.add("tapeflow alerts engine (match + throttle + deliver)", n, (cpu, wall), ours=True,
               note=f"{queued} alerts queued, {receiver.count - before} delivered incl. closing counts")
    report.note("bounded: one message per instrument per 60 s window, plus one closing count each")
