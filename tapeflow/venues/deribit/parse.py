"""Deribit ``book.<instrument>.raw`` and ``trades.<instrument>.raw`` frames -> ``book_delta`` and ``trade``.

Book notifications are a ``snapshot`` (the whole book, ``change_id``) then ``change`` messages, each
naming the ``change_id`` it follows (``prev_change_id``): a break of that chain means changes were
lost, so the next row carries ``F_GAP`` and the book stays unsynced until the next snapshot (Deribit
sends one when the channel is subscribed again). Levels are ``[action, price, amount]`` with action
``new``, ``change`` or ``delete``; prices of options are in coin (BTC, ETH), amounts in contracts.
Trades carry ``trade_seq`` (ordered per instrument: the row's ``sequence``) and ``trade_id``; a
frame of trades already decoded is a ``duplicate`` dead letter. ``ticker.*`` frames are
``unsupported_channel`` (ignored by rule): the options command and assets read them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import BadInput
from tapeflow.schemas.records import ASK, BID, F_LAST, F_SNAPSHOT, L2_CLEAR, L2_DELETE, L2_SET, NO_SIDE
from tapeflow.venues.decoder import VenueDecoder
from tapeflow.venues.fields import array, decimal, field, integer, obj, text
from tapeflow.wire.capture import CaptureLine, Decoded
from tapeflow.wire.rejects import Reason

VENUE = "deribit"
_LEVEL_ACTIONS = ("new", "change", "delete")


@dataclass
class ChangeStats:
    """The ``prev_change_id`` links checked while decoding."""

    links_ok: int = 0
    links_total: int = 0
    snapshots: int = 0
    failures: list[str] = dataclasses.field(default_factory=list)


def notification(decoder: VenueDecoder, msg: Any) -> dict[str, Any] | None:
    """The ``params`` of a JSON-RPC subscription notification, or None for a message that is quiet by
    rule (an answer to our request, a heartbeat), counted on ``decoder``; shared by the book/trades
    decoder and the option ticker decoder (``tapeflow.options.deribit``).

    Raises:
        BadInput: an error answer (``venue_error``) or another method (``unknown_message``).
    """
    m = obj(msg, "message")
    if m.get("error") is not None:
        raise BadInput(Reason.VENUE_ERROR, f"Deribit answered an error: {m['error']!r}")
    if "result" in m:
        decoder.quiet("response")  # our subscription's answer (or a test/ping request's)
        return None
    method = m.get("method")
    if method == "heartbeat":
        decoder.quiet("heartbeat")
        return None
    if method != "subscription":
        raise BadInput(Reason.UNKNOWN_MESSAGE, f"method {method!r} is not a subscription notification")
    return obj(field(m, "params"), "params")


class DeribitDecoder(VenueDecoder):
    """Stateful frame decoder; feed frames in arrival order (``run`` for files)."""

    venue = VENUE
    every_frame_accounted = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.change_ids: dict[str, int] = {}  # instrument -> change_id of its book's last message
        self.changes = ChangeStats()
        self.book_frame = False

    def message(self, msg: Any, line: CaptureLine) -> None:
        params = notification(self, msg)
        if params is None:
            return
        channel = text(params, "channel")
        kind, _, rest = channel.partition(".")
        self.frame_symbol = rest.rsplit(".", 1)[0]
        self.book_frame = kind == "book"
        if kind == "book":
            self._book(obj(field(params, "data"), "data"), line)
        elif kind == "trades":
            self._trades(self.items(field(params, "data"), "trades 'data'"), line)
        else:
            raise BadInput(Reason.UNSUPPORTED_CHANNEL, f"channel {channel!r}: book.* and trades.* are read")

    def on_reject(self) -> None:
        if self.book_frame and self.frame_symbol in self.change_ids:  # a lost trades frame leaves books whole
            self.lose_sync(self.frame_symbol)

    def _book(self, data: dict[str, Any], line: CaptureLine) -> None:
        inst = self.check_symbol(text(data, "instrument_name"))
        self.frame_symbol = inst
        kind = field(data, "type")
        ts = integer(data, "timestamp") * 1_000_000
        change_id = integer(data, "change_id")
        levels = [(ASK, *_level(raw)) for raw in array(field(data, "asks"), "asks")]
        levels += [(BID, *_level(raw)) for raw in array(field(data, "bids"), "bids")]
        if kind == "snapshot":
            self.resync(inst)
            self.changes.snapshots += 1
            rows, base = [(NO_SIDE, L2_CLEAR, 0, 0)], F_SNAPSHOT
        elif kind == "change":
            if inst not in self.change_ids:
                raise BadInput(Reason.NO_SNAPSHOT, f"change {change_id} of {inst} before its snapshot")
            prev = integer(data, "prev_change_id")
            self.changes.links_total += 1
            if prev == self.change_ids[inst]:
                self.changes.links_ok += 1
            else:
                self.changes.failures.append(f"{line.location}: {inst} prev_change_id {prev} != "
                                             f"change_id {self.change_ids[inst]}")
                self.lose_sync(inst)
            rows, base = [], 0
        else:
            raise BadInput(Reason.UNKNOWN_MESSAGE, f"book message type {kind!r}")
        self.change_ids[inst] = change_id
        rows += [(side, L2_DELETE if action == "delete" else L2_SET, px, 0 if action == "delete" else size)
                 for side, action, px, size in levels]
        if len(rows) == 0:
            self.quiet("empty change")  # a change of no level: the chain goes on
            return
        first = self.take_gap(inst)
        side, act, px, size = (list(c) for c in zip(*rows, strict=True))
        flags = [base] * len(rows)
        flags[0] |= first
        flags[-1] |= F_LAST
        self.deltas.extend(len(rows), ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=inst,
                           sequence=change_id, side=side, action=act, price_nanos=px, size_nanos=size,
                           flags=flags)

    def _trades(self, data: list[Any], line: CaptureLine) -> None:
        parsed = []
        for item in data:
            item = obj(item, "a trade")
            direction = field(item, "direction")
            if direction not in ("buy", "sell"):
                raise BadInput(Reason.BAD_FIELD, f"trade direction {direction!r} is not buy|sell")
            inst = self.check_symbol(text(item, "instrument_name"))
            parsed.append((integer(item, "timestamp") * 1_000_000, inst, integer(item, "trade_seq"),
                           str(item.get("trade_id") or ""), decimal(item, "price"), decimal(item, "amount"),
                           BID if direction == "buy" else ASK))
        ts, inst, seq, trade_id, px, sz, aggressor = (list(c) for c in zip(*parsed, strict=True))
        flags = self.repeated_trades(inst, trade_id)
        flags[-1] |= F_LAST
        self.trades.extend(len(parsed), ts_event_ns=ts, ts_recv_ns=line.recv_ns, venue=VENUE, symbol=inst,
                           sequence=seq, trade_id=trade_id, price_nanos=px, size_nanos=sz,
                           aggressor_side=aggressor, flags=flags)


def _level(raw: Any) -> tuple[str, int, int]:
    if not isinstance(raw, list) or len(raw) != 3:
        raise BadInput(Reason.BAD_SHAPE, f"book level {raw!r} is not [action, price, amount]")
    action = raw[0]
    if action not in _LEVEL_ACTIONS:
        raise BadInput(Reason.BAD_FIELD, f"book level action {action!r} is not new|change|delete")
    return action, decimal(raw, 1, "level price"), decimal(raw, 2, "level amount")  # type: ignore[arg-type]


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode Deribit captures (cryptofeed logs or ``<recv_ns> <json>`` lines, gzip or not).

    Args:
        paths: capture files, merged by capture time; book state carries across files.

    Yields:
        ``Decoded`` chunks with ``book_delta``, ``trade`` and ``rejected`` tables.
    """
    yield from DeribitDecoder().run(paths)
