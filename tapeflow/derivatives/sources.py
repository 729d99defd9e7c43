"""One source per derived row: where the websocket feed and the REST polls carry the same input
for one instrument (OKX marks, Bybit open interest...), the feed's derived rows stand while the feed
carries it, and the poll's take over while it is silent (docs/derivatives.md, "Polled and streamed
rows of one instrument").

The feed and the polls keep their own derived stages (their clocks differ: a poll's event time is
its answer's, seconds behind the feed's). :class:`StreamOwner` records, per ``(venue, symbol,
input record)``, the *runs* of event time the feed carried it: its rows, each owning ``silence_ns``
of event time from its own (``[ts, ts + silence_ns)``), merged. Inside a run the stream owns the
instrument's derived rows of that input; outside (before the feed first carried it, and in a
*hole*: the feed silent for ``silence_ns``) the polls do. A derived row of the polls at a time the
stream owns is not written, nor one of the feed at a time it does not (nor their signals), so each
grid time has one source. The input records themselves are all written (each is an observation of
its own, with its own times).

A hole the polls carried (a polled input row of that instrument inside it) is two ``source_switch``
rows, like the failover stage's: ``stream -> poll`` (``stale``) at the hole's start and ``poll ->
stream`` (``recovered``) at the feed's first row after it (none while the feed stays silent). Both
times are event times: the rule is decided on event time alone, so live == batch.

The feed's hole itself is recorded as a closed ``gap`` STATUS row of the feed's venue and symbol, as
the book connectors and the failover stage record theirs (``ts_recv_ns`` .. ``until_ns``: the feed's
last row before the hole .. its first after, in event time; ``ts_event_ns`` the hole's start), so the
gap-repair sensor (``tapeflow.batch.repairs``) rebuilds the days it touches from the feed's journal.
It is written when the feed comes back; a run that ends inside a hole the polls carried
(:meth:`StreamOwner.end`) writes it up to the polls' newest row of that input.

:func:`batch_one_source` is the same rule over whole tables: with the feed's and the polls' derived
rows of the batch functions, live == batch row for row (tests/derivatives/test_one_source.py).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.errors import ConfigError
from tapeflow.schemas.records import SOURCE_SWITCH, STATUS

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
# the feed silent this long (event time) hands an instrument's input back to the polls: the live derived
# stage's staleness in the flow (10 s), so the feed's own rows of a hole are NaN rows when dropped
STREAM_SILENCE_NS = 10_000_000_000
STREAM, POLL = "stream", "poll"


class StreamOwner:
    """The runs of event time the feed carries each input of each instrument (see the module
    docstring), and the ``source_switch`` rows of the holes the polls carried.

    Args:
        silence_ns: the feed's silence (event time) that hands an input back to the polls
            (None: never; the feed owns an input from its first row on).

    Raises:
        ConfigError: a silence that is not a positive number of nanoseconds.
    """

    def __init__(self, silence_ns: int | None = STREAM_SILENCE_NS) -> None:
        if silence_ns is not None and (not isinstance(silence_ns, int) or silence_ns <= 0):
            raise ConfigError(f"the stream silence must be a positive int of ns, got {silence_ns!r}")
        self.silence_ns = silence_ns
        self.runs: dict[Owned, list[list[int]]] = {}  # [first, last] event times, sorted, apart
        self._handed: set[tuple[Owned, int]] = set()  # holes the polls carried, by the run before them
        self._switches: list[dict[str, Any]] = []
        self._gaps: list[dict[str, Any]] = []  # the feed's closed holes, as STATUS rows
        self._polled_top: dict[Owned, int] = {}  # the polls' newest event time per input
        self._ended: set[tuple[Owned, int, int]] = set()  # holes end() closed (once each)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "first" in state:  # a snapshot of the first-time-on owner: the feed owns from then on
            state = {"silence_ns": None, "runs": {k: [[t, t]] for k, t in state["first"].items()},
                     "_handed": set(), "_switches": []}
        state.setdefault("_gaps", [])  # a snapshot from before the holes' gap rows
        state.setdefault("_polled_top", {})
        state.setdefault("_ended", set())
        self.__dict__.update(state)

    # -- what the sources carried ----------------------------------------------------------

    def saw(self, tables: Mapping[str, pa.Table]) -> None:
        """Take a feed micro-batch's tables (records that feed no derived row are ignored)."""
        for key, ts in _inputs(tables):
            runs = self.runs.setdefault(key, [])
            i = self._add(runs, ts)
            if i > 0 and runs[i][0] == ts and (key, runs[i - 1][1]) in self._handed:
                self._switch_back(key, runs[i - 1][1], ts)

    def polled(self, tables: Mapping[str, pa.Table]) -> None:
        """Take a poll answer's tables: a row inside a hole of the feed records the hand-over."""
        if self.silence_ns is None:
            return
        for key, ts in _inputs(tables):
            self._polled_top[key] = max(self._polled_top.get(key, ts), ts)
            runs = self.runs.get(key)
            if not runs or ts < runs[0][0] or self.owned(key, ts):
                continue  # before the feed ever carried it the polls are the source: no switch
            i = bisect.bisect_right(runs, [ts, np.iinfo(np.int64).max]) - 1
            last = runs[i][1]
            if (key, last) in self._handed:
                continue
            self._handed.add((key, last))
            self._row(key, last + self.silence_ns, STREAM, POLL, "stale", last, -1,
                      f"{key[2]}: no row from the stream for {self.silence_ns / 1e9:g} s after {last}; "
                      f"the polls carry it")
            if i + 1 < len(runs):  # the feed is back already (a late answer)
                self._switch_back(key, last, runs[i + 1][0])

    def owned(self, key: Owned, ts: int) -> bool:
        """Whether the feed owns ``key`` at event time ``ts``."""
        runs = self.runs.get(key)
        if not runs:
            return False
        i = bisect.bisect_right(runs, [ts, np.iinfo(np.int64).max]) - 1
        if i < 0:
            return False
        return self.silence_ns is None or ts < runs[i][1] + self.silence_ns

    # -- the derived rows ------------------------------------------------------------------

    def keep(self, items: list[Item]) -> list[Item]:
        """The polls' derived items less the rows the feed owns (other items pass as they are)."""
        return self._keep(items, owned=False)

    def keep_stream(self, items: list[Item]) -> list[Item]:
        """The feed's derived items less the rows at times it does not own (in a hole)."""
        return self._keep(items, owned=True)

    def filter(self, name: str, table: pa.Table, *, owned: bool = False) -> pa.Table:
        """``table``'s rows of derived record ``name`` the feed owns (``owned``) or does not."""
        source = DERIVED_INPUT.get(name)
        if source is None or not table.num_rows:
            return table
        ok = np.array([self.owned((v, s, source), t) == owned for v, s, t in zip(
            table.column("venue").to_pylist(), table.column("symbol").to_pylist(),
            table.column("ts_event_ns").to_pylist(), strict=True)], dtype=bool)
        return table if ok.all() else table.filter(pa.array(ok))

    def switches(self) -> list[Item]:
        """The ``source_switch`` rows and the holes' ``gap`` STATUS rows recorded since the last
        call, one item each (or none)."""
        out: list[Item] = []
        for record, rows in ((SOURCE_SWITCH, self._switches), (STATUS, self._gaps)):
            if rows:
                columns = {n: [r[n] for r in rows] for n in record.column_names}
                out.append((record.name, record.table(columns)))
        self._switches, self._gaps = [], []
        return out

    def end(self) -> list[Item]:
        """End of the run: a hole the polls carried that the feed never came back from is closed at
        the polls' newest row of that input (its ``gap`` row, as :meth:`switches` gives it)."""
        for key, last in sorted(self._handed):
            runs = self.runs.get(key, [])
            i = bisect.bisect_right(runs, [last, np.iinfo(np.int64).max]) - 1
            if i >= 0 and runs[i][1] == last and i + 1 == len(runs):  # still silent since ``last``
                top = self._polled_top.get(key, -1)
                if top > last and (key, last, top) not in self._ended:
                    self._ended.add((key, last, top))
                    self._gap(key, last, top, "the run ended with the polls carrying it")
        return self.switches()

    # -- internals -------------------------------------------------------------------------

    def _keep(self, items: list[Item], *, owned: bool) -> list[Item]:
        out = []
        for name, table in items:
            kept = self.filter(name, table, owned=owned)
            if kept.num_rows:
                out.append((name, kept))
        return out

    def _add(self, runs: list[list[int]], ts: int) -> int:
        """Put ``ts`` into the runs (merging those it joins); the index of its run."""
        gap = np.iinfo(np.int64).max if self.silence_ns is None else self.silence_ns
        if runs and runs[-1][0] <= ts:  # the usual case: in order
            if ts < runs[-1][1] + gap:
                runs[-1][1] = max(runs[-1][1], ts)
                return len(runs) - 1
            runs.append([ts, ts])
            return len(runs) - 1
        i = bisect.bisect_right(runs, [ts, np.iinfo(np.int64).max]) - 1
        if i >= 0 and ts < runs[i][1] + gap:
            runs[i][1] = max(runs[i][1], ts)
        else:
            i += 1
            runs.insert(i, [ts, ts])
        while i + 1 < len(runs) and runs[i + 1][0] < runs[i][1] + gap:  # it closed a hole
            runs[i][1] = max(runs[i][1], runs.pop(i + 1)[1])
        return i

    def _switch_back(self, key: Owned, last: int, back: int) -> None:
        self._row(key, back, POLL, STREAM, "recovered", last, back,
                  f"{key[2]}: the stream carries it again after {(back - last) / 1e9:g} s")
        self._gap(key, last, back, "the stream came back")

    def _gap(self, key: Owned, last: int, until: int, why: str) -> None:
        venue, symbol, name = key
        self._gaps.append(dict(
            ts_event_ns=last, ts_recv_ns=last, venue=venue, symbol=symbol, state="gap", sequence=-1,
            until_ns=until, detail=f"stream silence: no {name} row from the stream from {last} to {until} "
                                   f"(event time, {(until - last) / 1e9:g} s; the polls carried it); {why}"))

    def _row(self, key: Owned, ts: int, frm: str, to: str, reason: str, hole_from: int, hole_to: int,
             detail: str) -> None:
        venue, symbol, name = key
        self._switches.append(dict(
            ts_event_ns=ts, ts_recv_ns=ts, venue=venue, symbol=symbol, instrument=f"{symbol}:{name}",
            from_source=frm, to_source=to, reason=reason, primary_hole_from_ns=hole_from,
            primary_hole_to_ns=hole_to, detail=detail))


