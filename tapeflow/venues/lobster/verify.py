"""The LOBSTER one-step oracle: orderbook row i == orderbook row i-1 + message i.

It checks the decoder's output, not the raw CSV: the ``order_event`` rows of message i (an ``A``
adds its size at its side and price, a ``C`` removes it; ``F``, ``T`` and ``N`` leave the book
alone) are applied to the decoded snapshot i-1 and compared with the decoded snapshot i.

The file shows only an N-level window of each side, so a message determines:

* everything, when it changes a shown level without emptying it, adds a level inside the window
  (the level pushed out is simply no longer shown), or touches a price beyond a full window (then
  nothing shown may change);
* everything but the last shown level, when it empties a level of a full window: a level from
  beyond the window (unknown to the file) moves in last. Then only the levels above are compared,
  and the newcomer must be worse than the last level shown before.

The side the message does not touch must be unchanged. Messages that change no visible order
(hidden executions, cross trades, halts) must leave both sides unchanged; they are counted apart
(``details["unchanged_ok"]`` of ``details["unchanged_total"]``) and any mismatch is a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import BID, L3_ADD, L3_CANCEL, UNDEF_PRICE
from tapeflow.venues.base import VerifyReport, merge
from tapeflow.venues.lobster.parse import LobsterFiles, decode_pair, pair_files

_MAX_FAILURES = 20
Side = tuple[list[int], list[int]]  # prices best first, sizes; only the levels shown


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """One report per message/orderbook pair: ``verified: <ok> of <total> lobster one-step book states``.

    ``total`` counts the visible messages (types 1-4) after the first row whose previous and own
    book rows both decoded; pairs missing one of the two files are skipped.
    """
    reports = []
    for files in pair_files(paths):
        if files.message is None or files.orderbook is None:
            continue
        reports.append(verify_pair(files))
    return reports


def verify_pair(files: LobsterFiles) -> VerifyReport:
    """Decode one pair and run the one-step check over it."""
    tables = merge(list(decode_pair(files)))
    empty = pa.table({"sequence": pa.array([], pa.int64())})
    return one_step(tables.get("order_event", empty), tables.get("trade", empty),
                    tables.get("book_snapshot", empty), files.levels, name=files.name)


def one_step(events: pa.Table, trades: pa.Table, snapshots: pa.Table, levels: int, *,
             name: str = "lobster") -> VerifyReport:
    """The one-step check over decoded tables of one pair (rows linked by ``sequence``)."""
    books = _books(snapshots)
    changes: dict[int, list[tuple[int, int, int]]] = {}
    quiet: set[int] = set(trades.column("sequence").to_pylist())
    if events.num_rows:
        names = ("sequence", "action", "side", "price_nanos", "size_nanos")
        cols = [events.column(c).to_pylist() for c in names]
        for seq, action, side, price, size in zip(*cols, strict=True):
            quiet.add(seq)
            if action in (L3_ADD, L3_CANCEL):
                changes.setdefault(seq, []).append((side, price, size if action == L3_ADD else -size))
    ok = total = unchanged_ok = unchanged_total = 0
    failures: list[str] = []
    for seq in sorted(quiet | set(changes)):
        before, after = books.get(seq - 1), books.get(seq)
        if before is None or after is None:
            continue
        if seq in changes:
            total += 1
            good = _check(before, after, changes[seq], levels)
            ok += good
        else:
            unchanged_total += 1
            good = before == after
            unchanged_ok += good
        if not good and len(failures) < _MAX_FAILURES:
            failures.append(f"{name}: message row {seq + 1} ({changes.get(seq, 'no visible change')}) "
                            f"turns {before} into {after}")
    return VerifyReport(ok=ok, total=total, what="lobster one-step book states", failures=failures,
                        details={"name": name, "unchanged_ok": unchanged_ok,
                                 "unchanged_total": unchanged_total, "book_rows": len(books)})


def _books(snapshots: pa.Table) -> dict[int, tuple[Side, Side]]:
    """sequence -> ((bid prices, sizes), (ask prices, sizes)) with the padding removed."""
    if not snapshots.num_rows:
        return {}
    cols = [snapshots.column(c).to_pylist() for c in
            ("sequence", "bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")]
    out = {}
    for seq, bp, bs, ap, as_ in zip(*cols, strict=True):
        out[seq] = (_shown(bp, bs), _shown(ap, as_))
    return out


def _shown(prices: list[int], sizes: list[int]) -> Side:
    keep = [i for i, p in enumerate(prices) if p != UNDEF_PRICE]
    return [prices[i] for i in keep], [sizes[i] for i in keep]


def _check(before: tuple[Side, Side], after: tuple[Side, Side], changes: list[tuple[int, int, int]],
           levels: int) -> bool:
    if len(changes) != 1:
        return False  # a LOBSTER message changes one order: more would be a decoder bug
    side, price, delta = changes[0]
    touched = 0 if side == BID else 1
    if before[1 - touched] != after[1 - touched]:
        return False
    expected = _apply(before[touched], price, delta, levels, bid=side == BID)
    if expected is None:
        return False
    (px, sz), known = expected
    got_px, got_sz = after[touched]
    if known == levels:
        return (got_px, got_sz) == (px, sz)
    # the last shown level is whatever sat beyond the window: compare the rest, check its order
    old_last = before[touched][0][-1]
    if (got_px[:known], got_sz[:known]) != (px, sz) or len(got_px) not in (known, levels):
        return False
    return len(got_px) == known or (got_px[-1] < old_last if side == BID else got_px[-1] > old_last)


def _apply(shown: Side, price: int, delta: int, levels: int, *, bid: bool) -> tuple[Side, int] | None:
    """Shown side after the change and how many leading levels it determines (None: impossible)."""
    px, sz = list(shown[0]), list(shown[1])
    full = len(px) == levels
    if price in px:
        k = px.index(price)
        sz[k] += delta
        if sz[k] < 0:
            return None
        if sz[k] == 0:
            del px[k], sz[k]
            return (px, sz), levels - 1 if full else levels
        return (px, sz), levels
    better = np.array(px) > price if bid else np.array(px) < price
    position = int(better.sum())
    if full and position == levels:
        return (px, sz), levels  # beyond the window: nothing shown changes
    if delta < 0:
        return None  # removing from a level the book should show but does not
    px.insert(position, price)
    sz.insert(position, delta)
    return (px[:levels], sz[:levels]), levels
