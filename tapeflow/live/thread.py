"""Run a live client's ``batches()`` on its own event loop thread, for synchronous consumers.

Bytewax sources, scripts and tests pull batches with ``next()`` (or :meth:`LiveThread.poll`
with a timeout) while the asyncio connector runs in a daemon thread; a bounded queue between
them makes a slow consumer slow the reading down instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from tapeflow.live.frames import LiveBatch

_DONE = object()


class LiveClient(Protocol):
    """What :func:`iterate_in_thread` needs of a client."""

    def batches(self) -> AsyncIterator[LiveBatch]: ...

    def close(self) -> None: ...


class LiveThread(Iterator[LiveBatch]):
    """An iterator over a client's batches, produced on a background event loop.

    Args:
        client: the live client.
        max_pending: batches buffered ahead of the consumer.
    """

    def __init__(self, client: LiveClient, *, max_pending: int = 64) -> None:
        self.client = client
        self._out: queue.Queue[object] = queue.Queue(maxsize=max_pending)
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=f"tapeflow-live-{type(client).__name__}",
                                        daemon=True)
        self._thread.start()

    def __next__(self) -> LiveBatch:
        if self._finished:
            raise StopIteration
        return self._unwrap(self._out.get())

    def poll(self, timeout_s: float) -> LiveBatch | None:
        """The next batch, or None when none arrives within ``timeout_s``.

        Raises:
            StopIteration: the client has finished.
        """
        if self._finished:
            raise StopIteration
        try:
            item = self._out.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return self._unwrap(item)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the client, end its thread (waiting up to ``timeout_s``) and drop unread batches.

        The client is asked to close first, so it ends its session cleanly (socket closed,
        decoder flushed); only a client that does not stop within half the time is cancelled.
        """
        self._stop.set()
        self._call(self.client.close)
        deadline = time.monotonic() + timeout_s
        cancelled = False
        while self._thread.is_alive() and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._out.get(timeout=0.02)  # unblock a producer waiting on a full queue
            self._thread.join(timeout=0.02)
            if not cancelled and time.monotonic() > deadline - timeout_s / 2:
                cancelled = True
                self._call(self._cancel)
        self._finished = True

    @property
    def alive(self) -> bool:
        """Whether the background thread still runs."""
        return self._thread.is_alive()

    def __enter__(self) -> LiveThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unwrap(self, item: object) -> LiveBatch:
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        assert isinstance(item, LiveBatch)
        return item

    def _call(self, fn: Callable[[], None]) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may close between check and call
                self._loop.call_soon_threadsafe(fn)

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._task = self._loop.create_task(self._pump())
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # handed to the consumer, who re-raises it in its own thread
            self._put(exc)
        finally:
            self._put(_DONE)
            # Let whatever the client left behind (keepalive pings, REST fetches) end before the loop does.
            left = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
            for t in left:
                t.cancel()
            if left:
                self._loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _pump(self) -> None:
        gen = self.client.batches()
        try:
            # After close() the client winds down by itself (socket closed, final batch); its
            # batches are then dropped rather than handed on.
            async for batch in gen:
                while not self._stop.is_set():
                    try:
                        self._out.put_nowait(batch)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.01)
        finally:
            await gen.aclose()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        with contextlib.suppress(queue.Full):
            self._out.put_nowait(item)


def iterate_in_thread(client: LiveClient, *, max_pending: int = 64) -> LiveThread:
    """Iterate ``client.batches()`` from synchronous code; call ``close()`` (or use ``with``) to stop.

    Args:
        client: a live venue client (e.g. ``BinanceClient``).
        max_pending: batches buffered ahead of the consumer before reading pauses.

    Returns:
        an iterator of :class:`~tapeflow.live.frames.LiveBatch` with ``poll(timeout_s)`` and ``close()``.
    """
    return LiveThread(client, max_pending=max_pending)
