"""Which instrument-days a live-flow health window asks to rebuild.

The live flow records feed health as ``status`` rows (``tapeflow.schemas.records.STATUS``): a window
from ``ts_recv_ns`` to ``until_ns`` in a state. A closed window in a state that may have lost or
corrupted data needs the days it touches rebuilt from the journal or the vendor files.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa

from tapeflow.storage.lake import NS_PER_DAY, day_of

# STATUS states whose window needs the affected days rebuilt from the journal or vendor files.
REPAIR_STATES = frozenset({"gap", "degraded", "resyncing", "checksum_mismatch", "stale", "disconnected"})


def closed_windows(status: pa.Table) -> Iterator[dict]:
    """The rows of ``status`` that are closed windows (``until_ns`` >= 0) in a :data:`REPAIR_STATES` state."""
    states = np.asarray(status.column("state").to_pylist(), dtype=object)
    for i in np.flatnonzero(np.isin(states, list(REPAIR_STATES))):
        row = status.slice(int(i), 1).to_pylist()[0]
        if row["until_ns"] >= 0:
            yield row


def window_days(start_ns: int, end_ns: int) -> list[str]:
    """Every UTC day (``YYYY-MM-DD``) a window touches (a window across midnight: both days)."""
    lo, hi = min(start_ns, end_ns) // NS_PER_DAY, max(start_ns, end_ns) // NS_PER_DAY
    return [day_of(d * NS_PER_DAY) for d in range(lo, hi + 1)]


def repair_days(window: dict, venue: str, symbol: str, instruments: Iterable[tuple[str, str]]
                ) -> set[tuple[str, str, str]]:
    """The ``(date, venue, symbol)`` instrument-days one window asks to rebuild.

    A window of a status file without a symbol (a venue-wide connection state) touches every known
    instrument of the venue.
    """
    symbols = [symbol] if symbol else [s for v, s in instruments if v == venue]
    return {(d, venue, s) for s in symbols for d in window_days(window["ts_recv_ns"], window["until_ns"])}
