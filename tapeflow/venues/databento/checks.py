"""What an MBO record may carry, checked a block of records per numpy operation.

Databento's MBO fields per action (databento.com/docs/schemas/mbo, "Action" and "Side"):

* ``action`` is one of A (add), C (cancel), M (modify), R (clear book), T (trade), F (fill),
  N (none); ``side`` one of A (ask), B (bid), N (none).
* A, C and M name a resting order: side A or B and a price. T and F may have side N (CME's
  opening-auction fills do); R carries ``UNDEF_PRICE``, side N and size 0 by design; N is a
  flags-only record.
* ``size`` of A, C, M, T and F is a quantity: ``UNDEF_ORDER_SIZE`` (u32::MAX) is none.
* no price is ``i64::MIN`` (the SBE null of a signed price, never a Databento value).

Order within a file: ``sequence`` is the venue's packet sequence number, so every record of one
packet shares it and it never goes back per instrument, except inside a snapshot (its records
carry the sequence of the order's original add) and after a clear or snapshot (a recovery may
restart it). A record byte-for-byte equal to the record before it is a doubled record: the venue
never repeats one back to back (an order filled twice in one packet repeats its ``F`` record,
with the ``T`` of the second aggressor between the two). Both are ``stale_sequence`` dead letters:
applying an L3 event twice or late corrupts the book (the ``sim`` feed's rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import databento_dbn as dbn
import numpy as np

from tapeflow.schemas.records import F_SNAPSHOT, UNDEF_PRICE

I64_MIN = -(2**63)
UNDEF_ORDER_SIZE = dbn.UNDEF_ORDER_SIZE
_SEQ_BITS = 33  # a u32 sequence below the segment number in one int64 key


def _table(chars: bytes) -> np.ndarray:
    table = np.zeros(256, bool)
    table[list(chars)] = True
    return table


_ACTIONS = _table(b"ACMRTFN")
_SIDES = _table(b"ABN")
_RESTING = _table(b"ACM")  # actions on a resting order: need a side and a price
_SIZED = _table(b"ACMTF")  # actions whose size is a quantity
_PAIRS = np.zeros(1 << 16, bool)  # (action << 8 | side) -> a pair an MBO record may carry
for _a in b"ACMRTFN":
    for _s in b"AB" if _RESTING[_a] else b"ABN":
        _PAIRS[_a << 8 | _s] = True
_NAMES = {ord("A"): "an add (A)", ord("C"): "a cancel (C)", ord("M"): "a modify (M)"}

Detail = Callable[[int], str]  # row -> what is wrong with it


@dataclass
class MboState:
    """What the checks carry from one block of a file to the next."""

    last_record: np.ndarray | None = None  # the file's previous record (void scalar array)
    max_sequence: dict[int, int] = field(default_factory=dict)  # per instrument, since its
    #                                                             last snapshot record or clear


@dataclass
class MboColumns:
    """The fields of a block of MBO records the checks read, each a contiguous array (the order
    event table is built from the same arrays: each field of the records is read once)."""

    instrument_id: np.ndarray  # uint32
    order_id: np.ndarray  # uint64
    price: np.ndarray  # int64, 1e-9
    size: np.ndarray  # uint32
    flags: np.ndarray  # uint8
    action: np.ndarray  # uint8
    side: np.ndarray  # uint8
    sequence: np.ndarray  # uint32

    @classmethod
    def of(cls, recs: np.ndarray) -> MboColumns:
        """The columns of ``recs``."""
        return cls(*(np.ascontiguousarray(recs[name]) for name in _COLUMNS))

    def take(self, rows: np.ndarray) -> MboColumns:
        """The columns of ``rows`` only."""
        return MboColumns(*(getattr(self, name)[rows] for name in _COLUMNS))


_COLUMNS = ("instrument_id", "order_id", "price", "size", "flags", "action", "side", "sequence")


def check_mbo(recs: np.ndarray, cols: MboColumns, state: MboState) -> list[tuple[str, np.ndarray, Detail]]:
    """The records of ``recs`` to dead-letter: ``(reason, rows, detail of a row)``, rows disjoint.

    Args:
        recs: MBO records (a structured view), in file order.
        cols: their fields (:meth:`MboColumns.of`).
        state: the file's state before ``recs``; updated to after them.
    """
    action = cols.action.view(np.uint8)
    side = cols.side.view(np.uint8)
    price = cols.price
    size = cols.size
    out, pick = _picker(len(recs))
    # few passes over the records (each field is strided memory); the reasons are told apart only
    # when something is wrong. i64::MAX and i64::MIN are neighbours as unsigned: one comparison.
    suspect = ~_PAIRS[(action.astype(np.uint16) << 8) | side]
    suspect |= (price.view(np.uint64) - np.uint64(UNDEF_PRICE)) <= 1
    suspect |= size == UNDEF_ORDER_SIZE
    if suspect.any():
        resting = _RESTING[action]
        pick("bad_value", ~_ACTIONS[action],
             lambda i: f"MBO action {_char(action[i])} is none of A, C, M, R, T, F, N")
        pick("bad_side", ~_SIDES[side],
             lambda i: f"MBO side {_char(side[i])} is none of A (ask), B (bid), N (none)")
        pick("bad_side", resting & (side == ord("N")),
             lambda i: f"{_NAMES[int(action[i])]} needs side A or B, got N (none)")
        pick("out_of_range", price == I64_MIN,
             lambda i: f"MBO price is i64::MIN ({I64_MIN}), a null value, not a price")
        pick("missing_field", resting & (price == UNDEF_PRICE),
             lambda i: f"{_NAMES[int(action[i])]} has no price (UNDEF_PRICE, i64::MAX)")
        pick("missing_field", _SIZED[action] & (size == UNDEF_ORDER_SIZE),
             lambda i: f"MBO {_char(action[i])} size is UNDEF_ORDER_SIZE ({UNDEF_ORDER_SIZE}): no quantity")
    seq = cols.sequence
    repeats = _repeats(recs, cols.order_id, seq, state)
    if repeats is not None:
        pick("stale_sequence", repeats,
             lambda i: f"a byte-for-byte repeat of the record before it (sequence {seq[i]}, order id "
                       f"{cols.order_id[i]}, action {_char(action[i])}): a doubled record")
    reset = ((cols.flags & F_SNAPSHOT) != 0) | (action == ord("R"))
    late = _stale(cols.instrument_id, seq, reset, action, state)
    if late is not None:
        stale, before = late
        pick("stale_sequence", stale,
             lambda i: f"sequence {seq[i]} after {before[i]} on instrument {cols.instrument_id[i]}: "
                       "a reordered record")
    return out


def check_trades(recs: np.ndarray) -> list[tuple[str, np.ndarray, Detail]]:
    """The trades-schema records to dead-letter (``check_mbo``'s value rules for a ``T``: its
    action is always T, its side A, B or N, its price defined, its size a quantity)."""
    action = np.ascontiguousarray(recs["action"]).view(np.uint8)
    side = np.ascontiguousarray(recs["side"]).view(np.uint8)
    price = recs["price"]
    size = recs["size"]
    out, pick = _picker(len(recs))
    suspect = (action != ord("T")) | ~_SIDES[side]
    suspect |= (price.view(np.uint64) - np.uint64(UNDEF_PRICE)) <= 1
    suspect |= size == UNDEF_ORDER_SIZE
    if suspect.any():
        pick("bad_value", action != ord("T"),
             lambda i: f"a trades record's action is {_char(action[i])}, not 'T'")
        pick("bad_side", ~_SIDES[side],
             lambda i: f"trade side {_char(side[i])} is none of A (ask), B (bid), N (none)")
        pick("out_of_range", price == I64_MIN,
             lambda i: f"trade price is i64::MIN ({I64_MIN}), a null value, not a price")
        pick("missing_field", price == UNDEF_PRICE, lambda i: "a trade has no price (UNDEF_PRICE, i64::MAX)")
        pick("missing_field", size == UNDEF_ORDER_SIZE,
             lambda i: f"trade size is UNDEF_ORDER_SIZE ({UNDEF_ORDER_SIZE}): no quantity")
    return out


def _picker(n: int) -> tuple[list[tuple[str, np.ndarray, Detail]], Callable[[str, np.ndarray, Detail], None]]:
    """A list of dead letters and the function adding to it the rows of a mask not yet taken."""
    out: list[tuple[str, np.ndarray, Detail]] = []
    taken = np.zeros(n, bool)

    def pick(reason: str, mask: np.ndarray, detail: Detail) -> None:
        mask = mask & ~taken
        if mask.any():
            taken[mask] = True
            out.append((reason, np.flatnonzero(mask), detail))

    return out, pick


def _char(code: int) -> str:
    code = int(code)
    return repr(chr(code)) if 32 < code < 127 else f"byte 0x{code:02x}"


def _repeats(recs: np.ndarray, order_id: np.ndarray, sequence: np.ndarray,
             state: MboState) -> np.ndarray | None:
    """Rows equal, byte for byte, to the record before them in the file (None: no such row)."""
    n = len(recs)
    if n == 0:
        return None
    whole = recs.view(np.dtype((np.void, recs.dtype.itemsize)))
    previous, state.last_record = state.last_record, whole[-1:].copy()
    # an order id and sequence rarely repeat back to back (0.4% of the ES day's records): compare
    # whole records only where they do
    candidates = np.flatnonzero((order_id[1:] == order_id[:-1]) & (sequence[1:] == sequence[:-1])) + 1
    same = np.zeros(n, bool)
    if candidates.size:
        if recs.flags.c_contiguous and recs.dtype.itemsize % 8 == 0:
            words = recs.view(np.uint64).reshape(n, -1)
            same[candidates] = (words[candidates] == words[candidates - 1]).all(axis=1)
        else:
            same[candidates] = whole[candidates] == whole[candidates - 1]
    if previous is not None:
        same[0] = bool(whole[0] == previous[0])
    return same if same.any() else None


def _stale(ids: np.ndarray, seq_u32: np.ndarray, reset: np.ndarray, action: np.ndarray,
           state: MboState) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows whose sequence is below an earlier one of their instrument (since its last snapshot
    record or clear), and that earlier maximum per row (None: no such row)."""
    n = len(seq_u32)
    if n == 0:
        return None
    snapshot = reset & (action != ord("R"))
    if not (ids != ids[0]).any():
        # one instrument: when its sequence goes back only where a reset allows it (at a snapshot
        # record or clear, or from a snapshot record, whose sequence counts as 0), no row is late
        iid = int(ids[0])
        back = (seq_u32[1:] < seq_u32[:-1]) & ~reset[1:] & ~snapshot[:-1]
        if (reset[0] or int(seq_u32[0]) >= state.max_sequence.get(iid, -1)) and not back.any():
            state.max_sequence[iid] = 0 if snapshot[-1] else int(seq_u32[-1])
            return None
    clear = reset & ~snapshot
    return _stale_rows(ids.astype(np.int64), seq_u32.astype(np.int64), snapshot, clear, state)


