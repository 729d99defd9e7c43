"""Bybit captures and history files -> ``book_delta``, ``trade`` (+ ``rejected``).

Inputs: v5 orderbook history files (``*.data.zip``: JSON lines, no capture time, so
``ts_recv_ns`` is Bybit's ``ts`` and ``ts_event_ns`` its matching-engine ``cts``), and websocket
captures (cryptofeed or ``<recv_ns> <json>``) of v5 or legacy v2 topics.

Book sync: a v5 snapshot resets the symbol's book; each delta must carry ``u`` = previous
``u`` + 1, otherwise its first row gets ``F_GAP`` and the symbol waits for the next snapshot.
Legacy v2 books have no contiguous id: the decoder keeps each symbol's level ids instead and
counts deltas that delete or update an id it does not hold, or insert one it already holds
(``legacy_checked`` / ``legacy_ok``); ``sequence`` is v2's ``cross_seq``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import BadInput
from tapeflow.schemas.records import ASK, BID, F_GAP
from tapeflow.venues.bybit import messages as wire
from tapeflow.venues.decoder import CHUNK_ROWS, VenueDecoder, merged_captures
from tapeflow.venues.fields import decimal, field, integer, levels, obj
from tapeflow.venues.l2sync import L2Message, L2Snapshot, add_message, add_snapshot
from tapeflow.wire.capture import RECV, CaptureLine, Decoded
from tapeflow.wire.numbers import ms_to_ns, nanos
from tapeflow.wire.rejects import Reason


class BybitDecoder(VenueDecoder):
    """One decode pass over Bybit inputs; ``stats`` counts the v5 ``u`` chain.

    Attributes:
        legacy_checked, legacy_ok: v2 deltas seen after a snapshot, and those whose ids were
            consistent with the book (see the module docstring).
        legacy_failures: a description of each inconsistent v2 delta.
    """

    venue = wire.VENUE
    every_frame_accounted = True

    def __init__(self, *, symbols: Collection[str] | None = None, chunk_rows: int = CHUNK_ROWS) -> None:
        super().__init__(symbols=symbols, chunk_rows=chunk_rows)
        self._last_u: dict[str, int | None] = {}
        self._carry_gap: dict[str, int] = {}
        self._ids: dict[str, dict[str, tuple[int, int]]] = {}
        self.legacy_checked = 0
        self.legacy_ok = 0
        self.legacy_failures: list[str] = []
        self._v2_anchored: set[str] = set()
        self.snapshots_of: dict[str, int] = {}  # book snapshots decoded per symbol

    def anchored(self, symbol: str) -> bool:
        """Whether ``symbol``'s book follows on from a snapshot with nothing inconsistent since.

        v5: the ``u`` chain is unbroken; v2: no delta touched an id the book did not hold. The live
        client (:mod:`tapeflow.venues.bybit.client`) resubscribes for a fresh snapshot when not.
        """
        return self._last_u.get(symbol) is not None or symbol in self._v2_anchored

    def last_update_id(self, symbol: str) -> int | None:
        """The v5 ``u`` the book of ``symbol`` is at (None when not anchored or v2)."""
        return self._last_u.get(symbol)

    def lines(self, paths: list[Path]) -> Iterator[tuple[int, CaptureLine]]:
        zips = [p for p in paths if zipfile.is_zipfile(p)]
        for p in zips:
            yield from ((-1, line) for line in _history_lines(p))
        captures = [p for p in paths if p not in zips]
        if captures:
            yield from merged_captures(captures, self.rejects)

    def message(self, msg: Any, line: CaptureLine) -> None:
        msg = obj(msg, "the frame")
        topic = msg.get("topic")
        if not isinstance(topic, str):
            if "success" in msg or msg.get("op") in ("pong", "ping", "subscribe"):
                if msg.get("success") is False:
                    raise BadInput(Reason.VENUE_ERROR, f"request refused: {msg.get('ret_msg')!r}")
                self.quiet("control")  # subscription answer or heartbeat: no market data
                return
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"object with keys {sorted(msg)[:8]}")
        channel, _, rest = topic.partition(".")
        symbol = rest.rpartition(".")[2]
        if channel == wire.V5_BOOK:
            self._v5_book(msg, symbol, line)
        elif channel == wire.V5_TRADE:
            self._trades(field(msg, "data"), symbol, line, v5=True)
        elif channel in wire.V2_BOOK:
            self._v2_book(msg, symbol, line)
        elif channel == wire.V2_TRADE:
            self._trades(field(msg, "data"), symbol, line, v5=False)
        elif channel in wire.UNSUPPORTED:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"topic {topic!r} is not decoded")
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"topic {topic!r}")

    def _v5_book(self, msg: dict[str, Any], symbol: str, line: CaptureLine) -> None:
        data = field(msg, "data")
        symbol = self.check_symbol(data.get("s", symbol) if isinstance(data, dict) else symbol)
        kind = field(msg, "type")
        u = integer(data, "u")
        bid_px, bid_sz = levels(field(data, "b"), "b")
        ask_px, ask_sz = levels(field(data, "a"), "a")
        sides = [BID] * len(bid_px) + [ASK] * len(ask_px)
        ts_event = ms_to_ns(msg.get("cts", msg.get("ts")), line.recv_ns)
        if kind == "snapshot":
            self.stats.snapshots += 1
            self.snapshots_of[symbol] = self.snapshots_of.get(symbol, 0) + 1
            self._last_u[symbol] = u
            add_snapshot(self.deltas, L2Snapshot(wire.VENUE, symbol, u, ts_event, line.recv_ns, sides,
                                                bid_px + ask_px, bid_sz + ask_sz))
            return
        if kind != "delta":
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"orderbook message type {kind!r}")
        m = L2Message(wire.VENUE, symbol, u, u, None, ts_event, line.recv_ns, sides, bid_px + ask_px,
                      bid_sz + ask_sz, flags=self._carry_gap.pop(symbol, 0))
        last = self._last_u.get(symbol)
        if last is None:
            self.stats.unsynced += 1
        else:
            self.stats.checked += 1
            if u == last + 1:
                self.stats.chained += 1
                self._last_u[symbol] = u
            else:
                m.flags |= F_GAP
                self.stats.gaps.append(f"bybit {symbol}: u={u} after u={last}")
                self._last_u[symbol] = None
        if not m.prices:
            self.quiet("empty delta")  # its u is chained; it changes no level
            if m.flags & F_GAP:
                self._carry_gap[symbol] = F_GAP  # no row to carry the flag: the next one does
        add_message(self.deltas, m)

    def _v2_book(self, msg: dict[str, Any], symbol: str, line: CaptureLine) -> None:
        symbol = self.check_symbol(symbol)
        kind = field(msg, "type")
        data = field(msg, "data")
        seq = integer(msg, "cross_seq") if "cross_seq" in msg else -1
        e6 = msg.get("timestamp_e6")
        ts_event = int(e6) * 1000 if isinstance(e6, (int, str)) and str(e6).isdigit() else line.recv_ns
        if kind == "snapshot":
            book = field(data, "order_book") if isinstance(data, dict) else data
            if not isinstance(book, list):
                raise BadInput(Reason.BAD_SHAPE, f"order_book was {book!r}, not a list of levels")
            rows = [_v2_level(x, f"order_book[{i}]", sized=True) for i, x in enumerate(book)]
            self._ids[symbol] = {r[0]: (r[1], r[2]) for r in rows}
            self._v2_anchored.add(symbol)
            self.stats.snapshots += 1
            self.snapshots_of[symbol] = self.snapshots_of.get(symbol, 0) + 1
            sides, prices, sizes = [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]
            add_snapshot(self.deltas, L2Snapshot(wire.VENUE, symbol, seq, ts_event, line.recv_ns, sides,
                                                prices, sizes))
            return
        if kind != "delta":
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"orderBookL2 message type {kind!r}")
        if not isinstance(data, dict):
            raise BadInput(Reason.BAD_SHAPE, f"delta data was {data!r}, not an object")
        parsed = {k: [_v2_level(x, f"{k}[{i}]", sized=k != "delete") for i, x in enumerate(data.get(k) or [])]
                  for k in ("delete", "update", "insert")}
        ids = self._ids.get(symbol)
        bad = []
        sides, prices, sizes = [], [], []
        for k, rows in parsed.items():
            for level_id, side, price, size in rows:
                if ids is not None:
                    held = level_id in ids
                    if held != (k != "insert"):
                        bad.append(f"{k} of id {level_id} {'held' if held else 'not held'}")
                    if k == "delete":
                        ids.pop(level_id, None)
                    else:
                        ids[level_id] = (side, price)
                sides.append(side)
                prices.append(price)
                sizes.append(0 if k == "delete" else size)
        if ids is not None:
            self.legacy_checked += 1
            if bad:
                self.legacy_failures.append(f"bybit {symbol} cross_seq={seq}: {'; '.join(bad[:3])}")
                self._v2_anchored.discard(symbol)
            else:
                self.legacy_ok += 1
        if not prices:
            self.quiet("empty delta")  # v2: a delta that changes no level
        add_message(self.deltas, L2Message(wire.VENUE, symbol, seq, seq, None, ts_event, line.recv_ns,
                                          sides, prices, sizes))

    def _trades(self, data: Any, symbol: str, line: CaptureLine, *, v5: bool) -> None:
        self.frame_symbol = symbol
        data = self.items(data, "trade data")  # Bybit pushes a trade message when there are trades
        keys = ("s", "S", "i", "p", "v", "T") if v5 else ("symbol", "side", "trade_id", "price", "size",
                                                          "trade_time_ms")
        rows = []
        for t in data:
            t = obj(t, "a trade")
            sym = self.check_symbol(field(t, keys[0]) if keys[0] in t else symbol)
            side = wire.SIDES.get(field(t, keys[1]))
            if side is None:
                raise BadInput(Reason.BAD_FIELD, f"taker side was {t.get(keys[1])!r}")
            trade_id = str(field(t, keys[2]))
            rows.append(dict(
                ts_event_ns=ms_to_ns(t.get(keys[5]), line.recv_ns), ts_recv_ns=line.recv_ns, venue=wire.VENUE,
                symbol=sym, sequence=-1, trade_id=trade_id, price_nanos=decimal(t, keys[3], "price"),
                size_nanos=decimal(t, keys[4], "size"), aggressor_side=side, flags=0))
        # trade ids are UUIDs (v2, v5 derivatives) or numbers (v5 spot): a repeat is told, not an order
        symbols = [r["symbol"] for r in rows]
        repeated = self.repeated_trades(symbols, [r["trade_id"] for r in rows])
        # ids tell no order: a trade older than the symbol's newest arrived late
        late = self.late_trades(symbols, [r["ts_event_ns"] for r in rows])
        # all or nothing: one bad trade rejected the frame before any row was written
        for row, again, old in zip(rows, repeated, late, strict=True):
            row["flags"] = again | old
            self.trades.append(**row)


def _v2_level(x: Any, what: str, *, sized: bool) -> tuple[str, int, int, int]:
    side = wire.SIDES.get(field(x, "side"))
    if side is None:
        raise BadInput(Reason.BAD_FIELD, f"{what} side was {x.get('side')!r}")
    size = nanos(field(x, "size"), f"{what} size") if sized else 0
    return str(field(x, "id")), side, nanos(field(x, "price"), f"{what} price"), size


def _history_lines(path: Path) -> Iterator[CaptureLine]:
    # A history file has no capture time: each line's own "ts" stands in for it.
    with zipfile.ZipFile(path) as zf:
        for member in zf.namelist():
            with zf.open(member) as raw:
                for lineno, line in enumerate(io.BufferedReader(raw), 1):
                    body = line.strip()
                    if body:
                        yield CaptureLine(_ts_of(body), RECV, "", body, f"{path.name}/{member}:{lineno}")


def _ts_of(body: bytes) -> int:
    at = body.find(b'"ts":')
    digits = body[at + 5: at + 25].split(b",")[0].split(b"}")[0].strip() if at >= 0 else b""
    return int(digits) * 1_000_000 if digits.isdigit() else -1


def decode(paths: Sequence[Path], *, symbols: Collection[str] | None = None,
           chunk_rows: int = CHUNK_ROWS) -> Iterator[Decoded]:
    """Decode Bybit history zips and websocket captures (v5 or legacy v2 topics).

    Args:
        paths: ``*.data.zip`` history files and/or capture files.
        symbols: keep only these symbols; others become ``unknown_symbol`` rejects.
        chunk_rows: rows per yielded chunk (about).

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade`` and ``rejected`` tables.
    """
    yield from BybitDecoder(symbols=symbols, chunk_rows=chunk_rows).run(paths)
