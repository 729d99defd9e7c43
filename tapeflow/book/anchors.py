"""A vendor's own book as anchors of an L3 rebuild (LOBSTER's orderbook file).

LOBSTER gives, beside each message row, the top N levels of the book after it (orderbook row i,
decoded as a ``book_snapshot`` row whose ``sequence`` is i, like the message's ``order_event``
rows). A message file alone cannot rebuild the book: it does not start empty, and events beyond
the N-level window are not in it. So the L3 book takes the vendor rows as anchors: after each
published row with one, the sides whose top levels differ from the vendor's are re-anchored
(:mod:`kernels.l3anchor`); the first anchor seeds the book.

:class:`Anchors` keeps one instrument's vendor rows until their events come, and holds back the
events whose vendor row has not come yet (a live micro-batch may end between a message's events
and its orderbook row, which the capture orders after them); :meth:`Anchors.take` hands them out
with the next batch, :meth:`Anchors.flush` at the end of the stream.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels import book_stage as kb
from kernels.codes import F_LAST, UNDEF_PRICE

_SIDES = ("bid_price_nanos", "bid_size_nanos", "ask_price_nanos", "ask_size_nanos")
NO_ANCHORS = np.zeros((4, 0, 0), np.int64)


def anchor_arrays(snapshots: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``(sequence int64[a], books int64[4, a, L])`` of ``book_snapshot`` rows: bid px, bid size,
    ask px, ask size, best first, UNDEF_PRICE / 0 beyond a side's levels."""
    seq = snapshots.column("sequence").to_numpy().astype(np.int64)
    parts = []
    for name in _SIDES:
        arr = snapshots.column(name).combine_chunks()
        offsets = arr.offsets.to_numpy().astype(np.int64)
        values = arr.values.to_numpy(zero_copy_only=False).astype(np.int64)[offsets[0]:offsets[-1]]
        parts.append((offsets - offsets[0], values))
    width = max([1, *(int(np.diff(o).max()) for o, _ in parts if len(o) > 1)])
    books = np.zeros((4, len(seq), width), np.int64)
    books[0::2] = UNDEF_PRICE
    for j, (offsets, values) in enumerate(parts):
        if len(values) == len(seq) * width:
            # every row shows all its levels (LOBSTER's files, empty levels padded): one reshape
            books[j] = values.reshape(len(seq), width)
            continue
        lengths = np.diff(offsets)
        row = np.repeat(np.arange(len(seq)), lengths)
        col = np.arange(len(values)) - np.repeat(offsets[:-1], lengths)
        books[j, row, col] = values
    # a padded level (UNDEF_PRICE / 0, as LOBSTER's empty levels decode) is no level
    books[1::2][books[0::2] == UNDEF_PRICE] = 0
    return seq, books


class Anchors:
    """One instrument's vendor rows not used yet, and the events held back until theirs come."""

    def __init__(self) -> None:
        self.seq = np.zeros(0, np.int64)
        self.books = NO_ANCHORS
        self.held: tuple[np.ndarray, np.ndarray] | None = None
        self.used = 0

    def add(self, snapshots: pa.Table) -> None:
        """Vendor rows of this instrument, in sequence order."""
        seq, books = anchor_arrays(snapshots)
        if not len(seq):
            return
        if self.books.shape[2] not in (0, books.shape[2]):
            width = max(self.books.shape[2], books.shape[2])
            self.books, books = (_widen(b, width) for b in (self.books, books))
        self.seq = np.concatenate([self.seq, seq])
        self.books = books if not self.books.shape[1] else np.concatenate([self.books, books], axis=1)

    def take(self, x: np.ndarray, order_id: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The events to run now (held ones first, then ``x``), with each row's anchor index
        (-1: none); the rows after the last vendor row are held back. None: nothing to run."""
        if self.held is not None:
            x = np.concatenate([self.held[0], x], axis=1)
            order_id = np.concatenate([self.held[1], order_id])
            self.held = None
        seqs = x[kb.X_SEQ]
        last = int(self.seq[-1]) if len(self.seq) else -1
        later = np.flatnonzero(seqs > last)
        if len(later):
            cut = int(later[0])
            self.held = (np.ascontiguousarray(x[:, cut:]), order_id[cut:].copy())
            x, order_id = np.ascontiguousarray(x[:, :cut]), order_id[:cut]
        if not x.shape[1]:
            return None
        return x, order_id, self.rows(x)

    def rows(self, x: np.ndarray) -> np.ndarray:
        """Each row's index into :attr:`books` (published rows with a vendor row), else -1."""
        seqs = x[kb.X_SEQ]
        at = np.minimum(np.searchsorted(self.seq, seqs), max(len(self.seq) - 1, 0))
        hit = (len(self.seq) > 0) & (self.seq[at] == seqs) & ((x[kb.X_FLAGS] & F_LAST) != 0) \
            if len(self.seq) else np.zeros(len(seqs), bool)
        return np.where(hit, at, -1).astype(np.int64)

    def done(self, x: np.ndarray) -> None:
        """The rows of ``x`` ran: drop the vendor rows up to the last of them."""
        if x.shape[1] and len(self.seq):
            keep = int(np.searchsorted(self.seq, int(x[kb.X_SEQ].max()), side="right"))
            self.used += keep
            self.seq, self.books = self.seq[keep:], self.books[:, keep:]

    def flush(self) -> tuple[np.ndarray, np.ndarray] | None:
        """End of stream: the events still held (their vendor rows never came)."""
        held, self.held = self.held, None
        return held


def _widen(books: np.ndarray, width: int) -> np.ndarray:
    out = np.zeros((4, books.shape[1], width), np.int64)
    out[0::2] = UNDEF_PRICE
    out[:, :, :books.shape[2]] = books
    return out


__all__ = ["NO_ANCHORS", "Anchors", "anchor_arrays"]