def _stale_rows(ids: np.ndarray, seq: np.ndarray, snapshot: np.ndarray, clear: np.ndarray,
                state: MboState) -> tuple[np.ndarray, np.ndarray] | None:
    n = len(seq)
    order = None if ids.min() == ids.max() else np.argsort(ids, kind="stable")
    if order is not None:
        ids, seq, snapshot, clear = ids[order], seq[order], snapshot[order], clear[order]
    first = np.ones(n, bool)
    first[1:] = ids[1:] != ids[:-1]
    # one segment per run of an instrument's records between resets: a later segment's keys are
    # above every earlier key, so a running maximum compares each row with its own segment only
    seg = np.cumsum(first | snapshot | clear)
    base = seg << _SEQ_BITS
    key = base + np.where(snapshot, 0, seq)
    running = np.maximum.accumulate(key)
    prev = np.empty(n, np.int64)
    prev[0] = -1
    prev[1:] = running[:-1]
    late = key < prev
    top = np.where(late, prev - base, 0)
    # the carried maximum of each instrument applies to its first segment, unless that starts
    # with a reset
    starts = np.flatnonzero(first)
    carried = np.array([state.max_sequence.get(int(i), -1) for i in ids[starts]], np.int64)
    carried[snapshot[starts] | clear[starts]] = -1
    row_carry = np.repeat(carried, np.diff(np.append(starts, n)))
    initial = seg == np.repeat(seg[starts], np.diff(np.append(starts, n)))
    behind = initial & ~snapshot & (seq < row_carry)
    top = np.where(behind, np.maximum(top, row_carry), top)
    late |= behind
    ends = np.append(starts[1:], n) - 1
    last_max = running[ends] - base[ends]
    last_max = np.where(initial[ends], np.maximum(last_max, carried), last_max)
    state.max_sequence.update(zip(ids[ends].tolist(), last_max.tolist(), strict=True))
    if not late.any():
        return None
    if order is None:
        return late, top
    stale, before = np.zeros(n, bool), np.zeros(n, np.int64)
    stale[order], before[order] = late, top
    return stale, before
