"""The derivatives REST pollers as a feed of the live flow: an event loop on a thread of its own,
its answers' tables handed to synchronous code (the Bytewax source ``flows.derivatives.PollSource``).

Polling is slow and low-volume (a few answers a second at most), so every answer's tables are kept
until the consumer takes them: nothing is dropped. A poller that fails (its callback raised, a bug)
stops the feed and :meth:`PollFeed.take` raises :class:`PollError` with the cause's message;
network errors and non-200 answers never do (the pollers retry and dead-letter them).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence

import pyarrow as pa

from tapeflow.derivatives.poll import Poller, PollStats
from tapeflow.derivatives.poll_config import VenuePoll, binance_coinm, binance_usdm, bybit, okx
from tapeflow.derivatives.poll_spec import parse_spec
from tapeflow.errors import TapeflowError
from tapeflow.pullcache import PullCache
from tapeflow.wire.capture import Decoded

JOIN_S = 10.0  # how long close() waits for the loop to finish a request in flight

Item = tuple[str, pa.Table]  # (record name, table): what the flow's sinks take


class PollError(TapeflowError):
    """The pollers stopped on an error of their own (not a venue's or the network's)."""


class PollFeed:
    """Runs :class:`~tapeflow.derivatives.poll.Poller` over ``venues`` until :meth:`close`.

    Args:
        venues: what to poll.
        wall_ns: receive time stamped on the rows.
        cache: the pull cache of the answers (None: none; :class:`~tapeflow.derivatives.poll.Poller`).
    """

    def __init__(self, venues: Sequence[VenuePoll], *, wall_ns: Callable[[], int] = time.time_ns,
                 cache: PullCache | None = None) -> None:
        self._items: queue.SimpleQueue[list[Item]] = queue.SimpleQueue()
        self.poller = Poller(venues, self._on_rows, wall_ns=wall_ns, cache=cache)
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tapeflow-derivatives-polls", daemon=True)
        self._thread.start()
        self._ready.wait()

    @property
    def stats(self) -> PollStats:
        return self.poller.stats

    def take(self) -> list[Item]:
        """Every table answered since the last call (never blocks).

        Raises:
            PollError: the pollers stopped on an error.
        """
        out: list[Item] = []
        while True:
            try:
                out.extend(self._items.get_nowait())
            except queue.Empty:
                break
        if not out and self.error is not None:
            raise PollError(f"derivatives pollers stopped: {type(self.error).__name__}: {self.error}")
        return out

    def close(self) -> None:
        """Stop polling (a request in flight is abandoned) and wait for the loop to end."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed in between: nothing left to stop
                pass
        self._thread.join(JOIN_S)

    def _on_rows(self, decoded: Decoded) -> None:
        items = [(name, table) for name, table in decoded.tables.items() if table.num_rows]
        if items:
            self._items.put(items)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._stop = asyncio.Event()
            self._ready.set()
            loop.run_until_complete(self.poller.run(self._stop))
        except Exception as exc:  # handed to the consumer by take(), never lost with the thread
            self.error = exc
        finally:
            self._ready.set()
            loop.close()


_BUILDERS: dict[str, Callable[..., VenuePoll]] = {
    "binance_usdm": binance_usdm, "binance_coinm": binance_coinm, "bybit": bybit, "okx": okx}


def parse_polls(spec: str, base_url: str | None = None) -> list[VenuePoll]:
    """``binance_usdm:BTCUSDT,ETHUSDT;okx:BTC-USDT-SWAP`` -> the venues' default polls.

    Args:
        spec: ``;``-separated ``VENUE:SYMBOL[,SYMBOL...]`` (``tapeflow.derivatives.poll_spec``).
        base_url: replaces every venue's base URL (a replay server's ``rest_url`` in tests).

    Raises:
        ConfigError: an unknown venue, a venue without symbols, or a bad base URL.
    """
    return [_BUILDERS[name](symbols, base_url) if base_url else _BUILDERS[name](symbols)
            for name, symbols in parse_spec(spec)]
