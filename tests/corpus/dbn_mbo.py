"""The corpus' DBN MBO sample: a seven-record order book, and the records issue 9 found stored as rows.

Written with the numpy layout ``databento_dbn`` itself gives the MBO record, so fields can carry
values no ``MBOMsg`` constructor accepts (action ``Q``, side ``X``). The clean sample is a book
the ``verify`` oracle passes (a clear, a snapshot of two resting orders, a modify, a trade with its
fill, a cancel); each damaged sample inserts one bad record into it (or reorders two of it), so
dropping the bad record leaves the clean book and ``verify`` still passes, with exit 3 for the
dead letter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.corpus.make_damaged import T0_NS, Case

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1  # UNDEF_PRICE
U32_MAX = 2**32 - 1  # UNDEF_ORDER_SIZE
F_LAST = 128
F_SNAPSHOT = 32
PX = 4_500_000_000_000  # 4500.00 in 1e-9 units
TICK = 250_000_000

# (action, side, order_id, price, size, sequence, flags)
CLEAN = [
    ("R", "N", 0, I64_MAX, 0, 0, 0),  # a clear carries no price (UNDEF_PRICE) and side N by design
    ("A", "B", 1, PX, 5, 1, F_SNAPSHOT),  # the book's snapshot: the oracle judges a synced book
    ("A", "A", 2, PX + TICK, 5, 2, F_SNAPSHOT | F_LAST),
    ("M", "B", 1, PX, 3, 3, F_LAST),
    ("T", "A", 9, PX, 1, 4, 0),
    ("F", "B", 1, PX, 1, 4, F_LAST),
    ("C", "B", 1, PX, 2, 5, F_LAST),
]
INSERTED = {  # damage -> the bad record inserted after CLEAN[3]
    "mbo-action-q": ("Q", "B", 7, PX, 1, 3, F_LAST),
    "mbo-side-x": ("A", "X", 7, PX, 1, 3, F_LAST),
    "mbo-add-price-i64-min": ("A", "B", 7, I64_MIN, 1, 3, F_LAST),
    "mbo-add-undef-price": ("A", "B", 7, I64_MAX, 1, 3, F_LAST),
    "mbo-modify-undef-price": ("M", "A", 2, I64_MAX, 4, 3, F_LAST),
    "mbo-add-size-u32-max": ("A", "B", 7, PX, U32_MAX, 3, F_LAST),
    "mbo-doubled": CLEAN[3],
}


def mbo_bytes(records: list[tuple], instrument_id: int = 42) -> bytes:
    """A DBN v2 ``mbo`` file of ``records`` ((action, side, order_id, price, size, sequence, flags))."""
    import databento_dbn as dbn

    from tapeflow.venues.databento import messages as m

    meta = dbn.Metadata(dataset="GLBX.MDP3", start=T0_NS, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.MBO, symbols=["ESH4"],
                        end=T0_NS + 10**12)
    recs = np.zeros(len(records), m.record_dtype(m.MBO, 56))
    recs["length"], recs["rtype"], recs["publisher_id"] = 14, m.MBO, 1
    recs["instrument_id"] = instrument_id
    for i, (action, side, order_id, price, size, sequence, flags) in enumerate(records):
        recs[i]["ts_event"] = T0_NS + sequence * 1000
        recs[i]["ts_recv"] = T0_NS + sequence * 1000 + 100
        recs[i]["action"], recs[i]["side"] = action.encode(), side.encode()
        recs[i]["order_id"], recs[i]["price"], recs[i]["size"] = order_id, price, size
        recs[i]["sequence"], recs[i]["flags"] = sequence, flags
    return meta.encode() + recs.tobytes()


def mbo_cases(root: Path) -> list[Case]:
    """The ``dbn-mbo`` cases: clean, each inserted bad record, a reorder and a flipped length byte."""
    root.mkdir(parents=True, exist_ok=True)
    cases = []

    def case(name: str, records: list[tuple], damaged: int, data: bytes | None = None) -> None:
        path = root / f"{name}.mbo.dbn"
        path.write_bytes(mbo_bytes(records) if data is None else data)
        cases.append(Case(f"dbn-mbo/{name}", "dbn", (path,), len(records), damaged, table="order_event"))

    case("clean", CLEAN, 0)
    for name, bad in INSERTED.items():
        case(name, [*CLEAN[:4], bad, *CLEAN[4:]], 1)
    # the cancel (sequence 5) before the fill (sequence 4): the late fill is the dead letter
    case("mbo-reordered", [*CLEAN[:5], CLEAN[6], CLEAN[5]], 1)
    clean = mbo_bytes(CLEAN)
    flipped = bytearray(clean)
    flipped[len(clean) - 3 * 56] ^= 0x40  # the length byte of the fifth of seven records
    case("mbo-bad-length", CLEAN, 1, bytes(flipped))
    return cases
