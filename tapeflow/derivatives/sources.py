"""One source per derived row: where the websocket feed and the REST polls carry the same input
for one instrument (OKX marks, Bybit open interest...), the feed's derived rows stand and the
poll's give way (docs/derivatives.md, "Polled and streamed rows of one instrument").

The feed and the polls keep their own derived stages (their clocks differ: a poll's event time is
its answer's, seconds behind the feed's). :class:`StreamOwner` records, per ``(venue, symbol,
input record)``, the earliest event time the feed has carried; a row the poll's stages derive for
that instrument from that input at or after that time is not written (nor its signals): the stream
wins, the poll is the fallback for every instrument and metric the feed does not carry, and for the
times before the feed first carried it. The input records themselves are all written (each is an
observation of its own, with its own times).

:func:`batch_one_source` is the same rule over whole tables: with the feed's and the polls' derived
rows of the batch functions, live == batch row for row (tests/derivatives/test_one_source.py).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

Item = tuple[str, pa.Table]
Owned = tuple[str, str, str]  # (venue, symbol, input record)

# each derived row (record, or the insurance stress rows that feed the signals) -> the input it is made of
DERIVED_INPUT: dict[str, str] = {
    "derivative_basis": "mark_price",
    "open_interest_change": "open_interest",
    "liquidation_cluster": "liquidation",
    "insurance_stress": "insurance_fund",
}
INPUTS = frozenset(DERIVED_INPUT.values())


class StreamOwner:
    """The inputs the feed carries, per instrument, from the earliest event time it carried them."""

    def __init__(self) -> None:
        self.first: dict[Owned, int] = {}

    def saw(self, tables: Mapping[str, pa.Table]) -> None:
        """Take a feed micro-batch's tables (records that feed no derived row are ignored)."""
        for name, table in tables.items():
            if name not in INPUTS or not table.num_rows:
                continue
            venues = table.column("venue").to_pylist()
            symbols = table.column("symbol").to_pylist()
            for venue, symbol, ts in zip(venues, symbols, table.column("ts_event_ns").to_pylist(),
                                         strict=True):
                key = (venue, symbol, name)
                self.first[key] = min(self.first.get(key, ts), ts)

    def keep(self, items: list[Item]) -> list[Item]:
        """The polls' derived items less the rows the feed owns (other items pass as they are)."""
        out = []
        for name, table in items:
            kept = self.filter(name, table)
            if kept.num_rows:
                out.append((name, kept))
        return out

    def filter(self, name: str, table: pa.Table) -> pa.Table:
        """``table``'s rows of derived record ``name`` that the feed does not own."""
        source = DERIVED_INPUT.get(name)
        if source is None or not self.first or not table.num_rows:
            return table
        never = np.iinfo(np.int64).max
        since = np.array([self.first.get((v, s, source), never) for v, s in zip(
            table.column("venue").to_pylist(), table.column("symbol").to_pylist(), strict=True)],
            dtype=np.int64)
        ok = table.column("ts_event_ns").to_numpy() < since
        return table if ok.all() else table.filter(pa.array(ok))


def batch_one_source(feed_inputs: Mapping[str, pa.Table], feed_derived: Mapping[str, pa.Table],
                     poll_derived: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """The derived rows of a feed and of polls over whole tables, one source per row: the feed's
    (``feed_derived``, made of ``feed_inputs``) and the polls' ones the feed does not own."""
    owner = StreamOwner()
    owner.saw(feed_inputs)
    out = {name: table for name, table in feed_derived.items() if table.num_rows}
    for name, table in poll_derived.items():
        kept = owner.filter(name, table)
        if kept.num_rows:
            out[name] = pa.concat_tables([out[name], kept]) if name in out else kept
    return out
