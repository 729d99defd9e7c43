"""Health windows -> the instrument-days to rebuild: closed windows in a lossy state only."""

from __future__ import annotations

from tapeflow.batch.repairs import closed_windows, repair_days, window_days
from tapeflow.schemas.records import STATUS

NS = 1_000_000_000
DAY0_NS = 1_704_067_200 * NS  # 2024-01-01


def test_closed_lossy_windows_and_the_days_they_touch() -> None:
    rows = [("gap", DAY0_NS + 86_340 * NS, DAY0_NS + 86_460 * NS),  # two minutes across midnight
            ("synced", DAY0_NS, DAY0_NS + NS),                       # healthy
            ("degraded", DAY0_NS, -1)]                               # still open
    status = STATUS.table({"ts_event_ns": [r[1] for r in rows], "ts_recv_ns": [r[1] for r in rows],
                           "venue": ["v"] * 3, "symbol": [""] * 3, "state": [r[0] for r in rows],
                           "sequence": [-1] * 3, "until_ns": [r[2] for r in rows], "detail": [""] * 3})
    [window] = list(closed_windows(status))
    assert window["state"] == "gap"
    assert window_days(window["ts_recv_ns"], window["until_ns"]) == ["2024-01-01", "2024-01-02"]
    # no symbol: every known instrument of the venue, none of another venue
    known = [("v", "A"), ("v", "B"), ("w", "A")]
    assert repair_days(window, "v", "", known) == {(d, "v", s) for d in ("2024-01-01", "2024-01-02")
                                                   for s in "AB"}
    assert repair_days(window, "v", "A", known) == {("2024-01-01", "v", "A"), ("2024-01-02", "v", "A")}
