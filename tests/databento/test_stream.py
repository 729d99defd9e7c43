"""The live stream decoder: pieces of any size decode as the whole file does, dead letters included."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tapeflow.errors import FormatError
from tapeflow.venues.base import merge
from tapeflow.venues.databento.framing import read_all
from tapeflow.venues.databento.parse import decode_all
from tapeflow.venues.databento.stream import StreamDecoder
from tapeflow.wire.capture import Decoded
from tests.databento.support import MBO_1225, databento_file


def stream(path: Path, raw: bytes, seed: int) -> dict:
    rng = random.Random(seed)
    decoder, chunks, at = StreamDecoder(path), [], 0
    while at < len(raw):
        n = rng.randint(1, 50_000)
        chunks.append(Decoded(decoder.feed(raw[at: at + n])))
        at += n
    chunks.append(Decoded(decoder.finish()))
    return merge(chunks)


def test_pieces_of_any_size_decode_as_the_file(real_data: Path, tmp_path: Path) -> None:
    raw = read_all(databento_file(real_data, MBO_1225))
    plain = tmp_path / "es.mbo.dbn"
    plain.write_bytes(raw)
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    got, want = stream(plain, raw, seed), decode_all([plain])
    assert set(got) == set(want) == {"order_event"} and got["order_event"].equals(want["order_event"])


def test_a_stream_cut_inside_a_record_ends_in_the_batch_decoders_dead_letter(real_data: Path,
                                                                              tmp_path: Path) -> None:
    raw = read_all(databento_file(real_data, MBO_1225))[:-30]  # the last record loses 30 of its 56 bytes
    cut = tmp_path / "cut.mbo.dbn"
    cut.write_bytes(raw)
    got, want = stream(cut, raw, 1), decode_all([cut])
    assert got["order_event"].num_rows == 68_791 and got["order_event"].equals(want["order_event"])
    [live] = got["rejected"].to_pylist()
    [batch] = want["rejected"].to_pylist()
    assert live["reason"] == batch["reason"] == "truncated"
    fields = ("location", "raw", "detail")
    assert [live[f] for f in fields] == [batch[f] for f in fields]


def test_a_stream_that_is_not_dbn_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="does not start with DBN metadata"):
        StreamDecoder(tmp_path / "x.dbn").feed(b'{"not": "dbn"}\n')
