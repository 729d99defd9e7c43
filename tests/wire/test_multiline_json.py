"""A JSON document spread over several lines of a capture (pretty-printed) is one dead letter, not one
per line, in the capture reader, the Binance block decoder and the replay server's tape; the frames
around it are read as before (tapeflow/wire/capture.py, ``Document``).

Not accepted: every capture format tapeflow reads (``<recv_ns> <json>``, cryptofeed logs, REST
bodies included; all of ``$TAPEFLOW_REAL_DATA/cryptofeed`` is one frame per line) holds one compact
frame per line, so where a spread document ends would be a guess."""

from __future__ import annotations

import json
from pathlib import Path

from tapeflow.replay.protocol import adapter_for
from tapeflow.venues.base import merge
from tapeflow.venues.binance.parse import decode
from tapeflow.wire.capture import read_capture
from tapeflow.wire.rejects import Rejects

T0 = 1_718_173_800_000  # ms


def _trade(i: int) -> dict:
    return {"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": T0 + i, "s": "BTCUSDT", "t": 100 + i, "p": "60000.10", "q": "0.5", "b": 1, "a": 2,
        "T": T0 + i, "m": True, "M": True}}


def _line(i: int) -> str:
    return f"{(T0 + i) * 1_000_000} {json.dumps(_trade(i), separators=(',', ':'))}"


def _capture(tmp_path: Path) -> tuple[Path, int]:
    """Lines 1-2 compact frames, 3..3+n-1 one pretty-printed frame, then a compact frame, a frame cut
    short at a comma (one line: a frame as before), a compact frame, a garbage line, and a
    pretty-printed frame that ends the file."""
    pretty = json.dumps(_trade(2), indent=2).splitlines()
    n = len(pretty)
    cut = _line(4)[:_line(4).index(",") + 1]
    lines = [_line(0), _line(1), f"{(T0 + 2) * 1_000_000} {pretty[0]}", *pretty[1:], _line(3), cut, _line(5),
             "not a capture line", f"{(T0 + 6) * 1_000_000} {pretty[0]}", *pretty[1:]]
    path = tmp_path / "capture.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, n


def test_a_pretty_printed_frame_is_one_dead_letter_in_the_capture_reader(tmp_path: Path) -> None:
    path, n = _capture(tmp_path)
    assert n > 10
    rejects = Rejects("binance")
    frames = list(read_capture(path, rejects))
    assert [f.location for f in frames] == ["capture.jsonl:1", "capture.jsonl:2", f"capture.jsonl:{n + 3}",
                                            f"capture.jsonl:{n + 4}", f"capture.jsonl:{n + 5}"]
    dead = rejects.table().to_pylist()
    end = 2 * n + 6
    assert [(r["reason"], r["location"]) for r in dead] == [
        ("bad_capture_line", f"capture.jsonl:3-{n + 2}"), ("bad_capture_line", f"capture.jsonl:{n + 6}"),
        ("bad_capture_line", f"capture.jsonl:{n + 7}-{end}")]
    assert f"spread over {n} lines" in dead[0]["detail"] and dead[0]["ts_recv_ns"] == (T0 + 2) * 1_000_000


def test_the_block_decoder_and_the_frame_decoder_count_it_once(tmp_path: Path) -> None:
    path, n = _capture(tmp_path)
    for fast in (True, False):
        got = merge(list(decode([path], fast=fast)))
        dead = [(r["reason"], r["location"]) for r in got["rejected"].to_pylist()
                if r["reason"] == "bad_capture_line"]
        assert dead == [("bad_capture_line", f"capture.jsonl:3-{n + 2}"),
                        ("bad_capture_line", f"capture.jsonl:{n + 6}"),
                        ("bad_capture_line", f"capture.jsonl:{n + 7}-{2 * n + 6}")], fast
        assert sorted(got["trade"]["trade_id"].to_pylist()) == ["100", "101", "103", "105"], fast


def test_the_replay_server_counts_it_once(tmp_path: Path) -> None:
    path, n = _capture(tmp_path)
    adapter = adapter_for("binance")
    tape = adapter.load([path])
    assert len(tape) >= 4  # the compact frames (and the cut one: a frame as before, unread by the book)
    assert adapter.bad_reasons["bad_capture_line"] == 3
    assert adapter.bad_reasons["bad_json"] == 1  # the frame cut short at a comma, as before
    want = f"capture.jsonl:3-{n + 2}: bad_capture_line: a JSON document spread over {n} lines"
    assert any(e.startswith(want) for e in adapter.bad_examples), adapter.bad_examples
