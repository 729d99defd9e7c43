"""The connector's frame -> decoder hand-off (``Connector.decode_batch``): a decoder's batch entry
point gets the whole batch when no per-frame hook needs the frames one by one, and both paths give
the same lines, the same new-day call and the same rows marked as written while unsynced."""

from __future__ import annotations

from typing import Any

from tapeflow.live import Connector, RawFrame
from tapeflow.wire.capture import CaptureLine

DAY_NS = 86_400 * 1_000_000_000
T0 = 20_000 * DAY_NS + 5  # some UTC day, 5 ns after midnight


class _Decoder:
    """Records what it is fed; each frame writes one book row (``deltas``)."""

    venue = "v"

    def __init__(self, batch: bool) -> None:
        self.calls: list[list[bytes]] = []
        self.deltas: list[bytes] = []
        if not batch:
            self.feed_many = None  # type: ignore[assignment]

    @property
    def rows(self) -> int:
        return len(self.deltas)

    def feed(self, line: CaptureLine) -> None:
        self.calls.append([line.payload])
        self.deltas.append(line.payload)

    def feed_many(self, lines: list[CaptureLine]) -> None:  # noqa: F811 - removed per instance above
        self.calls.append([line.payload for line in lines])
        self.deltas.extend(line.payload for line in lines)


class _Client(Connector):
    def __init__(self, decoder: _Decoder) -> None:
        self._stub = decoder
        self.days: list[str] = []
        super().__init__(["A"], venue="v")

    def make_decoder(self) -> Any:
        return self._stub

    def on_new_day(self, day: str) -> None:
        self.days.append(day)


class _PerFrameClient(_Client):
    def after_frame(self, frame: RawFrame) -> None:
        self.days.append(f"after {frame.data.decode()}")


def _frames(*offsets_ns: int) -> tuple[list[RawFrame], list[str]]:
    frames = [RawFrame("v", T0 + off, f"f{i}".encode()) for i, off in enumerate(offsets_ns)]
    return frames, [f"j:{i + 1}" for i in range(len(frames))]


def test_a_batch_entry_point_gets_the_whole_batch_and_unsynced_rows_are_marked() -> None:
    client = _Client(_Decoder(batch=True))
    frames, locations = _frames(0, 10, 20)
    client._day_ns = T0 - 5 - DAY_NS  # noqa: SLF001 - the previous batch was the day before
    client.decode_batch(frames, locations)
    assert client.decoder.calls == [[b"f0", b"f1", b"f2"]]  # one call, frames in order
    assert client.days == ["2024-10-04"]  # the new day, once
    assert client._maybe_bad == [(0, 3, {"A"})]  # noqa: SLF001 - "A" never synced


def test_per_frame_hooks_and_a_batch_across_midnight_go_frame_by_frame() -> None:
    client = _PerFrameClient(_Decoder(batch=True))
    frames, locations = _frames(0, 10)
    client.decode_batch(frames, locations)
    assert client.decoder.calls == [[b"f0"], [b"f1"]]
    assert client.days == ["after f0", "after f1"]
    across = _Client(_Decoder(batch=True))
    frames, locations = _frames(DAY_NS - 10, DAY_NS)  # the last frame opens the next day
    across.decode_batch(frames, locations)
    assert across.decoder.calls == [[b"f0"], [b"f1"]] and across.days == ["2024-10-05"]
    assert across._maybe_bad == [(0, 1, {"A"}), (1, 2, {"A"})]  # noqa: SLF001


def test_a_decoder_without_a_batch_entry_point_is_fed_frame_by_frame() -> None:
    client = _Client(_Decoder(batch=False))
    frames, locations = _frames(0, 10, 20)
    client.decode_batch(frames, locations)
    assert client.decoder.calls == [[b"f0"], [b"f1"], [b"f2"]]
