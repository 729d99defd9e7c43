"""DegradedWindows.latest_end_ns is cached between batches: every change of a window must move it."""

from __future__ import annotations

import pickle

from tapeflow.live.windows import OPEN_NS, DegradedWindows, window_table
from tapeflow.schemas.records import STATUS


def _status(*rows: tuple[str, str, int, int]) -> object:
    """STATUS rows (symbol, state, ts_recv_ns, until_ns) of venue ``v``."""
    return STATUS.table({"ts_event_ns": [-1] * len(rows), "ts_recv_ns": [r[2] for r in rows],
                         "venue": ["v"] * len(rows), "symbol": [r[0] for r in rows],
                         "state": [r[1] for r in rows], "sequence": [-1] * len(rows),
                         "until_ns": [r[3] for r in rows], "detail": [""] * len(rows)})


def test_latest_end_follows_every_window_change() -> None:
    w = DegradedWindows()
    assert w.latest_end_ns() == -1
    w.from_status(_status(("", "skew", 5, -1)))  # not a window: leaves an empty list behind
    assert w.latest_end_ns() == -1
    w.from_status(_status(("A", "degraded", 10, -1)))
    assert w.latest_end_ns() == OPEN_NS
    w.from_status(_status(("A", "recovered", 20, 30)), high_water_ns=40)
    assert w.latest_end_ns() == 41  # closed at max(until, high water + 1)
    w.merge(window_table([("v", "B", 50, 90)]))
    assert w.latest_end_ns() == 90
    w.merge(window_table([("v", "B", 50, 70)]))  # a known start is replaced: the latest end goes down
    assert w.latest_end_ns() == 70
    back = pickle.loads(pickle.dumps(w))
    back.merge(window_table([("v", "C", 80, 100)]))
    assert back.latest_end_ns() == 100 and w.latest_end_ns() == 70
