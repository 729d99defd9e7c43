"""Every frame ends as rows, one dead letter or a declared quiet frame (docs/reliability.md).

``VenueDecoder.feed_frame`` checks it once for the venues that declare their quiet frames
(``every_frame_accounted``: BitMEX, Bybit, Kraken, OKX): a frame read without complaint that made
nothing is an ``empty_message`` dead letter, never a silent drop.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.wire.capture import RECV, SENT, CaptureLine

T0 = 1_700_000_000_000_000_000


class _Nothing(VenueDecoder):
    venue = "test"
    every_frame_accounted = True

    def message(self, msg: Any, line: CaptureLine) -> None:
        if msg.get("ping"):
            self.quiet("ping")


def _line(payload: bytes, n: int, kind: str = RECV) -> CaptureLine:
    return CaptureLine(T0 + n, kind, "", payload, f"t:{n}")


def test_a_frame_that_makes_nothing_is_an_empty_message_dead_letter() -> None:
    dec = _Nothing()
    for n, (kind, payload) in enumerate([(RECV, b'{"x":1}'), (RECV, b'{"ping":true}'), (SENT, b'{"op":1}')]):
        dec.feed(_line(payload, n, kind))
    rej = dec.flush(0, "t").tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"]) for r in rej] == [("empty_message", "t:0")]
    assert dict(dec.quiet_frames) == {"ping": 1, SENT: 1}


def test_a_venue_that_declares_nothing_is_not_checked() -> None:
    class Unchecked(_Nothing):
        every_frame_accounted = False

    dec = Unchecked()
    dec.feed(_line(b'{"x":1}', 0))
    assert "rejected" not in dec.flush(0, "t").tables


@pytest.mark.parametrize(("fmt", "frames"), [
    # a Kraken book update carrying only its checksum: no level, nothing to store
    ("kraken", [[7, {"as": [["5.0", "1.0", "1.0"]], "bs": [["4.0", "1.0", "1.0"]]}, "book-10", "X/Y"],
                [7, {"c": "123"}, "book-10", "X/Y"]]),
])
def test_a_real_venue_frame_that_made_nothing_is_an_empty_message(tmp_path: Path, fmt: str,
                                                                  frames: list) -> None:
    path = tmp_path / f"{fmt}.jsonl"
    path.write_text("".join(f"{T0 + i} {json.dumps(f)}\n" for i, f in enumerate(frames)))
    tables = merge(list(get_format(fmt).decode([path])))
    rej = tables["rejected"].to_pylist()
    assert [(r["reason"], r["location"]) for r in rej] == [("empty_message", f"{fmt}.jsonl:2")]


@pytest.mark.parametrize("frame", [
    {"event": "heartbeat"},
    {"event": "subscriptionStatus", "status": "subscribed", "pair": "X/Y"},
])
def test_kraken_control_frames_are_quiet(tmp_path: Path, frame: dict) -> None:
    path = tmp_path / "k.jsonl"
    path.write_text(f"{T0} {json.dumps(frame)}\n")
    assert "rejected" not in merge(list(get_format("kraken").decode([path])))


def test_an_okx_heartbeat_update_is_quiet(tmp_path: Path) -> None:
    snap = {"arg": {"channel": "books", "instId": "X-Y"}, "action": "snapshot",
            "data": [{"asks": [["5", "1", "0", "1"]], "bids": [["4", "1", "0", "1"]], "ts": "1700000000000",
                      "seqId": 10, "prevSeqId": -1}]}
    beat = {"arg": {"channel": "books", "instId": "X-Y"}, "action": "update",
            "data": [{"asks": [], "bids": [], "ts": "1700000000001", "seqId": 10, "prevSeqId": 10}]}
    path = tmp_path / "o.jsonl"
    path.write_text(f"{T0} {json.dumps(snap)}\n{T0 + 1} {json.dumps(beat)}\n")
    tables = merge(list(get_format("okx").decode([path])))
    assert "rejected" not in tables and tables["book_delta"].num_rows == 3
