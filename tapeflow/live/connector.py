"""The session loop every live venue client shares.

A :class:`Connector` connects (aiohttp's websocket client), subscribes, reads frames into a list
(:mod:`tapeflow.live.intake`: the reader, the stale watchdog, the batcher), journals each
micro-batch of frames BEFORE decoding it, decodes it with the venue's own batch decoder (fed
:class:`~tapeflow.wire.capture.CaptureLine` s, so live records equal a batch decode of the
journal), and yields :class:`~tapeflow.live.frames.LiveBatch` es. Around that: venue pings,
stale detection (no frame for ``stale_after_s`` -> STATUS ``stale`` + reconnect), reconnects
with capped exponential backoff and jitter, rate-limited REST requests (snapshots) that honour
HTTP 429/418 ``Retry-After``, and the per-instrument sync state machine (:mod:`tapeflow.live.sync`).

A venue client subclasses it and fills in the hooks: :meth:`ws_url`, :meth:`subscribe_messages`,
:meth:`make_decoder`, optionally :meth:`ping_message`, :meth:`on_open` and :meth:`after_frame`
(where it reads its decoder's chain state, reports gaps and asks for snapshots).

Records equal a batch decode of the journal except two bits only the live client can know:
book rows a frame wrote while its instrument was not synced (before the first snapshot, between
a gap and the fresh snapshot) carry ``F_MAYBE_BAD_BOOK``, and a frame that broke a book in a way
its decoder cannot flag (:meth:`Connector.flag_gap`) gets ``F_GAP`` on its first row.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pyarrow as pa

from tapeflow.journal import Journal
from tapeflow.live.frames import REST, LiveBatch, RawFrame, StatusLog, flag_rows
from tapeflow.live.handoff import DecodeHandoff
from tapeflow.live.intake import FrameIntake, SessionEnd
from tapeflow.live.pacing import Backoff, TokenBucket, retry_after_s
from tapeflow.live.sync import DISCONNECTED, SyncTracker
from tapeflow.wire.capture import FrameDecoder

_SEND_ERRORS = (aiohttp.ClientError, ConnectionError, RuntimeError)  # sending on a closing socket


@dataclass(frozen=True)
class ConnectorSettings:
    """Knobs of the session loop (venue clients keep the venue's own defaults elsewhere).

    Attributes:
        stale_after_s: no frame for this long -> STATUS ``stale`` and a reconnect.
        ping_interval_s: venue-level ping period (None: the venue class decides).
        ws_ping_interval_s: websocket protocol ping after this long without a frame (None: off);
            no pong within half of it cuts the connection.
        open_timeout_s: connect + handshake limit.
        ws_compression: offer permessage-deflate (off: market data frames are small and
            inflating them costs latency; the venues send uncompressed frames then).
        backoff_initial_s, backoff_max_s, backoff_factor, backoff_jitter: reconnect schedule.
        seed: seeds the backoff jitter (tests).
        max_batch_frames: most frames per micro-batch.
        batch_linger_s: how long a batch waits for more frames after its first (latency bound).
        max_queued_frames: frames read but not yet batched before reading pauses (backpressure).
        snapshot_rate_per_s, snapshot_burst: REST snapshot rate limit.
        rest_timeout_s: one REST request's limit.
        max_connects: stop after this many connection attempts (None: never; tests and tools).
        awake_interval_s: stamp, this often, when the connection was last read (``LiveBatch.awake_ns``),
            and hand on an empty batch saying so while no frame comes (None: off; the failover
            source turns it on: it judges a source's silence only while its connector was awake).
    """

    stale_after_s: float = 30.0
    ping_interval_s: float | None = None
    ws_ping_interval_s: float | None = 20.0
    open_timeout_s: float = 10.0
    ws_compression: bool = False
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_factor: float = 2.0
    backoff_jitter: float = 0.2
    seed: int | None = None
    max_batch_frames: int = 2000
    batch_linger_s: float = 0.002
    max_queued_frames: int = 100_000
    snapshot_rate_per_s: float = 1.0
    snapshot_burst: int = 2
    rest_timeout_s: float = 10.0
    max_connects: int | None = None
    awake_interval_s: float | None = None


class Connector(FrameIntake, DecodeHandoff):
    """Base of the live venue clients (see the module docstring).

    Args:
        symbols: instruments to subscribe (venue spelling).
        venue: the venue code frames are journaled and decoded under.
        endpoint: websocket base URL (None: the venue's production host).
        rest_endpoint: REST base URL (None: the venue's production host).
        journal: a :class:`~tapeflow.journal.Journal`, a folder for one, or None (no journal).
        settings: session-loop settings.
    """

    default_ping_interval_s: float | None = None

    def __init__(self, symbols: Sequence[str], *, venue: str, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None) -> None:
        self.symbols = list(symbols)
        self.venue = venue
        self.endpoint = endpoint
        self.rest_endpoint = rest_endpoint
        self.journal = journal if isinstance(journal, Journal) or journal is None else Journal(journal)
        self._owns_journal = self.journal is not None and self.journal is not journal
        self.settings = settings or ConnectorSettings()
        s = self.settings
        self.backoff = Backoff(s.backoff_initial_s, s.backoff_max_s, factor=s.backoff_factor,
                               jitter=s.backoff_jitter, seed=s.seed)
        self.limiter = TokenBucket(s.snapshot_rate_per_s, s.snapshot_burst)
        self.log = StatusLog(venue)
        self.sync = SyncTracker(self.log, self.symbols)
        self.decoder: FrameDecoder = self.make_decoder()
        self.connects = 0
        self.frames_received = 0
        self.delays_s: list[float] = []
        # frames read and not yet batched (the reader appends, the batcher takes them all at once:
        # an asyncio.Queue costs a put and a get per frame)
        self._pending: list[RawFrame | SessionEnd] = []
        self._arrived = asyncio.Event()  # _pending went from empty to not empty
        self._room = asyncio.Event()  # the batcher took frames: a reader held at max_queued_frames goes on
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: set[str] = set()
        self._arriving: dict[int, str] = {}
        self._closing = False
        self._closed = asyncio.Event()
        self._maybe_bad: list[tuple[int, int, set[str]]] = []
        self._healed: list[tuple[int, int, set[str]]] = []  # rows of a frame that synced books
        self._gap_rows: list[tuple[int, int, str]] = []
        self._frame_rows = (0, 0)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._last_frame_s = 0.0  # monotonic time of the last frame read (the stale watchdog's clock)
        self._day_ns = -1  # start of the UTC day of the last frame decoded
        self._awake_ns = -1  # the awake ticker's last stamp (tapeflow.live.intake)
        self._awake_due = False  # a stamp with no frame pending: the batcher hands on an empty batch
        self._reading_paused = False  # the reader waits for room: the socket is not being read

    # -- hooks for venue clients ------------------------------------------------------------

    def ws_url(self) -> str:
        """The websocket URL to connect to."""
        raise NotImplementedError

    def subscribe_messages(self) -> list[str]:
        """Messages sent right after connecting (subscriptions)."""
        return []

    def make_decoder(self) -> FrameDecoder:
        """The venue's batch decoder, fed one frame at a time (kept across reconnects)."""
        raise NotImplementedError

    def ping_message(self) -> str | None:
        """A venue-level ping to send every ``ping_interval_s`` (None: the venue needs none)."""
        return None

    async def on_open(self) -> None:
        """Called once subscribed, before the first frame is read."""

    # after_frame(frame) and on_new_day(day), the decode hooks, come with DecodeHandoff

    # -- public API ---------------------------------------------------------------------------

    async def batches(self) -> AsyncIterator[LiveBatch]:
        """Connect, subscribe and yield micro-batches until :meth:`close` (reconnecting as needed).

        Every frame is in the journal before its batch is decoded. The last batch after
        :meth:`close` carries the rows the decoder still held and a ``disconnected`` row.
        """
        s = self.settings
        # no total timeout on the session: it would also bound each websocket's life; REST requests
        # carry their own (_fetch), the handshake is bounded in _session
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=s.open_timeout_s, sock_read=s.open_timeout_s))
        try:
            while not self._closing and (s.max_connects is None or self.connects < s.max_connects):
                self.connects += 1
                got_frames = self.frames_received
                async for batch in self._session():
                    yield batch
                if self._closing or (s.max_connects is not None and self.connects >= s.max_connects):
                    break
                if self.frames_received > got_frames:
                    self.backoff.reset()  # the connection worked: a fresh failure starts small again
                delay = self.backoff.next()
                self.delays_s.append(delay)
                with contextlib.suppress(TimeoutError):  # close() cuts the wait short
                    await asyncio.wait_for(self._closed.wait(), delay)
            self.decoder_finish()
            self.sync.lost(DISCONNECTED, "closed by the consumer" if self._closing else
                           f"gave up after {self.connects} connection attempts")
            yield self._batch([], [])
        finally:
            if any(st != DISCONNECTED for st in self.sync.state.values()):
                self.sync.lost(DISCONNECTED, "stopped by the consumer")  # aclose()d mid-stream
            if self._owns_journal and self.journal is not None:
                self.journal.close()
            for t in list(self._tasks):
                t.cancel()
            await self._http.close()

    def close(self) -> None:
        """Stop: the session ends and :meth:`batches` returns after its last batch."""
        self._closing = True
        self._closed.set()
        self._put(SessionEnd(DISCONNECTED, "closed by the consumer"))

    def decoder_finish(self) -> None:
        """End of the stream: diffs still waiting for a snapshot are written (unsynced)."""
        finish = getattr(self.decoder, "finish", None)
        if finish is not None:
            finish()

    def request_rest(self, key: str, url: str, *, prefix: bytes = b"") -> bool:
        """Fetch ``url`` in the background, rate limited; the body arrives as a ``rest`` frame.

        At most one request per ``key`` is in flight (returns False when one is). A 429/418 holds
        every request for its ``Retry-After`` and tries again; other failures retry with backoff.
        ``prefix`` is spliced after the body's opening ``{`` (e.g. ``b'"symbol":"BTCUSDT",'``).
        ``key`` also names the instrument of the ``degraded`` STATUS rows a failure writes.
        """
        if key in self._inflight or self._closing:
            return False
        self._inflight.add(key)
        task = asyncio.get_running_loop().create_task(self._fetch(key, url, prefix))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def flag_gap(self, symbol: str) -> None:
        """From :meth:`after_frame`: the frame just decoded broke ``symbol``'s book, though its decoder
        could not tell (e.g. Bybit v2 ids); its first row of ``symbol`` gets ``F_GAP`` live."""
        start, end = self._frame_rows
        self._gap_rows.append((start, end, symbol))

    def rest_inflight(self, key: str) -> bool:
        """Whether a request under ``key`` is still in flight (sent, or answered but not yet decoded)."""
        return key in self._inflight

    @property
    def rest_requests_in_flight(self) -> int:
        """REST requests sent and not yet decoded."""
        return len(self._inflight)

    async def send(self, message: str) -> None:
        """Send a message on the open websocket (e.g. a resubscription); dropped when closed."""
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(*_SEND_ERRORS):
                await self._ws.send_str(message)

    # -- the loop ----------------------------------------------------------------------------

    async def _session(self) -> AsyncIterator[LiveBatch]:
        url = self.ws_url()
        s = self.settings
        assert self._http is not None
        try:
            async with asyncio.timeout(s.open_timeout_s):
                # decode_text=False: frames stay bytes (the journal and the decoders take bytes; no
                # UTF-8 decode and re-encode per frame); aiohttp parses frames in compiled code
                ws = await self._http.ws_connect(
                    url, heartbeat=s.ws_ping_interval_s, max_msg_size=0, decode_text=False,
                    compress=15 if s.ws_compression else 0,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=s.open_timeout_s))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.sync.lost(DISCONNECTED, f"connecting to {url} failed: {type(exc).__name__}: {exc}")
            yield self._batch([], [])
            return
        self._ws = ws
        reader = asyncio.get_running_loop().create_task(self._reader(ws))
        pinger = asyncio.get_running_loop().create_task(self._pinger(ws))
        awake = (asyncio.get_running_loop().create_task(self._awake_ticker(s.awake_interval_s))
                 if s.awake_interval_s else None)
        try:
            for msg in self.subscribe_messages():
                await ws.send_str(msg)
            self.sync.connected(f"connected to {url}")
            await self.on_open()
            while True:
                frames, end = await self._take()
                if frames:
                    yield self._process(frames)
                elif end is None:  # only an awake stamp: the connection was read and was quiet
                    yield self._batch([], [])
                if end is not None:
                    if not self._closing:  # closing writes its own row once the loop ends
                        self.sync.lost(end.state, end.detail)
                        yield self._batch([], [])
                    return
        finally:
            self._ws = None
            reader.cancel()
            pinger.cancel()
            if awake is not None:
                awake.cancel()
            await ws.close()
            # frames read after the end go into the next session's first batch (they were received);
            # a second end (the watchdog's and the reader's at once) would end that session at once
            self._pending = [f for f in self._pending if type(f) is not SessionEnd]

    async def _pinger(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        message = self.ping_message()
        period = self.settings.ping_interval_s or self.default_ping_interval_s
        if message is None or not period:
            return
        with contextlib.suppress(*_SEND_ERRORS):
            while not ws.closed:
                await asyncio.sleep(period)
                await ws.send_str(message)

    async def _fetch(self, key: str, url: str, prefix: bytes) -> None:
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=self.settings.rest_timeout_s)
        retry = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s, seed=self.settings.seed)
        try:
            while not self._closing:
                await self.limiter.acquire()
                try:
                    async with self._http.get(url, timeout=timeout) as resp:
                        body = await resp.read()
                        status, headers = resp.status, dict(resp.headers)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.log.add(key, "degraded", detail=f"GET {url} failed: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(retry.next())
                    continue
                if status in (418, 429):
                    wait_s = retry_after_s(headers, retry.next())
                    self.limiter.hold(wait_s)
                    self.log.add(key, "degraded", detail=f"GET {url} answered {status}: holding REST for "
                                                       f"{wait_s:g} s")
                    continue
                data = body.strip()
                if prefix and data.startswith(b"{") and status == 200:
                    data = b"{" + prefix + data[1:]
                # Error bodies are frames too: the decoder turns them into venue_error dead letters.
                frame = RawFrame(self.venue, time.time_ns(), data, REST)
                # Still in flight until decoded: a request made before then would be a duplicate.
                self._arriving[id(frame)] = key
                self._put(frame)
                return
        except BaseException:
            self._inflight.discard(key)
            raise
        self._inflight.discard(key)

    def _process(self, frames: list[RawFrame]) -> LiveBatch:
        # The journal first: what was received is kept even if decoding a frame goes wrong.
        if self.journal is not None:
            locations = self.journal.append(frames)
        else:
            start = getattr(self, "_live_lines", 0)
            locations = [f"live:{start + i + 1}" for i in range(len(frames))]
            self._live_lines = start + len(frames)
        self.decode_batch(frames, locations)
        return self._batch(frames, locations)

    def _batch(self, frames: list[RawFrame], locations: list[str]) -> LiveBatch:
        records: dict[str, pa.Table] = {}
        if self.decoder.rows:
            chunk = self.decoder.flush(0, self.venue)
            records = {k: t for k, t in chunk.tables.items() if t.num_rows}
        if (self._maybe_bad or self._gap_rows or self._healed) and "book_delta" in records:
            records["book_delta"] = flag_rows(records["book_delta"], self._maybe_bad, self._gap_rows,
                                              self._healed)
        self._maybe_bad = []
        self._healed = []
        self._gap_rows = []
        return LiveBatch(frames=frames, records=records, status=self.log.drain(), locations=locations,
                         awake_ns=self._batch_awake_ns)
