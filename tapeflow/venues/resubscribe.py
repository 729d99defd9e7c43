"""The live client shape of venues whose websocket resync is a resubscription (Kraken, Coinbase, OKX).

None of these venues serves a REST book that lines up with its websocket stream the way
Binance's ``lastUpdateId`` does; each sends a fresh snapshot when a book channel is subscribed
again. So when a :class:`~tapeflow.venues.livesync.LiveSync` reports a broken book the client
unsubscribes and subscribes that one instrument again, through the connector's rate limiter (a
burst of checksum failures must not become a burst of requests the venue throttles), and asks
again when no snapshot came within ``resync_timeout_s``. Until the snapshot arrives the sync
flags the instrument's rows, so nothing is published as valid from the broken book.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Sequence

from tapeflow.live.connector import Connector
from tapeflow.live.frames import LiveBatch, RawFrame
from tapeflow.venues.livesync import SYNCED, LiveSync, SyncDecoder, SyncStats


class ResubscribingClient(Connector):
    """Base of the Kraken, Coinbase and OKX clients: the connector plus resync by resubscription.

    Subclasses provide :meth:`ws_url`, :meth:`subscribe_messages`, :meth:`make_sync` and
    :meth:`resubscribe_messages` (and :meth:`ping_message` where the venue wants one).
    """

    resync_timeout_s: float = 10.0

    def make_sync(self) -> LiveSync:
        """The venue's live sync (it wraps the venue's batch decoder)."""
        raise NotImplementedError

    def resubscribe_messages(self, symbol: str) -> list[str]:
        """Messages that make the venue send a fresh snapshot of ``symbol``'s book."""
        raise NotImplementedError

    def make_decoder(self) -> SyncDecoder:
        """The venue sync behind the frame-decoder interface the connector feeds."""
        self.live_sync = self.make_sync()
        # symbol -> monotonic time its last resubscription was sent (inf while it waits for the limiter)
        self._requested: dict[str, float] = {}
        self._resync_tasks: set[asyncio.Task[None]] = set()
        self.resubscribes = 0
        return SyncDecoder(self.live_sync)

    @property
    def stats(self) -> SyncStats:
        """The venue sync's counters (checksums and links checked on synced books, resyncs)."""
        return self.live_sync.stats

    async def on_open(self) -> None:
        """A fresh connection subscribes every book afresh: earlier resync requests are moot."""
        self._requested.clear()

    def after_frame(self, frame: RawFrame) -> None:
        """Turn the frame's sync events into STATUS rows and resubscriptions."""
        assert isinstance(self.decoder, SyncDecoder)
        now = time.monotonic()  # taken first: a request made for this very frame is not overdue
        for event in self.decoder.pop_events():
            if event.state == SYNCED:
                self._requested.pop(event.symbol, None)
                self.sync.sync_done(event.symbol, event.detail, sequence=event.sequence)
            else:
                self.sync.gap(event.symbol, event.detail, sequence=event.sequence, reason=event.state)
                if event.symbol not in self._requested:
                    self._resync(event.symbol)
        for symbol, asked in list(self._requested.items()):
            # a request still queued at the limiter is not overdue: asking again would only pile up
            if asked < now and now - asked >= self.resync_timeout_s:
                self.sync.resyncing(symbol, f"no snapshot {now - asked:.1f} s after asking: asking again")
                self._resync(symbol)

    async def batches(self) -> AsyncIterator[LiveBatch]:
        """The connector's batches (see :meth:`Connector.batches`); pending resubscriptions end with it."""
        try:
            async for batch in super().batches():
                yield batch
        finally:
            for task in list(self._resync_tasks):
                task.cancel()

    def _resync(self, symbol: str) -> None:
        self._requested[symbol] = math.inf
        task = asyncio.get_running_loop().create_task(self._resubscribe(symbol))
        self._resync_tasks.add(task)
        task.add_done_callback(self._resync_tasks.discard)

    async def _resubscribe(self, symbol: str) -> None:
        await self.limiter.acquire()
        for message in self.resubscribe_messages(symbol):
            await self.send(message)
        self.resubscribes += 1
        if symbol in self._requested:  # not synced meanwhile: the timeout runs from now
            self._requested[symbol] = time.monotonic()


def symbols_list(symbols: Sequence[str] | str) -> list[str]:
    """A symbol list from a sequence or a comma-separated string (as the CLI and env give it)."""
    if isinstance(symbols, str):
        return [s.strip() for s in symbols.split(",") if s.strip()]
    return list(symbols)
