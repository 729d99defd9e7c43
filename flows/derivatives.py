"""The derivatives REST pollers as a Bytewax source of the market flow (docs/derivatives.md).

Its items are ``(record name, table)`` as the flow's sinks take them (``funding_rate``,
``mark_price``, ``index_price``, ``open_interest``, ``insurance_fund``, ``rejected``): the flow
merges them with the instruments' outputs, so they reach the same lake and warehouse sinks (with
their batch tokens) and the dead-letter sink.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from tapeflow.derivatives.poll_config import VenuePoll
from tapeflow.derivatives.stream import Item, PollFeed
from tapeflow.errors import ConfigError
from tapeflow.live.shutdown import stop_requested

IDLE_WAKE_MS = 50  # polls come every few seconds: an idle source looks again this often


class _PollPartition(StatefulSourcePartition[Item, None]):
    def __init__(self, source: PollSource) -> None:
        self._feed = PollFeed(source.venues)
        self._deadline = (time.monotonic() + source.duration_ns / 1e9) if source.duration_ns else None
        self._idle = False

    def next_batch(self) -> list[Item]:
        if stop_requested() or (self._deadline is not None and time.monotonic() >= self._deadline):
            items = self._feed.take()  # what was answered before the stop still goes out
            self.close()
            if items:
                return items
            raise StopIteration
        items = self._feed.take()
        self._idle = not items
        return items

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + timedelta(milliseconds=IDLE_WAKE_MS) if self._idle else None

    def snapshot(self) -> None:
        # a poll cannot be rewound: after a resume the next answers are new ones
        return None

    def close(self) -> None:
        self._feed.close()


class PollSource(FixedPartitionedSource[Item, None]):
    """REST polls of funding, mark, index, open interest and insurance funds (one partition).

    Args:
        venues: what to poll (``tapeflow.derivatives.stream.parse_polls``).
        duration_ns: stop after this long; None: until the flow is stopped. A flow ends when all
            its sources have, so a poll source beside a capture replay needs one.

    Raises:
        ConfigError: no venue.
    """

    def __init__(self, venues: Sequence[VenuePoll], *, duration_ns: int | None = None) -> None:
        if not venues:
            raise ConfigError("PollSource needs at least one venue to poll")
        self.venues = tuple(venues)
        self.duration_ns = duration_ns

    def list_parts(self) -> list[str]:
        return ["derivatives-polls"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PollPartition:
        return _PollPartition(self)
