"""Self-consistency oracle of a ``sim`` file: the L3 stream is a valid book history.

Checks, per file: every cancel and fill names a live order on its side and price and removes no
more than it holds; no order id is added twice; after every venue event (``F_LAST``) the book
built from the file is not crossed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kernels.sim_book import l2_touch
from tapeflow.schemas.records import (
    ASK,
    BOOK_DELTA,
    F_LAST,
    L3_ADD,
    L3_CANCEL,
    L3_CLEAR,
    L3_FILL,
    ORDER_EVENT,
)
from tapeflow.venues.base import VerifyReport, merge
from tapeflow.venues.sim.parse import decode


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """One report per file: ``ok`` of ``total`` book-changing L3 events were consistent.

    ``details`` holds ``crossed`` (events after which best bid > best ask; must be 0),
    ``locked`` and ``rejected`` (bad lines the decoder dead-lettered).
    """
    reports = []
    for path in paths:
        tables = merge(list(decode([Path(path)])))
        events = tables.get(ORDER_EVENT.name, ORDER_EVENT.empty_table())
        ok, total, failures = _check_orders(events)
        crossed, locked = _check_uncrossed(tables.get(BOOK_DELTA.name, BOOK_DELTA.empty_table()))
        if crossed:
            failures.append(f"book crossed after {crossed} events")
        rejected = tables["rejected"].num_rows if "rejected" in tables else 0
        reports.append(
            VerifyReport(
                ok=ok,
                total=total,
                what=f"L3 events consistent in {Path(path).name}",
                failures=failures[:20],
                details=dict(crossed=crossed, locked=locked, rejected=rejected),
            )
        )
    return reports


def _check_orders(events: object) -> tuple[int, int, list[str]]:
    cols = {
        n: events.column(n).to_numpy().tolist()
        for n in ("action", "order_id", "side", "price_nanos", "size_nanos", "sequence")  # type: ignore[attr-defined]
    }
    book: dict[int, list[int]] = {}
    ok = total = 0
    failures: list[str] = []
    for action, oid, side, price, size, seq in zip(*cols.values(), strict=True):
        if action == L3_CLEAR:
            book.clear()
            continue
        if action not in (L3_ADD, L3_CANCEL, L3_FILL):
            continue
        total += 1
        order = book.get(oid)
        if action == L3_ADD:
            if order is not None:
                failures.append(f"order {oid} added twice at seq {seq}")
                continue
            book[oid] = [side, price, size]
        elif order is None or order[0] != side or order[1] != price or order[2] < size:
            failures.append(
                f"{chr(action)} of order {oid} ({size} at {price}) does not match {order} at seq {seq}"
            )
            continue
        elif action == L3_CANCEL:
            order[2] -= size
            if order[2] == 0:
                del book[oid]
        ok += 1
    return ok, total, failures


def _check_uncrossed(deltas: object) -> tuple[int, int]:
    if deltas.num_rows == 0:  # type: ignore[attr-defined]
        return 0, 0
    price = deltas.column("price_nanos").to_numpy()  # type: ignore[attr-defined]
    # price ranks keep the order of prices, so no tick size is needed for the grid
    uniq, rank = np.unique(price, return_inverse=True)
    side = (deltas.column("side").to_numpy() == ASK).astype(np.int8)  # type: ignore[attr-defined]
    size = deltas.column("size_nanos").to_numpy()  # type: ignore[attr-defined]
    action = deltas.column("action").to_numpy()  # type: ignore[attr-defined]
    size = np.where(action == ord("R"), 0, size)
    bid, ask, _, _ = l2_touch(side, rank.astype(np.int64), size.astype(np.int64), len(uniq))
    after = np.flatnonzero(deltas.column("flags").to_numpy() & F_LAST) + 1  # type: ignore[attr-defined]
    has_both = (bid[after] >= 0) & (ask[after] < len(uniq))
    crossed = int((has_both & (bid[after] > ask[after])).sum())
    locked = int((has_both & (bid[after] == ask[after])).sum())
    return crossed, locked
