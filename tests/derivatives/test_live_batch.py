"""Live == batch for the derivatives decoders, and damage that never escapes as an exception.

The frames are the raw venue messages of Tardis's mapper pairs (real messages, real shapes): a
capture file decoded in batch (``run``) equals the same frames fed live in micro-batches
(``feed_many`` + ``flush``), and every cut or corrupted frame ends as rows or one dead letter.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

import msgspec
import pyarrow as pa
import pytest

from tapeflow.derivatives import FORMATS, decode, decoder
from tapeflow.venues.base import merge
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.tardis_pairs import PAIRS, TESTS

T0 = 1_700_000_000_000_000_000
_NUMBER = re.compile(rb"\d+(\.\d+)?")
_LIMITS = (b"99999999999999999999", b"-99999999999999999999", b"-1", b"1e400", b"1e-400", b"0",
           b"9223372036854775807", b"1.0000000000000000000001", b"9" * 30, b"null", b"true", b'""', b"[]")


@pytest.fixture(scope="module")
def frames(real_data: Path) -> dict[str, list[bytes]]:
    by_format: dict[str, list[bytes]] = defaultdict(list)
    for raw in need(real_data / PAIRS).read_bytes().splitlines():
        pair = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        test = msgspec.json.decode(pair["test"])
        if test in TESTS:
            by_format[TESTS[test][0]].append(bytes(pair["input"]))
    return by_format


def _inputs(frames: dict[str, list[bytes]], fmt: str) -> list[bytes]:
    """The format's real frames; COIN-M's (binance-delivery) followed by USD-M's, which the same
    decoder reads (the COIN-M pairs are few: 12 messages)."""
    return frames[fmt] + (frames["binance-futures"] if fmt == "binance-delivery" else [])


def _sorted(table: pa.Table) -> list[str]:
    return sorted(map(repr, table.to_pylist()))  # as text: a missing rate (NaN) equals itself


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_live_micro_batches_equal_the_batch_decode(
    tmp_path: Path, frames: dict[str, list[bytes]], fmt: str
) -> None:
    inputs = _inputs(frames, fmt)
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"".join(b"%d %s\n" % (T0 + i, f) for i, f in enumerate(inputs)))
    batch = merge(list(decode(fmt, [path])))
    dec = decoder(fmt)
    lines = [CaptureLine(T0 + i, RECV, "", f, f"capture.jsonl:{i + 1}") for i, f in enumerate(inputs)]
    chunks = []
    for start in range(0, len(lines), 3):  # micro-batches of three frames
        dec.feed_many(lines[start:start + 3])
        chunks.append(dec.flush(0, "live"))
    live = merge(chunks)
    assert set(live) == set(batch) and len(batch) > 2
    for name in batch:
        assert _sorted(live[name]) == _sorted(batch[name]), name


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_cut_and_corrupted_frames_are_rows_or_one_dead_letter(
    frames: dict[str, list[bytes]], fmt: str
) -> None:
    seed = random.randrange(1 << 30)
    print(f"damage seed {seed}")
    rng = random.Random(seed)
    dec = decoder(fmt)
    for frame in _inputs(frames, fmt):
        for _ in range(6):
            damaged = bytearray(frame)
            mode = rng.random()
            if mode < 0.35:
                damaged = damaged[: rng.randrange(1, len(damaged))]
            elif mode < 0.7:
                for _ in range(rng.randrange(1, 4)):
                    damaged[rng.randrange(len(damaged))] = rng.choice(b'{}[]",:0-9eE.- aznull')
            else:  # a number replaced by one at a limit (how a negative timestamp_e6 broke a chunk)
                numbers = list(_NUMBER.finditer(damaged))
                if numbers:
                    m = rng.choice(numbers)
                    damaged[m.start():m.end()] = rng.choice(_LIMITS)
            rejected, before, quiet = len(dec.rejects), dec.rows, sum(dec.quiet_frames.values())
            dec.feed(CaptureLine(T0, RECV, "", bytes(damaged), "fuzz"))  # raises nothing
            assert len(dec.rejects) - rejected <= 1
            # rows, a dead letter, or a control frame: never nothing
            assert dec.rows > before or sum(dec.quiet_frames.values()) > quiet
    dec.flush(0, "fuzz")  # the rows still build their tables
