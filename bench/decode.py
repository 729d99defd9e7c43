"""Binance JSON decode: the column-wise block path against the per-frame path and a stdlib peer.

Not a test: timings print, nothing fails. Input: the real Binance USD-M BTCUSDT capture
(``TAPEFLOW_REAL_DATA``, default ``../shared/data``; 93,954 frames, 6 minutes of depth diffs,
trades and bookTicker). Events are websocket frames (messages), the unit of the live path.

- whole file: ``tapeflow.venues.binance.parse.decode`` with ``fast=True`` (blocks of 8,192
  frames) and ``fast=False`` (the per-frame path), reading the gzip file included;
- frames already in memory as ``CaptureLine`` objects (what a connector holds): the block path
  (``tapeflow.venues.binance.fast.decode_block``) on batches of 8,192 and of 50 frames, and
  ``feed`` frame by frame, each batch followed by ``flush`` (its tables);
- peer: ``json.loads`` + ``decimal.Decimal`` for every price and size (no records built).

Run alone: ``python -m bench.decode`` (or ``make bench`` for every module).
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path

from bench import Report, best_time

CAPTURE = "binance/usdm_btcusdt_20240808.gz"


def _capture() -> Path | None:
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / CAPTURE
    return path if path.exists() else None


def _peer(payloads: list[bytes]) -> None:
    for raw in payloads:
        msg = json.loads(raw)
        data = msg.get("data", msg)
        for key in ("b", "a", "bids", "asks"):
            value = data.get(key)
            if isinstance(value, list):
                for level in value:
                    Decimal(level[0])
                    Decimal(level[1])
            elif isinstance(value, str):
                Decimal(value)
        for key in ("B", "A", "p", "q"):
            if isinstance(data.get(key), str):
                Decimal(data[key])


def run(report: Report) -> None:
    """Time the decodes (best of 3, CPU seconds) and add them to ``report``."""
    from tapeflow.venues.base import Rejects
    from tapeflow.venues.binance.fast import decode_block
    from tapeflow.venues.binance.parse import BinanceDecoder, decode
    from tapeflow.wire.capture import read_capture

    report.section("Binance JSON decode (USD-M capture, frames/s)")
    path = _capture()
    if path is None:
        report.note(f"skipped: {CAPTURE} not found (set TAPEFLOW_REAL_DATA)")
        return
    lines = list(read_capture(path, Rejects("binance")))
    n = len(lines)
    for fast in (True, False):
        name = "tapeflow decode, column-wise blocks" if fast else "tapeflow decode, per frame"
        report.add(name, n, best_time(lambda fast=fast: list(decode([path], fast=fast))), ours=True,
                   note="whole file, gzip reading included")

    def feed(batch: int, blocks: bool) -> None:
        dec = BinanceDecoder()
        dec.venues = ["binance-usdm"]
        for i in range(0, n, batch):
            chunk = lines[i:i + batch]
            if blocks:
                decode_block(dec, [(0, line) for line in chunk])
            else:
                for line in chunk:
                    dec.feed(line)
            dec.flush(0, "bench")

    for batch, blocks in ((8192, True), (8192, False), (50, True), (50, False)):
        how = "decode_block" if blocks else "feed per frame"
        report.add(f"tapeflow {how}, {batch}-frame batches", n,
                   best_time(lambda b=batch, k=blocks: feed(b, k)), ours=True,
                   note="CaptureLines in memory, tables built per batch")
    payloads = [line.payload for line in lines]
    report.add("json.loads + Decimal per value", n, best_time(lambda: _peer(payloads)), ours=False,
               note="stdlib peer, frames in memory, parse only (no records)")


if __name__ == "__main__":
    r = Report()
    run(r)
    print(r.render())
