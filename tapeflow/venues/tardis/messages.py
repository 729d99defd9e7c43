"""Tardis normalized CSV layouts, as Tardis names the columns, and how a header tells the kind."""

from __future__ import annotations

import re

from tapeflow.errors import FormatError

COMMON = ("exchange", "symbol", "timestamp", "local_timestamp")
TRADES = (*COMMON, "id", "side", "price", "amount")
QUOTES = (*COMMON, "ask_amount", "ask_price", "bid_price", "bid_amount")
INCREMENTAL_BOOK_L2 = (*COMMON, "is_snapshot", "side", "price", "amount")
_LEVEL = re.compile(r"^(asks|bids)\[(\d+)\]\.(price|amount)$")

SIDES = {"buy": ord("B"), "sell": ord("A"), "bid": ord("B"), "ask": ord("A")}


def detect_kind(header: list[str]) -> tuple[str, int]:
    """The CSV kind from its header: ``trades``, ``quotes``, ``incremental_book_L2`` or
    ``book_snapshot`` (with its depth N; 0 for the other kinds).

    Raises:
        FormatError: a header of no supported kind (names the columns).
    """
    names = tuple(h.strip() for h in header)
    if names[: len(COMMON)] != COMMON:
        raise FormatError(f"not a Tardis CSV: header starts {list(names[:4])}, expected {list(COMMON)}")
    rest = set(names[len(COMMON) :])
    if set(TRADES[len(COMMON) :]) <= rest and "is_snapshot" not in rest:
        return "trades", 0
    if set(INCREMENTAL_BOOK_L2[len(COMMON) :]) <= rest:
        return "incremental_book_L2", 0
    if set(QUOTES[len(COMMON) :]) <= rest:
        return "quotes", 0
    levels = [_LEVEL.match(n) for n in names[len(COMMON) :]]
    if levels and all(levels):
        depth = 1 + max(int(m.group(2)) for m in levels if m is not None)
        want = {f"{s}[{k}].{f}" for s in ("asks", "bids") for k in range(depth) for f in ("price", "amount")}
        if want == set(names[len(COMMON) :]):
            return "book_snapshot", depth
    raise FormatError(f"unsupported Tardis CSV kind, header: {list(names)}")
