"""Wire codes: quality flags, sides, actions, ``UNDEF_PRICE`` and book status, declared once.

Every kernel and :mod:`tapeflow.schemas.records` (which re-exports them) import these names; none
declares its own copy. They live in ``kernels`` because kernels may import nothing of ours above
``kernels``. Plain module-level ``int`` constants: a numba kernel that reads ``F_LAST`` freezes it
as a compile-time constant, exactly as a literal.

Flags are a u8 bit set. Bits 2..7 keep Databento's meanings, so DBN flags pass through unchanged;
``F_GAP`` and ``F_SUPERSEDED`` are tapeflow's. Sides and actions are ASCII codes, as in DBN.
"""

from __future__ import annotations

# An absent price (an empty book side), as DBN: int64 max.
UNDEF_PRICE = 2**63 - 1

# Quality flags (u8).
F_LAST = 128          # last record of a venue event: publish the book only here
F_TOB = 64            # top-of-book message (Databento)
F_SNAPSHOT = 32       # part of a snapshot (replay of the state, not a change)
F_MBP = 16            # aggregated price level message (Databento)
F_BAD_TS_RECV = 8     # ts_recv is not trustworthy
F_MAYBE_BAD_BOOK = 4  # the book may be wrong here (after an unrecoverable gap, before resync)
F_GAP = 2             # a sequence gap or checksum failure precedes this record: resync needed
F_SUPERSEDED = 1      # already contained in the snapshot it follows: do not apply to the book
# On trade rows only: an execution against hidden (non-displayed) liquidity. Every u8 bit is taken;
# F_MBP marks aggregated book messages and never a trade, so trade rows reuse that bit.
F_HIDDEN = F_MBP

# Sides (u8), also the aggressor side of a trade.
BID = ord("B")
ASK = ord("A")
NO_SIDE = ord("N")

# L2 book_delta actions.
L2_SET = ord("U")     # set the level to the absolute size (new or changed; size 0 deletes)
L2_DELETE = ord("D")  # remove the level
L2_CLEAR = ord("R")   # clear the whole book (starts a snapshot)

# L3 order_event actions (DBN MBO semantics).
L3_ADD = ord("A")
L3_CANCEL = ord("C")  # size is the amount removed; the order goes when nothing is left
L3_MODIFY = ord("M")  # new price and size for order_id (loses queue priority on price change)
L3_CLEAR = ord("R")
L3_TRADE = ord("T")   # aggressor side: the book does not change
L3_FILL = ord("F")    # resting side filled: size is the amount filled
L3_NONE = ord("N")

# Book status after an event (u8).
VALID = 0    # synced and not crossed (a locked book, bid == ask, is valid)
RESYNC = 1   # no completed snapshot since the start, a clear or a gap: publish nothing as valid
CROSSED = 2  # synced, but best bid > best ask

__all__ = [
    "ASK", "BID", "CROSSED", "F_BAD_TS_RECV", "F_GAP", "F_HIDDEN", "F_LAST", "F_MAYBE_BAD_BOOK", "F_MBP",
    "F_SNAPSHOT", "F_SUPERSEDED", "F_TOB", "L2_CLEAR", "L2_DELETE", "L2_SET", "L3_ADD", "L3_CANCEL",
    "L3_CLEAR", "L3_FILL", "L3_MODIFY", "L3_NONE", "L3_TRADE", "NO_SIDE", "RESYNC", "UNDEF_PRICE", "VALID",
]
