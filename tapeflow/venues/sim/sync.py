"""Live sync of the ``sim`` feed: the replay server's JSON frames through the ``sim`` file decoder.

The replay server's ``sim`` protocol (:mod:`tapeflow.venues.sim.replay`) sends one JSON frame per
line of a simulator file. :class:`SimSync` turns each data frame back into that CSV line and feeds
the very decoder ``tapeflow ingest --format sim`` uses, one per symbol, so the live records are the
batch records. Around it, what only a live feed needs:

* ``seq`` must go up by one per message of a symbol; a jump is a ``gap`` (the frame's first row gets
  ``F_GAP``, the symbol's book rows ``F_MAYBE_BAD_BOOK`` until a fresh snapshot, and the client
  resubscribes); a ``seq`` at or below the last one (a duplicated or reordered frame) is a
  ``stale_sequence`` dead letter and is not applied (applying an add twice would corrupt an L3 book);
* a snapshot (``R`` then ``S`` frames, sent on every subscription) re-anchors the book; it ends with
  the symbol's next non-``S`` frame, and its rows stay in the buffer until then, because its last row
  gets ``F_LAST`` only once it is known to be the last;
* ``ts_recv`` is the simulator's capture time by default (``clock="feed"``), so a replay at any speed
  gives the rows of the simulator files; ``clock="local"`` stamps our own receive time instead.

The same class decodes a sim journal (``<recv_ns> <json>`` lines) in batch through
:func:`decode_journal`, so "live = batch of its journal" can be checked.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pyarrow as pa

from tapeflow.errors import ConfigError
from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.schemas.records import F_GAP, F_MAYBE_BAD_BOOK
from tapeflow.venues.decoder import CHUNK_ROWS, Progress
from tapeflow.venues.livesync import GAP, SYNCED, SyncEvent, SyncStats
from tapeflow.venues.sim.parse import VENUE, _State
from tapeflow.wire.capture import CaptureLine, Decoded, read_capture
from tapeflow.wire.rejects import Rejects

CLOCKS = ("feed", "local")
_FIELDS = ("symbol", "ts_event", "ts_recv", "seq", "type", "order_id", "side", "price", "size")


class _Symbol:
    """One symbol's decoder state and sync position."""

    def __init__(self, symbol: str) -> None:
        self.state = _State(Path("live"), symbol)
        self.last_seq: int | None = None
        self.synced = False
        self.broken = False


