"""A recorded Level 1 session made from lookup ticks: what IQConnect streamed as those trades printed.

No IQConnect service is reachable here and no recorded IQConnect stream is published, so the
replay server's Level 1 tape is built from real lookup ticks: each tick becomes the ``Q`` update
IQConnect sends for it (the client's field set, :data:`tapeflow.venues.iqfeed.client.FIELDS`),
captured at the tick's own time, after the server's answers to the protocol and field selection.
Decoding the session gives the ticks' trades back (price, size, time, TickID, aggressor): the
oracle of the live tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.iqfeed import history, values
from tapeflow.venues.iqfeed.messages import DEFAULT_L1_FIELDS, TRADE_BASES
from tapeflow.venues.iqfeed.parse import read_lines

SESSION_FIELDS = (*DEFAULT_L1_FIELDS, "TickID", "Most Recent Trade Date", "Most Recent Trade Aggressor")


def l1_session_lines(ticks: Sequence[Path], *, limit: int | None = None) -> list[bytes]:
    """``<recv_ns> <line>`` lines of a Level 1 session replaying the trade ticks of ``ticks`` in time
    order (the first ``limit`` of them)."""
    rows = []
    for path in ticks:
        for member, line in read_lines(Path(path)):
            f = line.payload.decode("ascii").split(",")
            if f and f[-1] == "":
                f.pop()
            if history.row_kind(f) == history.TICKS and f[7] in TRADE_BASES:
                rows.append((values.timestamp_ns(f[0]), int(f[6]), history.file_symbol(member, str(path)), f))
    rows.sort(key=lambda r: (r[0], r[1]))
    rows = rows[:limit] if limit is not None else rows
    if not rows:
        return []
    first = rows[0][0]
    out = [b"%d S,CURRENT PROTOCOL,6.2," % (first - 2),
           b"%d S,CURRENT UPDATE FIELDNAMES,%s," % (first - 1, ",".join(SESSION_FIELDS).encode())]
    quote: dict[str, tuple[str, str]] = {}
    for ts, _, symbol, f in rows:
        stamp, _, clock = f[0].partition(" ")
        day = dt.date.fromisoformat(stamp)
        changed = quote.get(symbol) != (f[4], f[5])
        quote[symbol] = (f[4], f[5])
        contents = f[7] + ("ba" if changed else "")
        q = (f"Q,{symbol},{f[1]},{f[2]},{clock},{f[8]},{f[3]},{f[4]},,{f[5]},,,,,,{contents},{f[9]},{f[6]},"
             f"{day:%m/%d/%Y},{f[10]},")
        out.append(b"%d %s" % (ts, q.encode()))
    return out


def write_l1_session(ticks: Sequence[Path], out: Path, *, limit: int | None = None) -> int:
    """Write :func:`l1_session_lines` to ``out``; returns the number of ``Q`` lines."""
    lines = l1_session_lines(ticks, limit=limit)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"".join(line + b"\n" for line in lines))
    return max(0, len(lines) - 2)
