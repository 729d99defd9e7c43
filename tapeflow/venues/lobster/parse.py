"""LOBSTER message and orderbook files -> ``order_event``, ``trade``, ``book_snapshot``, ``rejected``.

Mapping of message types (one venue event per message row, so the last row of each carries
``F_LAST``; ``sequence`` is the 0-based message row, the link to orderbook row ``sequence``):

* 1 submission -> ``A``; 2 partial cancel -> ``C`` (size removed); 3 deletion -> ``C`` (the size
  left, which removes the order).
* 4 visible execution -> ``F`` then ``C`` of the same size (the DBN MBO shape: a fill does not
  change the book, the cancel that follows it does), plus a ``trade`` whose aggressor is the side
  opposite to Direction (Direction names the resting order).
* 5 hidden execution -> a ``trade`` only, flagged ``F_HIDDEN``: the visible book does not change.
* 6 cross trade -> a ``trade`` with aggressor N.
* 7 trading halt -> an ``N`` order event, which no book applies. Its ``price_nanos`` is the Price
  column decoded like every other row, so it carries the venue's code x 1e-4 USD: -100_000 halt,
  0 quoting, 100_000 resume (:func:`halt_state` names it); halt and quoting also set
  ``F_MAYBE_BAD_BOOK``, since the book is not in continuous trading then.

Time is seconds after local (America/New_York) midnight of the date in the file name, parsed from
the string exactly to ns and converted to UTC with the zone rules of that wall-clock hour.
LOBSTER has no capture time: ``ts_recv_ns`` equals ``ts_event_ns``. Prices are dollars x 10000
(1e-4 USD = 100_000 nanos); sizes are shares (x 1e9). Orderbook rows become ``book_snapshot`` rows
of the file's level count, empty levels padded with UNDEF_PRICE / 0 like the replay kernels.

Two paths give the same rows and rejects: the block path (the default,
:mod:`tapeflow.venues.lobster.block`: compiled scan, rows built as columns) and the per-line path
(``fast=False``, :class:`_Chunk` below: the reference it is tested against). Both read a refused
line through the per-line rules of :mod:`tapeflow.venues.lobster.lines`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np

from tapeflow.errors import BadInput, FormatError, InputError
from tapeflow.schemas.records import ASK as SIDE_ASK
from tapeflow.schemas.records import BID as SIDE_BID
from tapeflow.schemas.records import (
    BOOK_SNAPSHOT,
    F_HIDDEN,
    F_LAST,
    F_MAYBE_BAD_BOOK,
    L3_ADD,
    L3_CANCEL,
    L3_FILL,
    L3_NONE,
    NO_SIDE,
    ORDER_EVENT,
    SCALE,
    TRADE,
    UNDEF_PRICE,
    UNDEF_TS,
)
from tapeflow.venues.lobster import messages as m
from tapeflow.venues.lobster.block import decode_blocks
from tapeflow.venues.lobster.lines import parse_book, parse_message, unpaired, wall_clock_to_utc
from tapeflow.wire.capture import Decoded
from tapeflow.wire.rejects import Rejects

CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class LobsterFiles:
    """The message and/or orderbook file of one ticker, day, time window and level count."""

    ticker: str
    day: date
    levels: int
    message: Path | None
    orderbook: Path | None

    @property
    def name(self) -> str:
        return f"{self.ticker}_{self.day.isoformat()}_{self.levels}"


def with_orderbooks(paths: Sequence[Path]) -> list[LobsterFiles]:
    """:func:`pair_files` for a book rebuild: a message file named without its orderbook file takes
    the one beside it (same name, ``orderbook`` for ``message``).

    Raises:
        InputError: no orderbook file is there: the L3 book cannot be seeded (orders resting before
            the first message would never leave it and the book would cross).
    """
    out = []
    for pair in pair_files(paths):
        if pair.orderbook is None and pair.message is not None:
            sibling = pair.message.with_name(pair.message.name.replace("_message_", "_orderbook_"))
            if not sibling.is_file():
                raise InputError(f"{pair.message}: a LOBSTER message file without its orderbook file "
                                 f"(looked for {sibling.name} beside it): the L3 book cannot be seeded, "
                                 "orders resting before the first message would never leave it and the "
                                 "book would cross; pass both files")
            pair = replace(pair, orderbook=sibling)
        out.append(pair)
    return out


def pair_files(paths: Sequence[Path]) -> list[LobsterFiles]:
    """Group LOBSTER files into message/orderbook pairs by the name they share.

    Raises:
        FormatError: a file name does not follow the LOBSTER pattern (the date and level count in
            it are needed to decode the rows), or a pair holds two files of one kind.
    """
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for path in map(Path, paths):
        match = m.FILE_NAME.match(path.name)
        if match is None:
            raise FormatError(f"{path} is not named like a LOBSTER file "
                              "(TICKER_DATE_<startms>_<endms>_{message|orderbook}_<LEVELS>.csv)")
        key = match.group("ticker", "date", "start_ms", "end_ms", "levels")
        group = groups.setdefault(key, {})
        if match["kind"] in group:
            first = group[match["kind"]]
            raise FormatError(f"two LOBSTER {match['kind']} files for {key}: {first} and {path}")
        group[match["kind"]] = path
    return [LobsterFiles(ticker=k[0], day=date.fromisoformat(k[1]), levels=int(k[4]),
                        message=g.get("message"), orderbook=g.get("orderbook")) for k, g in groups.items()]


def decode(paths: Sequence[Path], *, fast: bool = True) -> Iterator[Decoded]:
    """Decode LOBSTER message and/or orderbook files, every ``CHUNK_ROWS`` rows a chunk.

    Args:
        paths: the files; a message file and an orderbook file of one name form a pair.
        fast: the block path (compiled scan, rows as columns); False: line by line (the reference).

    Raises:
        FormatError: a file name without the LOBSTER pattern (see :func:`pair_files`).
    """
    for files in pair_files(paths):
        yield from decode_pair(files, fast=fast)


def decode_pair(files: LobsterFiles, *, fast: bool = True) -> Iterator[Decoded]:
    """Decode one message/orderbook pair in lockstep (orderbook row i takes message i's time)."""
    if fast:
        yield from decode_blocks(files, CHUNK_ROWS)
        return
    to_utc = wall_clock_to_utc(files.day)
    message_lines = _lines(files.message)
    book_lines = _lines(files.orderbook)
    out = _Chunk(files)
    bytes_read = 0
    for index, (msg, book) in enumerate(zip_longest(message_lines, book_lines)):
        ts_ns = UNDEF_TS
        if msg is not None:
            bytes_read += len(msg)
            ts_ns = out.message(index, msg, to_utc)
        if book is not None:
            bytes_read += len(book)
            out.orderbook(index, book, ts_ns, has_message=msg is not None)
        if (index + 1) % CHUNK_ROWS == 0:
            yield out.flush(bytes_read)
            bytes_read = 0  # Decoded.bytes_read is the increment since the previous chunk
    yield out.flush(bytes_read)


def halt_state(price_nanos: int) -> str:
    """Name the trading state an ``N`` row of a LOBSTER type-7 message carries (halt, quoting, resume)."""
    return m.HALT_CODES.get(price_nanos // m.PRICE_UNIT_NANOS, f"unknown code {price_nanos}")


def _lines(path: Path | None) -> Iterator[bytes]:
    if path is None:
        return
    with open(path, "rb") as fh:
        yield from fh


def _empty_columns(names: list[str]) -> dict[str, list[Any]]:
    return {n: [] for n in names if n not in ("venue", "symbol")}


class _Chunk:
    """Column lists of one output chunk (the per-line path)."""
    def __init__(self, files: LobsterFiles) -> None:
        self.files = files
        self._reset()

    def _reset(self) -> None:
        self.rejects = Rejects(m.VENUE)
        self.events = _empty_columns(ORDER_EVENT.column_names)
        self.trades = _empty_columns(TRADE.column_names)
        self.snaps = _empty_columns(BOOK_SNAPSHOT.column_names)

    def flush(self, bytes_read: int) -> Decoded:
        constants = {"venue": m.VENUE, "symbol": self.files.ticker}
        tables = {
            ORDER_EVENT.name: ORDER_EVENT.table(self.events, constants=constants),
            TRADE.name: TRADE.table(self.trades, constants=constants),
            BOOK_SNAPSHOT.name: BOOK_SNAPSHOT.table(self.snaps, constants=constants),
            "rejected": self.rejects.table(),
        }
        source = str(self.files.message or self.files.orderbook)
        self._reset()
        return Decoded({k: t for k, t in tables.items() if t.num_rows}, bytes_read=bytes_read, source=source)

    def _reject(self, exc: BadInput, path: Path | None, index: int, raw: bytes,
                ts_ns: int = UNDEF_TS) -> None:
        self.rejects.add(exc.reason, exc.detail, f"{path}:{index + 1}", raw, ts_recv_ns=ts_ns,
                         ts_event_ns=ts_ns, symbol=self.files.ticker)

    def message(self, index: int, raw: bytes, to_utc: Callable[[int], int]) -> int:
        """Decode message row ``index``; return its UTC time (UNDEF_TS when rejected)."""
        try:
            ts_ns, kind, order_id, size, price, direction = parse_message(raw, to_utc)
        except BadInput as exc:
            self._reject(exc, self.files.message, index, raw)
            return UNDEF_TS
        side = SIDE_BID if direction == m.BUY else SIDE_ASK
        opposite = SIDE_ASK if direction == m.BUY else SIDE_BID
        price_nanos = price * m.PRICE_UNIT_NANOS
        size_nanos = size * SCALE
        if kind == m.SUBMISSION:
            self._event(ts_ns, index, order_id, L3_ADD, side, price_nanos, size_nanos, F_LAST)
        elif kind in (m.CANCELLATION, m.DELETION):
            self._event(ts_ns, index, order_id, L3_CANCEL, side, price_nanos, size_nanos, F_LAST)
        elif kind == m.EXECUTION_VISIBLE:
            self._event(ts_ns, index, order_id, L3_FILL, side, price_nanos, size_nanos, 0)
            self._event(ts_ns, index, order_id, L3_CANCEL, side, price_nanos, size_nanos, F_LAST)
            self._trade(ts_ns, index, price_nanos, size_nanos, opposite, 0)
        elif kind == m.EXECUTION_HIDDEN:
            self._trade(ts_ns, index, price_nanos, size_nanos, opposite, F_HIDDEN)
        elif kind == m.CROSS_TRADE:
            self._trade(ts_ns, index, price_nanos, size_nanos, NO_SIDE, 0)
        else:
            flags = F_LAST if price == 1 else F_LAST | F_MAYBE_BAD_BOOK
            self._event(ts_ns, index, order_id, L3_NONE, NO_SIDE, price_nanos, 0, flags)
        return ts_ns

    def _event(self, ts_ns: int, seq: int, order_id: int, action: int, side: int, price_nanos: int,
               size_nanos: int, flags: int) -> None:
        e = self.events
        for name, value in (("ts_event_ns", ts_ns), ("ts_recv_ns", ts_ns), ("sequence", seq),
                            ("order_id", order_id), ("action", action), ("side", side),
                            ("price_nanos", price_nanos), ("size_nanos", size_nanos), ("flags", flags)):
            e[name].append(value)

    def _trade(self, ts_ns: int, seq: int, price_nanos: int, size_nanos: int, aggressor: int,
               flags: int) -> None:
        t = self.trades
        for name, value in (("ts_event_ns", ts_ns), ("ts_recv_ns", ts_ns), ("sequence", seq),
                            ("trade_id", ""), ("price_nanos", price_nanos), ("size_nanos", size_nanos),
                            ("aggressor_side", aggressor), ("flags", flags)):
            t[name].append(value)

    def orderbook(self, index: int, raw: bytes, ts_ns: int, *, has_message: bool) -> None:
        """Orderbook row ``index``: a snapshot at its message's time ``ts_ns``. None when that
        message was rejected (its dead letter stands for the pair row); a row with no message
        at all is a dead letter of its own (``unpaired``)."""
        levels = self.files.levels
        try:
            values = parse_book(raw, levels)
            if not has_message:
                raise unpaired(self.files.message is not None)
        except BadInput as exc:
            self._reject(exc, self.files.orderbook, index, raw, ts_ns)
            return
        if ts_ns == UNDEF_TS:
            return
        grid = np.array(values, np.int64).reshape(levels, 4)
        s = self.snaps
        s["ts_event_ns"].append(ts_ns)
        s["ts_recv_ns"].append(ts_ns)
        s["sequence"].append(index)
        s["levels"].append(levels)
        s["flags"].append(0)
        for col, px_i, sz_i, empty in (("ask", 0, 1, m.EMPTY_ASK_PRICE), ("bid", 2, 3, m.EMPTY_BID_PRICE)):
            px, sz = grid[:, px_i], grid[:, sz_i]
            absent = (px == empty) & (sz == 0)
            s[f"{col}_price_nanos"].append(np.where(absent, UNDEF_PRICE, px * m.PRICE_UNIT_NANOS).tolist())
            s[f"{col}_size_nanos"].append(np.where(absent, 0, sz * SCALE).tolist())