def _inputs(tables: Mapping[str, pa.Table]) -> list[tuple[Owned, int]]:
    out = []
    for name, table in tables.items():
        if name not in INPUTS or not table.num_rows:
            continue
        for venue, symbol, ts in zip(table.column("venue").to_pylist(), table.column("symbol").to_pylist(),
                                     table.column("ts_event_ns").to_pylist(), strict=True):
            out.append(((venue, symbol, name), ts))
    return sorted(out, key=lambda kv: kv[1])  # in event time: a batch's order does not matter


def batch_one_source(feed_inputs: Mapping[str, pa.Table], feed_derived: Mapping[str, pa.Table],
                     poll_derived: Mapping[str, pa.Table], poll_inputs: Mapping[str, pa.Table] | None = None,
                     *, silence_ns: int | None = STREAM_SILENCE_NS) -> dict[str, pa.Table]:
    """The derived rows of a feed and of polls over whole tables, one source per row: the feed's
    (``feed_derived``, made of ``feed_inputs``) at the times it owns, the polls' ones at the others,
    and, given the polls' inputs, the ``source_switch`` and ``gap`` STATUS rows of the holes they carried."""
    owner = StreamOwner(silence_ns)
    owner.saw(feed_inputs)
    if poll_inputs is not None:
        owner.polled(poll_inputs)
    out: dict[str, pa.Table] = {}
    for items in (owner.keep_stream(list(feed_derived.items())), owner.keep(list(poll_derived.items())),
                  owner.end()):
        for name, table in items:
            if table.num_rows:
                out[name] = pa.concat_tables([out[name], table]) if name in out else table
    return out
