"""Binance JSON decode: frames -> normalized columns (exact decimals), against per-frame paths and parsers.

Not a test: timings print, nothing fails. Input: the real Binance USD-M BTCUSDT capture
(``TAPEFLOW_REAL_DATA``, default ``../shared/data``; 93,954 frames, 445,522 book_delta rows),
decoded by ``tapeflow.venues.binance.parse.decode`` into Arrow tables (book_delta, trade, quote,
rejected), chains synced, every decimal exact.

- the block path (the default) on the capture un-gzipped to a temporary file (decompression
  excluded; the file is in the page cache) and on the gzip file itself (included);
- the per-frame path (``fast=False``), the reference the block path is tested equal to;
- micro-batches as a live connector holds them (``CaptureLine`` s in memory): ``feed_many`` then
  ``flush`` per batch of 50 and of 2,000 frames;
- peers, parse only (no records, no chains): ``json.loads`` + ``Decimal`` per value, ``orjson``,
  and ``msgspec`` typed structs with the level lists left raw (the library issue 8 suggested).

Warm figures are medians of 3 after a warm-up (``bench.median_time``); the cold start (compiling
the scanner, or loading it from numba's cache) is timed apart in a fresh process.
Run alone: ``python -m bench.decode`` (or ``make bench`` for every module).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import msgspec

from bench import Report, median_time

CAPTURE = "binance/usdm_btcusdt_20240808.gz"
GOAL_M_FRAMES_S = 1.0
BEFORE = "73k frames/s"


def _capture() -> Path | None:
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / CAPTURE
    return path if path.exists() else None


def _json_decimal(payloads: list[bytes]) -> None:
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


class _Ticker(msgspec.Struct, tag_field="e", tag="bookTicker", gc=False):
    u: int
    s: str
    b: str
    B: str
    a: str
    A: str
    T: int = -1
    E: int = -1


class _Trade(msgspec.Struct, tag_field="e", tag="trade", gc=False):
    E: int
    s: str
    t: int
    p: str
    q: str
    m: bool
    T: int = -1


class _Depth(msgspec.Struct, tag_field="e", tag="depthUpdate", gc=False):
    E: int
    s: str
    U: int
    u: int
    b: msgspec.Raw
    a: msgspec.Raw
    T: int = -1
    pu: int = -1


class _Envelope(msgspec.Struct, gc=False):
    """A combined-stream frame as typed structs, the level lists left as raw JSON."""

    stream: str
    data: _Ticker | _Trade | _Depth


def _cold_start_s(path: Path, *, empty_cache: bool) -> float:
    """Seconds from a fresh interpreter to the first decoded chunk (imports and compilation included)."""
    code = ("import time; t = time.perf_counter(); from tapeflow.venues.binance.parse import decode; "
            f"next(iter(decode([{str(path)!r}]))); print(time.perf_counter() - t)")
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as cache:
        if empty_cache:
            env["NUMBA_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(report: Report) -> None:
    """Time the decodes and add them (and the headline figure) to ``report``."""
    from tapeflow.venues.base import merge
    from tapeflow.venues.binance.parse import BinanceDecoder, decode
    from tapeflow.wire.capture import read_capture
    from tapeflow.wire.rejects import Rejects

    report.section("Binance JSON decode (USD-M capture: frames -> tables, exact decimals, chains synced)")
    path = _capture()
    if path is None:
        report.note(f"skipped: {CAPTURE} not found (set TAPEFLOW_REAL_DATA)")
        return
    lines = list(read_capture(path, Rejects("binance")))
    n = len(lines)
    deltas = merge(list(decode([path])))["book_delta"].num_rows
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "usdm_btcusdt_20240808.txt"  # the name still says USD-M
        plain.write_bytes(gzip.open(path).read())
        cold = _cold_start_s(plain, empty_cache=True)
        cached = _cold_start_s(plain, empty_cache=False)
        excluded = median_time(lambda: list(decode([plain])))
    included = median_time(lambda: list(decode([path])))
    per_frame = median_time(lambda: list(decode([path], fast=False)), warmup=0)
    report.add("tapeflow block path, decompression excluded", n, excluded, ours=True,
               note=f"{deltas / excluded[0] / 1e6:.2f} M book_delta rows/s")
    report.add("tapeflow block path, gzip file", n, included, ours=True,
               note=f"{deltas / included[0] / 1e6:.2f} M book_delta rows/s (gzip inflate included)")
    report.add("tapeflow per-frame path (fast=False), gzip file", n, per_frame, ours=True,
               note="the reference the block path is tested equal to")

    def feed(batch: int) -> None:
        dec = BinanceDecoder()
        dec.venues = ["binance-usdm"]
        for i in range(0, n, batch):
            dec.feed_many(lines[i:i + batch])
            dec.flush(0, "bench")

    for batch in (2000, 50):
        report.add(f"tapeflow feed_many + flush, {batch}-frame batches", n,
                   median_time(lambda b=batch: feed(b)), ours=True,
                   note="CaptureLines in memory, as a live connector holds them")
    payloads = [line.payload for line in lines]
    structs = [p for p in payloads if p.startswith(b'{"stream"')]
    structs_decoder = msgspec.json.Decoder(_Envelope)
    import orjson

    report.add("msgspec typed structs, levels raw (parse only)", len(structs),
               median_time(lambda: [structs_decoder.decode(p) for p in structs]), ours=False,
               note="no decimals, no records, no chains")
    report.add("orjson.loads per frame (parse only)", n,
               median_time(lambda: [orjson.loads(p) for p in payloads]), ours=False,
               note="decimals as floats: not exact")
    report.add("json.loads + Decimal per value (parse only)", n,
               median_time(lambda: _json_decimal(payloads), warmup=0), ours=False,
               note="stdlib, exact decimals, no records")
    report.note(f"cold start, first chunk from a fresh interpreter: {cold:.1f} s compiling the scanner, "
                f"{cached:.1f} s with numba's cache filled")
    report.figure("Binance JSON decode (frames -> tables, exact decimals)", n / excluded[0] / 1e6,
                  "M frames/s", goal=GOAL_M_FRAMES_S, before=BEFORE,
                  note=f"CPU, median of 3, no gzip; {deltas / excluded[0] / 1e6:.1f} M deltas/s")


if __name__ == "__main__":
    t0 = time.perf_counter()
    r = Report()
    run(r)
    print(r.render())
    print(f"\n({time.perf_counter() - t0:.0f} s)")
