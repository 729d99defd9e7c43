"""The one decoder base of the JSON venues: the frame loop, its dead letters, buffers, chunks and sync.

A venue decoder subclasses :class:`VenueDecoder` and writes :meth:`VenueDecoder.message` (or
:meth:`VenueDecoder.frame` for frames that are not one JSON message): parse with
:func:`~tapeflow.venues.fields.load_json`, read fields with the helpers of
:mod:`tapeflow.venues.fields`, raise :class:`~tapeflow.errors.BadInput` for anything wrong, and
write rows to ``deltas`` / ``trades`` / ``quotes`` a message (or a block) at a time. The loop
turns every ``BadInput`` into one ``rejected`` row, so a bad frame never stops a decode and the
same damage gets the same reason on every venue.

Batch (``run``: files merged by capture time, chunks of about ``chunk_rows`` rows) and live
(``feed`` / ``feed_many`` then ``flush`` per micro-batch, :mod:`tapeflow.live`) go through the same
:meth:`VenueDecoder.feed_frame`, so a live day equals the batch decode of its journal.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import BadInput
from tapeflow.schemas.records import BOOK_DELTA, F_GAP, QUOTE, TRADE
from tapeflow.venues.columns import Columns
from tapeflow.venues.fields import array, load_json
from tapeflow.venues.l2sync import WAIT_SNAPSHOT, ChainStats, L2Message, SeqChain
from tapeflow.wire.capture import HTTP, RECV, CaptureLine, Decoded, read_capture
from tapeflow.wire.rejects import Reason, Rejects

CHUNK_ROWS = 100_000
_CHECK_EVERY = 1024  # frames between two looks at the chunk size
RECENT_TRADE_IDS = 1 << 16  # trade ids remembered per instrument to tell a doubled frame


class VenueDecoder:
    """Frames in arrival order in, chunks of ``book_delta`` / ``trade`` / ``quote`` / ``rejected`` out.

    Args:
        symbols: keep only these symbols (any case); others become ``unknown_symbol`` rejects
            (venues that call :meth:`check_symbol`).
        chunk_rows: :meth:`run` yields a chunk once about this many rows are buffered.

    Attributes:
        venue: the venue code of rejects (a class attribute of each venue).
        stats: the depth chains' counts (venues syncing through :class:`SeqChain`).
        unsynced: instruments whose book broke and waits for its next snapshot.
        gap_pending: instruments whose next book row carries ``F_GAP``.
        frame_symbol: the instrument of the frame being decoded, named in its reject.
        quiet_frames: frames that made no row by design, by kind (:meth:`quiet`).
        buffered_frames: depth diffs held for their book's snapshot, rows written later
            (:meth:`apply_diff`).
    """

    venue = ""
    # True where every frame that makes no row by design calls :meth:`quiet`: a frame that then
    # leaves no row and no dead letter becomes an ``empty_message`` one (never a silent drop)
    every_frame_accounted = False

    def __init__(self, *, symbols: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        self.symbols = None if symbols is None else {s.upper() for s in symbols}
        self.chunk_rows = chunk_rows
        self.stats = ChainStats()
        self.chains: dict[tuple[str, str], SeqChain] = {}
        self.deltas = Columns(BOOK_DELTA)
        self.trades = Columns(TRADE)
        self.quotes = Columns(QUOTE)
        self.rejects = Rejects(self.venue)
        self.unsynced: set[str] = set()
        self.gap_pending: set[str] = set()
        self.frame_symbol = ""
        self.frames = 0
        self._trade_ids: dict[str, dict[str, None]] = {}  # instrument -> recent trade ids, oldest first
        self._newest_trade_ns: dict[str, int] = {}  # instrument -> newest trade time decoded
        self.quiet_frames: Counter[str] = Counter()  # frames that make no row by design, by kind
        self.buffered_frames = 0  # depth diffs held for their book's snapshot: their rows come later
        self._quiet = False

    # -- what a venue writes ---------------------------------------------------------------

    def message(self, msg: Any, line: CaptureLine) -> None:
        """Decode one parsed websocket message (raise ``BadInput`` for anything wrong)."""
        raise NotImplementedError

    def frame(self, index: int, line: CaptureLine) -> None:
        """Decode one captured line of file ``paths[index]``: by default a received frame is one
        JSON message; REST bodies go to :meth:`http`, sent and connection lines are ignored."""
        if line.kind == RECV:
            self.message(load_json(line.payload), line)
        elif line.kind == HTTP:
            self.http(line)
        else:
            self.quiet(line.kind)  # our own requests, connection marks: the capture's framing

    def http(self, line: CaptureLine) -> None:
        """A captured REST response (venues that sync books from REST snapshots read it)."""
        raise BadInput(Reason.UNKNOWN_MESSAGE, f"REST response of {line.url} is not decoded for {self.venue}")

    def quiet(self, kind: str) -> None:
        """The frame makes no row by design: the connection's framing (a subscription answer, a
        pong, a heartbeat) or a book message that changes nothing (a heartbeat update that only
        repeats its sequence). Counted in ``quiet_frames`` by ``kind``."""
        self.quiet_frames[kind] += 1
        self._quiet = True

    def apply_diff(self, m: L2Message) -> None:
        """One depth diff through its instrument's chain (:class:`SeqChain`), its frame accounted for.

        A diff of no level writes no row (its ids still link): a quiet frame (``empty diff``). A
        diff the chain buffers, its book waiting for a snapshot, writes its rows when the snapshot
        comes (or at the end of input), not now: counted in ``buffered_frames``, never an
        ``empty_message``.
        """
        chain = self.chain(m.venue, m.symbol)
        waiting = chain.state == WAIT_SNAPSHOT
        chain.update(m, self.deltas)
        if not m.prices:
            self.quiet("empty diff")
        elif waiting:
            self.buffered_frames += 1
            self._quiet = True

    def on_reject(self) -> None:
        """Called after a frame was rejected (``frame_symbol`` still names its instrument): a
        venue whose book the frame belonged to marks it broken."""

    def start(self, paths: list[Path]) -> None:
        """Called once before the first frame of :meth:`run` (e.g. to sniff each file's market)."""

    # -- the frame loop --------------------------------------------------------------------

    def feed_frame(self, index: int, line: CaptureLine) -> None:
        """Decode one frame of file ``paths[index]``; bad input becomes a ``rejected`` row."""
        self.frames += 1
        self.frame_symbol = ""
        self._quiet = False
        rows = self.rows if self.every_frame_accounted else 0
        try:
            self.frame(index, line)
        except BadInput as bad:
            self.reject(bad, line)
        except (TypeError, AttributeError, KeyError, IndexError, ValueError, RecursionError) as exc:
            # A shape no check anticipated (a number where an object belongs...): still a dead
            # letter, never a crash of the whole decode.
            self.reject(BadInput(Reason.BAD_SHAPE, f"{type(exc).__name__}: {exc}"), line)
        else:
            if self.every_frame_accounted and not self._quiet and self.rows == rows:
                # every input unit ends as rows, a dead letter or ignored by rule: a frame the
                # venue read without complaint and made nothing of is not dropped unseen
                self.reject(BadInput(Reason.EMPTY_MESSAGE, "the frame made no row and is no control frame"),
                            line)

    def reject(self, bad: BadInput, line: CaptureLine) -> None:
        """Write the dead letter of ``line`` and tell the venue (:meth:`on_reject`)."""
        self.rejects.add(bad.reason, bad.detail, line.location, line.payload, ts_recv_ns=line.recv_ns,
                         symbol=self.frame_symbol)
        self.on_reject()

    def feed(self, line: CaptureLine) -> None:
        """One received frame (the live connectors' entry point: ``FrameDecoder.feed``)."""
        self.feed_frame(0, line)

    def feed_many(self, lines: Sequence[CaptureLine]) -> None:
        """A micro-batch of received frames, in order (venues with a block path override it)."""
        for line in lines:
            self.feed_frame(0, line)

    def run(self, paths: Sequence[Path]) -> Iterator[Decoded]:
        """Decode ``paths`` merged by capture time, yielding chunks of about ``chunk_rows`` rows.

        A chunk's ``bytes_read`` is its share of the files' size on disk, so the chunks of a
        decode add up to the size of its inputs.
        """
        paths = [Path(p) for p in paths]
        self.start(paths)
        progress = Progress(paths)
        for index, line in self.lines(paths):
            progress.advance(index, len(line.payload) + 1)
            self.feed_frame(index, line)
            if self.frames % _CHECK_EVERY == 0 and self.rows >= self.chunk_rows:
                yield self.chunk(progress.take(), line.location)
        self.finish()
        yield self.chunk(progress.rest(), "end")

    def lines(self, paths: list[Path]) -> Iterator[tuple[int, CaptureLine]]:
        """The frames to decode as ``(file index, line)``: the capture files merged by capture time."""
        return merged_captures(paths, self.rejects)

    def finish(self) -> None:
        """End of input: write the diffs that still wait for a snapshot (they stay unsynced)."""
        for chain in self.chains.values():
            chain.flush(self.deltas)

    @property
    def rows(self) -> int:
        """Rows buffered since the last chunk."""
        return len(self.deltas) + len(self.trades) + len(self.quotes) + len(self.rejects)

    def flush(self, bytes_read: int, source: str) -> Decoded:
        """The rows decoded so far as one chunk (live micro-batches; diffs waiting for a snapshot stay)."""
        return self.chunk(bytes_read, source)

    def chunk(self, bytes_read: int, source: str) -> Decoded:
        """Hand over the buffered rows (empty tables left out); the buffers start again."""
        tables = {"book_delta": self.deltas.drain(), "trade": self.trades.drain(),
                  "quote": self.quotes.drain(), "rejected": self.rejects.drain()}
        return Decoded({k: t for k, t in tables.items() if t.num_rows}, bytes_read, source)

    # -- helpers for venues ----------------------------------------------------------------

    def items(self, value: Any, what: str, *, snapshot: bool = False) -> list[Any]:
        """The array of a data message (its trades, its book items), never an empty one.

        Every input unit ends as rows, one dead letter or ignored by rule (docs/reliability.md); a
        data message whose array holds nothing would end nowhere. A venue's snapshot of a table
        that holds nothing yet (``snapshot``: BitMEX's ``partial`` of a quiet symbol) is ignored by
        rule; any other empty array is damage.

        Raises:
            BadInput: ``empty_snapshot`` (ignored by rule) or ``missing_field`` when empty;
                ``missing_field`` / ``bad_shape`` when not an array.
        """
        items = array(value, what)
        if not items:
            if snapshot:
                raise BadInput(Reason.EMPTY_SNAPSHOT, f"{what} is empty: a snapshot of nothing")
            raise BadInput(Reason.MISSING_FIELD, f"{what} is empty: a data message with nothing in it")
        return items

    def repeated_trades(self, symbols: Sequence[str], trade_ids: Sequence[str], *,
                        whole_frame_is_duplicate: bool = True) -> list[int]:
        """Trade ids that are not ordered (UUIDs: BitMEX, Bybit) checked against the ones decoded.

        A frame whose every trade repeats an id already decoded for its instrument (among the last
        ``RECENT_TRADE_IDS``, or earlier in the same frame) is a doubled frame: a ``duplicate``
        dead letter, its copy not stored twice. A repeated trade among new ones is kept and
        flagged ``F_GAP`` (a copy arrived late), as Binance and OKX flag a trade below the newest
        id. Call it last, once nothing else can reject the frame: it records the frame's ids.

        Args:
            symbols, trade_ids: per trade of the frame; an empty id is not checked.
            whole_frame_is_duplicate: False for a venue's replay of past trades (a BitMEX
                ``partial`` on a resubscription repeats trades by design): ids recorded, rows kept.

        Returns:
            Per trade, ``F_GAP`` when its id was decoded before, else 0.

        Raises:
            BadInput: ``duplicate`` when every trade of the frame was decoded before.
        """
        seen = self._trade_ids
        in_frame: set[tuple[str, str]] = set()
        repeated = []
        for sym, tid in zip(symbols, trade_ids, strict=True):
            known = seen.get(sym)
            repeated.append(bool(tid) and ((sym, tid) in in_frame or (known is not None and tid in known)))
            in_frame.add((sym, tid))
        if whole_frame_is_duplicate and repeated and all(repeated):
            raise BadInput(Reason.DUPLICATE, f"{symbols[0]} trades {list(trade_ids)[:3]}: decoded already")
        for sym, tid in zip(symbols, trade_ids, strict=True):
            if tid:
                known = seen.setdefault(sym, {})
                known[tid] = None
                if len(known) > RECENT_TRADE_IDS:
                    del known[next(iter(known))]
        return [F_GAP if r else 0 for r in repeated]

    def late_trades(self, symbols: Sequence[str], times_ns: Sequence[int]) -> list[int]:
        """Trades older than their instrument's newest trade decoded, on venues whose trade ids
        are not ordered (UUIDs: BitMEX, Bybit): the time is the only order they carry.

        Each trade is compared with the newest time decoded before its frame (a frame's own
        trades may come in any order); a later frame's trade that is older arrived late: kept,
        flagged ``F_GAP``, as a trade below the newest id is where ids are ordered. Call it once
        nothing else can reject the frame: it records the frame's times.

        Returns:
            Per trade, ``F_GAP`` when older than its instrument's newest before the frame, else 0.
        """
        newest = self._newest_trade_ns
        before = {sym: newest.get(sym) for sym in set(symbols)}
        flags = []
        for sym, ts in zip(symbols, times_ns, strict=True):
            high = before[sym]
            flags.append(F_GAP if high is not None and ts < high else 0)
            if ts > newest.get(sym, ts - 1):
                newest[sym] = ts
        return flags

    def chain(self, venue: str, symbol: str) -> SeqChain:
        """The depth chain of one instrument (created on first use)."""
        key = (venue, symbol)
        chain = self.chains.get(key)
        if chain is None:
            chain = self.chains[key] = SeqChain(self.stats)
        return chain

    def check_symbol(self, symbol: Any) -> str:
        """``symbol`` when it is a non-empty string inside the filter.

        Raises:
            BadInput: ``missing_field`` or ``unknown_symbol``.
        """
        if not isinstance(symbol, str) or not symbol:
            raise BadInput(Reason.MISSING_FIELD, f"symbol was {symbol!r}")
        if self.symbols is not None and symbol.upper() not in self.symbols:
            raise BadInput(Reason.UNKNOWN_SYMBOL, f"symbol {symbol!r} is not among {sorted(self.symbols)}")
        return symbol

    def lose_sync(self, instrument: str) -> None:
        """``instrument``'s book broke: its next book row carries ``F_GAP`` (once: later failures
        of a book already broken add nothing), and it stays unsynced until :meth:`resync`."""
        if instrument not in self.unsynced:
            self.unsynced.add(instrument)
            self.gap_pending.add(instrument)

    def resync(self, instrument: str) -> None:
        """A snapshot re-anchored ``instrument``'s book."""
        self.unsynced.discard(instrument)
        self.gap_pending.discard(instrument)

    def take_gap(self, instrument: str) -> int:
        """``F_GAP`` when ``instrument``'s next book row must carry it (once), else 0."""
        if instrument in self.gap_pending:
            self.gap_pending.discard(instrument)
            return F_GAP
        return 0


def merged_captures(paths: Sequence[Path], rejects: Rejects) -> Iterator[tuple[int, CaptureLine]]:
    """Frames of several capture files merged by capture time: ``(file index, line)``.

    A websocket capture and the REST capture taken beside it interleave as they were received;
    each file keeps its own order, and ties go to the earlier path.
    """
    streams = [((i, line) for line in read_capture(Path(p), rejects)) for i, p in enumerate(paths)]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda item: item[1].recv_ns)


class Progress:
    """Bytes of the input files consumed, as their share of the files' size on disk.

    A gzip file's frames add up to more than its size; each file's count stops at its size and
    the rest is reported at the end, so a decode's chunks add up to the size of its inputs.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self.sizes = [p.stat().st_size for p in paths]
        self.seen = [0] * len(paths)
        self.reported = 0

    def advance(self, index: int, nbytes: int) -> None:
        """``nbytes`` of file ``index`` were consumed (an index outside the files is ignored)."""
        if 0 <= index < len(self.seen):
            self.seen[index] = min(self.seen[index] + nbytes, self.sizes[index])

    def take(self) -> int:
        """Bytes consumed since the previous call."""
        step = sum(self.seen) - self.reported
        self.reported += step
        return step

    def rest(self) -> int:
        """Every byte not yet reported (end of input)."""
        step = sum(self.sizes) - self.reported
        self.reported += step
        return step
