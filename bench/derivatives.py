"""Derivatives decoders: frames/s of each venue's decoder on real message shapes, batch and live.

Not a test: timings print, nothing fails. Input: the raw venue messages of tardis-node's mapper
tests (``derivatives/tardis_normalization`` under ``TAPEFLOW_REAL_DATA``) of the channels each
decoder reads, repeated to ``FRAMES`` frames per venue: decoded in batch from a capture file
(``run``: file read and capture-line parsing included) and live in micro-batches of 50
(``feed_many`` + ``flush``, the frames already in memory). Medians of 3 after a warm-up.
Run alone: ``python -m bench.derivatives``.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench import Report, median_time, real_file
from tapeflow.derivatives import channel_of

PAIRS = "derivatives/tardis_normalization/tardis_node_mapper_pairs_derivatives_options.jsonl"
FRAMES = 20_000
BATCH = 50


# Tardis test -> format; the channel names each decoder reads (any venue's spelling)
_TESTS = {
    "map binance futures messages": "binance-futures",
    "map binance delivery messages": "binance-delivery",
    "map bybit messages": "bybit",
    "map okex-swap messages": "okx",
    "map okex-futures messages": "okx",
    "map deribit messages": "deribit",
    "map bitmex messages": "bitmex",
}
_CHANNELS = {
    "markPrice",
    "forceOrder",
    "openInterest",
    "indexPrice",
    "tickers",
    "liquidation",
    "allLiquidation",
    "instrument_info",
    "funding-rate",
    "mark-price",
    "index-tickers",
    "open-interest",
    "liquidation-orders",
    "liquidations",
    "ticker",
    "instrument",
    "swap/funding_rate",
    "swap/mark_price",
    "futures/mark_price",
    "swap/liquidation",
    "futures/liquidation",
}


def _frames(path: Path) -> dict[str, list[bytes]]:
    import msgspec

    by_format: dict[str, list[bytes]] = defaultdict(list)
    for raw in path.read_bytes().splitlines():
        pair = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        fmt = _TESTS.get(msgspec.json.decode(pair["test"]))
        msg = msgspec.json.decode(pair["input"])
        if fmt is not None and isinstance(msg, dict) and channel_of(msg) in _CHANNELS:
            by_format[fmt].append(bytes(pair["input"]))
    return by_format


def run(report: Report) -> None:
    """Time each derivatives decoder, batch and live, and add the rates to ``report``."""
    from tapeflow.derivatives import decode, decoder
    from tapeflow.wire.capture import RECV, CaptureLine

    path = real_file(PAIRS)
    if path is None:
        report.skip("no real data (the Tardis mapper pairs)")
        return
    report.section("derivatives decoders: frames/s on real message shapes (batch file, live micro-batches)")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, inputs in sorted(_frames(path).items()):
            frames = (inputs * (FRAMES // len(inputs) + 1))[:FRAMES]
            capture = Path(tmp) / f"{fmt}.jsonl"
            capture.write_bytes(
                b"".join(b"%d %s\n" % (1_700_000_000_000_000_000 + i, f) for i, f in enumerate(frames))
            )
            batch = median_time(lambda c=capture, f=fmt: list(decode(f, [c])))
            report.add(f"tapeflow {fmt} batch", FRAMES, batch, ours=True)
            lines = [CaptureLine(i, RECV, "", f, "bench") for i, f in enumerate(frames)]

            def live(fmt: str = fmt, lines: list[CaptureLine] = lines) -> None:
                dec = decoder(fmt)
                for start in range(0, len(lines), BATCH):
                    dec.feed_many(lines[start : start + BATCH])
                    dec.flush(0, "live")

            report.add(f"tapeflow {fmt} live ({BATCH}-frame batches)", FRAMES, median_time(live), ours=True)
    report.note(f"{FRAMES:,} frames per venue: the Tardis pairs of the decoded channels, repeated")


if __name__ == "__main__":
    t0 = time.perf_counter()
    r = Report()
    run(r)
    print(r.render())
    print(f"\n({time.perf_counter() - t0:.0f} s)")
