"""MBO self-consistency: rebuild each instrument's L3 book and check what the feed itself implies.

Checks, per instrument:

* no ``C`` (cancel) or ``M`` (modify) names an order id that is not resting: every such event
  is a failure. Fills (``F``) of unknown ids are counted but are not failures: CME reports the
  opening-auction fills with side N against ids that the MBO stream never showed resting.
* after the book is synced, it is uncrossed at every published row (``F_LAST``) from the first
  trade on. Before the first trade the venue is in pre-open, where a crossed book is legal (the
  opening auction uncrosses it): those rows are counted in ``details`` (``preopen_crossed``),
  not judged.

``ok`` / ``total`` count the judged published book states (from the first trade on); a state is ok
when it is synced, uncrossed, and its event has no unknown-id cancel/modify.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from kernels.reference_l3 import ANOM_UNKNOWN_ORDER, CROSSED, VALID
from tapeflow.book.l3 import instrument_rows, replay_l3
from tapeflow.errors import BookError
from tapeflow.schemas.records import F_SNAPSHOT, L3_CANCEL, L3_FILL, L3_MODIFY, L3_TRADE, ORDER_EVENT
from tapeflow.wire.registry import VerifyReport

_MAX_FAILURES = 20


def verify_mbo(events: pa.Table) -> VerifyReport:
    """Check an ``order_event`` table (e.g. decoded ``.mbo.dbn.zst``) against its own consistency.

    Args:
        events: ``order_event`` rows, any number of instruments, arrival order within each.

    Returns:
        One report over all instruments: ``verified: <ok> of <total> mbo published book states``;
        ``details`` per symbol: records, snapshot records, published rows, anomaly counts,
        pre-open crossed rows and the final best bid/ask (1e-9 units).

    Raises:
        BookError: the table is not an ``order_event`` table.
    """
    if events.schema.names != ORDER_EVENT.column_names:
        raise BookError(f"verify_mbo needs an order_event table, got columns {events.schema.names}")
    ok = total = 0
    failures: list[str] = []
    details: dict[str, dict[str, object]] = {}
    for rows in instrument_rows(events):
        one = events.take(rows)
        symbol = f"{one.column('venue')[0].as_py()}/{one.column('symbol')[0].as_py()}"
        r_ok, r_total, r_failures, r_details = _verify_one(one, symbol)
        ok, total = ok + r_ok, total + r_total
        failures.extend(r_failures)
        details[symbol] = r_details
    return VerifyReport(ok=ok, total=total, what="mbo published book states",
                        failures=failures[:_MAX_FAILURES], details=details)


def _verify_one(events: pa.Table, symbol: str) -> tuple[int, int, list[str], dict[str, object]]:
    action = events.column("action").to_numpy()
    flags = events.column("flags").to_numpy()
    sequence = events.column("sequence").to_numpy()
    replay = replay_l3(events, levels=0)
    status, anomaly = replay.bbo["status"], replay.bbo["anomaly"]
    unknown = anomaly == ANOM_UNKNOWN_ORDER
    bad_ref = unknown & ((action == L3_CANCEL) | (action == L3_MODIFY))
    # an event is the run of rows up to and including its F_LAST row: spread a bad row onto it
    event_id = np.concatenate([[0], np.cumsum(replay.published[:-1])])
    bad_event = np.zeros(int(event_id[-1]) + 1, bool)
    bad_event[event_id[bad_ref]] = True
    trades = np.flatnonzero((action == L3_TRADE) | (action == L3_FILL))
    first_trade = int(trades[0]) if len(trades) else len(action)
    published = np.flatnonzero(replay.published)
    judged = published[published >= first_trade]
    preopen = published[published < first_trade]
    good = (status[judged] == VALID) & ~bad_event[event_id[judged]]
    failures = [f"{symbol}: {chr(action[i])} of unknown order id at row {i} (sequence {sequence[i]})"
                for i in np.flatnonzero(bad_ref)[:_MAX_FAILURES]]
    failures += [f"{symbol}: book {_status_name(status[i])} at published row {i} (sequence {sequence[i]})"
                 for i in judged[status[judged] != VALID][:_MAX_FAILURES]]
    last = int(published[-1]) if len(published) else len(action) - 1
    bbo = replay.bbo
    details = {
        "records": len(action),
        "snapshot_records": int(np.count_nonzero(flags & F_SNAPSHOT)),
        "published": len(published),
        "unknown_cancel_modify": int(np.count_nonzero(bad_ref)),
        "unknown_fill": int(np.count_nonzero(unknown & (action == L3_FILL))),
        "anomalies": replay.anomaly_counts,
        "preopen_published": len(preopen),
        "preopen_crossed": int(np.count_nonzero(status[preopen] == CROSSED)),
        "final_bid_px": int(bbo["bid_px"][last]) if last >= 0 else None,
        "final_ask_px": int(bbo["ask_px"][last]) if last >= 0 else None,
        "final_status": _status_name(status[last]) if last >= 0 else None,
    }
    return int(np.count_nonzero(good)), len(judged), failures, details


def _status_name(code: int) -> str:
    return {0: "valid", 1: "resync", 2: "crossed"}.get(int(code), f"status {code}")


__all__ = ["verify_mbo"]