class SimSync:
    """The ``sim`` feed's live sync (the :class:`~tapeflow.venues.livesync.LiveSync` protocol).

    Args:
        clock: ``feed`` (the frame's own ``ts_recv``) or ``local`` (the time we received it).

    Raises:
        ConfigError: an unknown clock.
    """

    venue = VENUE

    def __init__(self, clock: str = "feed") -> None:
        if clock not in CLOCKS:
            raise ConfigError(f"sim clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        self.clock = clock
        self.stats = SyncStats()
        self.symbols: dict[str, _Symbol] = {}
        self.rejects = Rejects(VENUE)  # frames that name no symbol (bad JSON, venue errors)

    @property
    def rows(self) -> int:
        """Rows ready to take (a symbol in the middle of a snapshot holds its rows back)."""
        return len(self.rejects) + sum(len(s.state.events) + len(s.state.trades) + len(s.state.rejects)
                                       for s in self.symbols.values() if not s.state.in_snapshot)

    def broken(self) -> set[str]:
        """Symbols waiting for a fresh snapshot."""
        return {name for name, s in self.symbols.items() if s.broken}

    def feed(self, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        """Decode one frame; returns the sync changes it caused."""
        try:
            msg = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            self.rejects.add("bad_json", f"{exc}", location, data, ts_recv_ns=ts_recv_ns)
            return []
        if not isinstance(msg, dict):
            self.rejects.add("bad_json", f"expected an object, got {type(msg).__name__}", location, data,
                             ts_recv_ns=ts_recv_ns)
            return []
        if "event" in msg:
            if msg["event"] == "error":
                self.rejects.add("venue_error", str(msg.get("message", ""))[:200], location, data,
                                 ts_recv_ns=ts_recv_ns)
            return []  # subscribed / unsubscribed / pong acknowledge our own messages
        missing = [f for f in _FIELDS if f not in msg]
        if missing or not isinstance(msg["symbol"], str) or not isinstance(msg["seq"], int):
            why = f"missing {missing}" if missing else f"symbol {msg['symbol']!r}, seq {msg['seq']!r}"
            self.rejects.add("missing_field", why, location, data, ts_recv_ns=ts_recv_ns)
            return []
        sym = self.symbols.get(msg["symbol"])
        if sym is None:
            sym = self.symbols[msg["symbol"]] = _Symbol(msg["symbol"])
        return self._line(sym, msg, ts_recv_ns, data, location)

    def _line(self, sym: _Symbol, msg: dict, ts_recv_ns: int, data: bytes, location: str) -> list[SyncEvent]:
        kind, seq, state = msg["type"], msg["seq"], sym.state
        recv = msg["ts_recv"] if self.clock == "feed" else ts_recv_ns
        line = ",".join(str(v) for v in (msg["ts_event"], recv, seq, kind, msg["order_id"], msg["side"],
                                         msg["price"], msg["size"]))
        path, _, lineno = location.rpartition(":")
        state.path = Path(path or location)
        events: list[SyncEvent] = []
        gap = False
        if kind not in ("R", "S") and sym.last_seq is not None:
            if seq <= sym.last_seq:
                state._reject("stale_sequence", f"seq {seq} after {sym.last_seq}: a duplicated or reordered "
                              "frame, not applied", location, data, recv, msg["ts_event"])
                return []
            if sym.synced and not sym.broken and seq != sym.last_seq + 1:
                gap = True
                sym.broken = True
                why = f"{sym.state.symbol} seq {seq} after {sym.last_seq}: {seq - sym.last_seq - 1} missing"
                self.stats.breaks.append(f"{sym.state.symbol}: {why}")
                events.append(SyncEvent(sym.state.symbol, GAP, seq, why))
        if kind not in ("R", "S") and sym.synced and not sym.broken and not gap:
            self.stats.links += 1
            self.stats.links_ok += 1
        was_snapshot = state.in_snapshot
        before = len(state.events)
        state.line(line.encode(), int(lineno) if lineno.isdigit() else 0)
        if gap and len(state.events) > before:
            state.events.mark(before, "flags", F_GAP)
        if sym.broken:
            for i in range(before, len(state.events)):
                state.events.mark(i, "flags", F_MAYBE_BAD_BOOK)
        if was_snapshot and kind != "S":
            # the snapshot ended with this frame: its last row has F_LAST now, the book is anchored
            self.stats.snapshots += 1
            if sym.broken:
                self.stats.resyncs += 1
            sym.synced, sym.broken = True, False
            events.append(SyncEvent(sym.state.symbol, SYNCED, seq, f"snapshot at seq {seq}"))
        sym.last_seq = seq
        return events

    def take(self) -> dict[str, pa.Table]:
        """The records decoded since the last call, per record name (non-empty tables only)."""
        parts: dict[str, list[pa.Table]] = {}
        for sym in self.symbols.values():
            if sym.state.in_snapshot:
                continue
            for name, table in sym.state.flush(0).tables.items():
                if table.num_rows:
                    parts.setdefault(name, []).append(table)
        if len(self.rejects):
            parts.setdefault("rejected", []).append(self.rejects.table())
            self.rejects = Rejects(VENUE)
        return {name: concat(ALL_RECORDS[name], tables) for name, tables in parts.items()}

    def finish(self) -> None:
        """End of stream: a snapshot still open ends here (its last row gets ``F_LAST``)."""
        for sym in self.symbols.values():
            sym.state.end_snapshot()


class JournalDecoder:
    """:class:`SimSync` as the frame decoder a live connector feeds (a ``FrameDecoder``)."""

    venue = VENUE

    def __init__(self, clock: str = "feed") -> None:
        self.sync = SimSync(clock)

    @property
    def rows(self) -> int:
        return self.sync.rows

    def feed(self, line: CaptureLine) -> None:
        self.sync.feed(line.recv_ns, line.payload, line.location)

    def feed_many(self, lines: Sequence[CaptureLine]) -> None:
        for line in lines:
            self.feed(line)

    def flush(self, bytes_read: int, source: str) -> Decoded:
        return Decoded(self.sync.take(), bytes_read, source)


def decode_journal(paths: Sequence[Path | str], *, clock: str = "feed") -> Iterator[Decoded]:
    """Decode sim journal files (``<recv_ns> <json>`` lines the live client wrote) in batch.

    Args:
        paths: journal files of one stream, in order.
        clock: as :class:`SimSync`.
    """
    decoder = JournalDecoder(clock)
    paths = [Path(p) for p in paths]
    progress = Progress(paths)
    for index, path in enumerate(paths):
        reader_rejects = Rejects(VENUE)  # the reader's, apart from the sync's own buffer
        for line in read_capture(path, reader_rejects):
            progress.advance(index, len(line.payload) + 1)
            decoder.feed(line)
            if decoder.rows >= CHUNK_ROWS:
                yield decoder.flush(progress.take(), str(path))
        if len(reader_rejects):
            yield Decoded({"rejected": reader_rejects.table()}, 0, str(path))
    decoder.sync.finish()
    yield Decoded(decoder.sync.take(), progress.rest(), "end")


__all__ = ["CLOCKS", "JournalDecoder", "SimSync", "decode_journal"]
