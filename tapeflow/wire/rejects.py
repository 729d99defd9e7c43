"""Dead letters: the closed set of reject reasons, and the builder of ``rejected`` rows.

Every input unit a decoder cannot normalize becomes one ``rejected`` row whose ``reason`` is a
member of :class:`Reason`, declared here once. The JSON venues share one frame loop
(:mod:`tapeflow.venues.decoder`), so the same damage gets the same reason on every venue
(``tests/venues/test_reject_reasons.py`` feeds each venue the same classes of damage).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import REJECTED


class Reason(StrEnum):
    """Why an input unit was rejected (the ``reason`` column of ``rejected``)."""

    # reading a capture or a file
    BAD_CAPTURE_LINE = "bad_capture_line"  # not a ``<recv_ns> <payload>`` / cryptofeed line
    TRUNCATED = "truncated"  # ends inside a value: a JSON frame, a CSV row, a DBN record
    BAD_JSON = "bad_json"  # not JSON at all
    # the shape and the values of a message
    BAD_SHAPE = "bad_shape"  # valid JSON of the wrong shape: not an object (or the venue's array)
    #                          where one belongs, levels that are not [price, size] lists
    MISSING_FIELD = "missing_field"  # a required field is absent or null
    BAD_NUMBER = "bad_number"  # not an exact finite decimal: NaN/Infinity, wrong JSON type,
    #                            no number, more than 9 decimals
    NEGATIVE = "negative"  # below zero where it cannot be (size, price, id)
    OUT_OF_RANGE = "out_of_range"  # beyond int64 nanos, or against another field (U > u)
    BAD_FIELD = "bad_field"  # a field that is no number has a value outside its domain
    BAD_TIMESTAMP = "bad_timestamp"  # a time that cannot be read
    # what a message means
    UNKNOWN_MESSAGE = "unknown_message"  # a well-formed message of an unknown type or channel
    UNSUPPORTED_CHANNEL = "unsupported_channel"  # a known channel tapeflow does not decode
    VENUE_ERROR = "venue_error"  # the venue answered with an error
    UNKNOWN_SYMBOL = "unknown_symbol"  # outside the symbol filter, or no way to name it
    NO_SNAPSHOT = "no_snapshot"  # a book update before the book's first snapshot
    UNKNOWN_ID = "unknown_id"  # an update of a level id the book never held
    STALE_SEQUENCE = "stale_sequence"  # at or below the last applied sequence: a duplicate or reorder
    DUPLICATE = "duplicate"  # byte-identical to a unit already normalized (same sequence or trade id)
    PRICE_BEYOND_RANGE = "price_beyond_range"  # a venue's placeholder level priced beyond int64
    #                                            nanos (Kraken's 9999999997 asks): kept out of the book
    EMPTY_MESSAGE = "empty_message"  # a well-formed data message that made no row: nothing in it
    #                                  to normalize (tapeflow.venues.decoder's check on every frame)
    EMPTY_SNAPSHOT = "empty_snapshot"  # a venue's snapshot of a table holding nothing yet (a BitMEX
    #                                    trade or quote ``partial`` with ``"data": []``): no row to make
    # vendor files (LOBSTER, Tardis CSV, DBN, simulator)
    BAD_FORMAT = "bad_format"  # a record with more fields than the format has
    BAD_ROW = "bad_row"  # a CSV row the reader cannot split
    BAD_LINE = "bad_line"  # a line with the wrong number of fields or an unknown type
    BAD_HEADER = "bad_header"  # a file header that is not the format's
    BAD_VALUE = "bad_value"  # an enumerated column with a value outside its set
    BAD_SIDE = "bad_side"  # a side that is neither bid nor ask
    BAD_LENGTH = "bad_length"  # a binary record whose length field cannot be right
    UNPAIRED = "unpaired"  # a LOBSTER orderbook row with no message row: nothing gives it a time
    UNSUPPORTED_SCHEMA = "unsupported_schema"  # records of a schema with no tapeflow record type
    # the live flow
    TOO_LATE = "too_late"  # a trade later than the bars' late-data allowance


class Rejects:
    """Accumulates dead-letter rows for one decode pass."""

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self._cols: dict[str, list[Any]] = {n: [] for n in REJECTED.column_names}

    def add(self, reason: str, detail: str, location: str, raw: bytes | str, *,
            ts_recv_ns: int = -1, ts_event_ns: int = -1, symbol: str = "") -> None:
        """One rejected unit.

        Raises:
            TapeflowError: ``reason`` is not a :class:`Reason` (a bug, not bad input).
        """
        if reason not in _REASONS:
            raise TapeflowError(f"reject reason {reason!r} is not one of tapeflow.wire.rejects.Reason")
        for counter in _TALLIES:
            counter[reason] += 1
        c = self._cols
        c["ts_event_ns"].append(ts_event_ns)
        c["ts_recv_ns"].append(ts_recv_ns)
        c["venue"].append(self.venue)
        c["symbol"].append(symbol)
        c["reason"].append(str(reason))
        c["detail"].append(detail)
        c["location"].append(location)
        c["raw"].append(raw.encode() if isinstance(raw, str) else bytes(raw))

    def __len__(self) -> int:
        return len(self._cols["reason"])

    def table(self) -> pa.Table:
        """The rows so far as a ``rejected`` table."""
        return REJECTED.table(self._cols)

    def drain(self) -> pa.Table:
        """The rows so far; the builder is empty afterwards."""
        if not self._cols["reason"]:
            return REJECTED.empty_table()
        t = self.table()
        self._cols = {n: [] for n in REJECTED.column_names}
        return t


_REASONS = frozenset(r.value for r in Reason)
_TALLIES: list[Counter[str]] = []


@contextlib.contextmanager
def tally() -> Iterator[Counter[str]]:
    """Count, by reason, every dead letter any decoder builds inside the ``with`` block.

    ``tapeflow verify`` learns what its verifier's decode rejected this way, without decoding the
    files a second time: every decoder writes its dead letters through :meth:`Rejects.add`.
    """
    counter: Counter[str] = Counter()
    _TALLIES.append(counter)
    try:
        yield counter
    finally:
        _TALLIES.remove(counter)

# Reasons for well-formed units that a rule, not damage, keeps out of the tables: a channel tapeflow
# does not decode, a book update from before the capture's first snapshot of that book, a venue's
# placeholder ask priced beyond what int64 nanos hold (Kraken, docs/venues.md), a snapshot of a
# table that holds nothing yet (BitMEX's trade and quote ``partial`` of a quiet symbol). They are
# still written as ``rejected`` rows (nothing is dropped unseen) but are counted as ignored by rule,
# and do not make ``ingest``/``verify`` exit non-zero (docs/reliability.md).
IGNORED_BY_RULE = frozenset({Reason.UNSUPPORTED_CHANNEL.value, Reason.NO_SNAPSHOT.value,
                             Reason.PRICE_BEYOND_RANGE.value, Reason.EMPTY_SNAPSHOT.value})
