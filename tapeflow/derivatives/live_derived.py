"""The live stage of the derived derivatives metrics: basis and open-interest change on the micro-
batches of the live flow, equal to the batch functions of :mod:`tapeflow.derivatives.derived`.

Each instrument ``(venue, symbol)`` has its own grid, ``interval_ns`` apart, starting at the first
grid time at or after its first mark (basis) or open interest (change), and its own watermark: the
latest event time of its mark, index and open-interest rows. A grid time ``t`` is computed once
the watermark has passed ``t + lateness_ns``; every row it needs has come by then, so it is computed
by the batch function itself over the rows kept (those young enough to count: ``max_staleness_ns``,
plus ``window_ns`` for the change). :meth:`LiveDerived.flush` (end of the stream) computes the grid
up to each watermark. A row at or before its instrument's last computed grid time came too late to
count: it is a ``too_late`` dead letter (as the bars' late trades), never a silent drop; an index
at or below zero (no basis can use it) is ``out_of_range``.

:func:`batch_derived` is the same definition over a whole table set: with the rows the live stage
accepted, live == batch row for row however the stream was cut (tests/derivatives/test_live_derived.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.derivatives import derived
from tapeflow.errors import ConfigError
from tapeflow.schemas.derivatives import DERIVATIVE_BASIS, OPEN_INTEREST_CHANGE
from tapeflow.schemas.records import REJECTED, UNDEF_PRICE
from tapeflow.wire.rejects import Reason, Rejects

Key = tuple[str, str]
INPUTS = ("mark_price", "index_price", "open_interest")
_VALUE = {"mark_price": "mark_price_nanos", "index_price": "index_price_nanos",
          "open_interest": "open_interest_nanos"}


@dataclass(frozen=True)
class DerivedConfig:
    """Settings of the derived stage.

    Attributes:
        interval_ns: grid spacing.
        max_staleness_ns: the oldest a mark, index or open interest may be at a grid time.
        window_ns: look-back of the open-interest change.
        lateness_ns: how long after a grid time its rows may still arrive (event time).
    """

    interval_ns: int = 1_000_000_000
    max_staleness_ns: int = 10_000_000_000
    window_ns: int = 300_000_000_000
    lateness_ns: int = 0

    def __post_init__(self) -> None:
        for name in ("interval_ns", "max_staleness_ns", "window_ns"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"derived {name} must be > 0, got {getattr(self, name)}")
        if self.lateness_ns < 0:
            raise ConfigError(f"derived lateness_ns must be >= 0, got {self.lateness_ns}")

    @property
    def interval(self) -> str:
        """The grid as the records spell it (``1s``, ``250ms``, ``1500000ns``)."""
        for unit, ns in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
            if self.interval_ns % ns == 0:
                return f"{self.interval_ns // ns}{unit}"
        return f"{self.interval_ns}ns"


class _Instrument:
    def __init__(self) -> None:
        self.watermark_ns = -(2**62)
        self.closed_ns = -(2**62)  # last grid time computed
        self.basis_start_ns: int | None = None
        self.oi_start_ns: int | None = None


class LiveDerived:
    """Basis and open-interest change, incrementally (see the module docstring)."""

    def __init__(self, config: DerivedConfig | None = None) -> None:
        self.config = config or DerivedConfig()
        self._kept: dict[str, list[pa.Table]] = {name: [] for name in INPUTS}
        self._instruments: dict[Key, _Instrument] = {}
        self._users: dict[Key, set[Key]] = {}  # an index published under its own name -> its instruments
        self.late_rows = 0

    def __setstate__(self, state: dict) -> None:  # a snapshot from before the index names
        self.__dict__.update({"_users": {}} | state)

    def update(self, tables: dict[str, pa.Table]) -> list[tuple[str, pa.Table]]:
        """Take a micro-batch's tables (other records are ignored); the rows now computed, and
        dead letters for the rows that came too late."""
        rejects = Rejects("derived")
        touched: set[Key] = set()
        for name in INPUTS:
            table = tables.get(name)
            if table is None or not table.num_rows:
                continue
            keep = self._accept(name, table, rejects)
            if keep.num_rows:
                self._kept[name].append(keep)
                touched.update(self._advance(name, keep))
        out = self._compute(touched, final=False)
        if len(rejects):
            out.append((REJECTED.name, rejects.table()))
        return out

    def flush(self) -> list[tuple[str, pa.Table]]:
        """End of the stream: every instrument's grid up to its watermark."""
        return self._compute(set(self._instruments), final=True)

    def _accept(self, name: str, table: pa.Table, rejects: Rejects) -> pa.Table:
        ts = table.column("ts_event_ns").to_numpy()
        values = table.column(_VALUE[name]).to_numpy()
        ok = np.ones(table.num_rows, dtype=bool)
        for i, key in enumerate(_keys(table)):
            closed = self._closed_for(name, key)
            if closed is not None and ts[i] <= closed:
                why = (f"{name} at {ts[i]} came after {key[0]} {key[1]}'s grid time {closed} "
                       "was computed")
                rejects.add(Reason.TOO_LATE, why, "derived", repr(table.slice(i, 1).to_pylist()[0]),
                            ts_event_ns=int(ts[i]), symbol=key[1])
                ok[i] = False
                self.late_rows += 1
            elif name == "index_price" and values[i] != UNDEF_PRICE and values[i] <= 0:
                why = f"index {values[i]} nanos of {key[0]} {key[1]} at {ts[i]}: no basis from it"
                rejects.add(Reason.OUT_OF_RANGE, why, "derived", repr(table.slice(i, 1).to_pylist()[0]),
                            ts_event_ns=int(ts[i]), symbol=key[1])
                ok[i] = False
        return table if ok.all() else table.filter(pa.array(ok))

    def _closed_for(self, name: str, key: Key) -> int | None:
        # an index counts for its own key and for the instruments priced against it by name
        times = [self._instruments[k].closed_ns for k in (key, *self._users.get(key, ()))
                 if k in self._instruments] if name == "index_price" else \
            ([self._instruments[key].closed_ns] if key in self._instruments else [])
        return max(times) if times else None

    def _advance(self, name: str, table: pa.Table) -> set[Key]:
        ts = table.column("ts_event_ns").to_numpy()
        values = table.column(_VALUE[name]).to_numpy()
        step = self.config.interval_ns
        keys = _keys(table)
        for i, key in enumerate(keys):
            inst = self._instruments.setdefault(key, _Instrument())
            inst.watermark_ns = max(inst.watermark_ns, int(ts[i]))
            first = _ceil(int(ts[i]), step)
            if values[i] == UNDEF_PRICE:
                continue
            if name == "mark_price" and (alias := derived.index_symbol(*key)) is not None:
                self._users.setdefault((key[0], alias), set()).add(key)
            if name == "mark_price" and inst.basis_start_ns is None:
                inst.basis_start_ns = max(first, inst.closed_ns + step)
            elif name == "open_interest" and inst.oi_start_ns is None:
                inst.oi_start_ns = max(first, inst.closed_ns + step)
        return set(keys)

    def _compute(self, keys: set[Key], *, final: bool) -> list[tuple[str, pa.Table]]:
        c = self.config
        kept = {name: _concat(tables) for name, tables in self._kept.items()}
        basis_parts, oi_parts = [], []
        for key in sorted(keys):
            inst = self._instruments[key]
            end = inst.watermark_ns - (0 if final else c.lateness_ns)
            close = end - end % c.interval_ns
            if close <= inst.closed_ns:
                continue
            rows = {name: _of(table, key) for name, table in kept.items()}
            rows["index_price"] = _index_of(kept["index_price"], key)
            if inst.basis_start_ns is not None:
                grid = _grid(max(inst.basis_start_ns, inst.closed_ns + c.interval_ns), close, c.interval_ns)
                if grid.size:
                    basis_parts.append(derived.basis(rows["mark_price"], rows["index_price"], grid,
                                                     max_staleness_ns=c.max_staleness_ns))
            if inst.oi_start_ns is not None:
                grid = _grid(max(inst.oi_start_ns, inst.closed_ns + c.interval_ns), close, c.interval_ns)
                if grid.size:
                    oi_parts.append(derived.open_interest_change(
                        rows["open_interest"], grid, window_ns=c.window_ns,
                        max_staleness_ns=c.max_staleness_ns))
            inst.closed_ns = close
        self._prune()
        out = []
        if basis_parts:
            out.append((DERIVATIVE_BASIS.name, basis_record(pa.concat_tables(basis_parts), c)))
        if oi_parts:
            out.append((OPEN_INTEREST_CHANGE.name, oi_change_record(pa.concat_tables(oi_parts), c)))
        return [(n, t) for n, t in out if t.num_rows]

    def _prune(self) -> None:
        # A row older than the next grid time minus the look-back and the staleness never counts
        # again, but each instrument keeps its last row with a value: the batch functions write an
        # instrument's (stale, NaN) rows only when it has one, as it has in the whole input.
        reach = self.config.window_ns + self.config.max_staleness_ns
        for name, tables in self._kept.items():
            table = _concat(tables)
            if table is None or not table.num_rows:
                self._kept[name] = []
                continue
            keys = _keys(table)
            ts = table.column("ts_event_ns").to_numpy()
            values = table.column(_VALUE[name]).to_numpy()
            # an index under its own name is kept for the slowest of the instruments priced against it
            closed = {k: min(self._instruments[u].closed_ns for u in (k, *self._users.get(k, ()))
                             if u in self._instruments) for k in set(keys)}
            keep = ts >= np.array([closed[k] - reach for k in keys], dtype=np.int64)
            seen: set[Key] = set()
            for i in range(len(keys) - 1, -1, -1):
                if keys[i] not in seen and values[i] != UNDEF_PRICE:
                    seen.add(keys[i])
                    keep[i] = True
            self._kept[name] = [table if keep.all() else table.filter(pa.array(keep))]


def batch_derived(tables: dict[str, pa.Table], config: DerivedConfig | None = None) -> dict[str, pa.Table]:
    """The derived records of whole tables, as :class:`LiveDerived` defines them: each instrument's
    grid from its first mark (open interest) to its last mark, index or open-interest time.

    Raises:
        DerivedInputError: an index at or below zero (the live stage dead-letters it instead).
    """
    c = config or DerivedConfig()
    kept = {name: tables.get(name) for name in INPUTS}
    last: dict[Key, int] = {}
    first: dict[tuple[str, Key], int] = {}
    for name, table in kept.items():
        if table is None:
            continue
        values = table.column(_VALUE[name]).to_numpy()
        for key, ts, value in zip(_keys(table), table.column("ts_event_ns").to_pylist(), values, strict=True):
            last[key] = max(last.get(key, ts), ts)
            if name != "index_price" and (name, key) not in first and value != UNDEF_PRICE:
                first[(name, key)] = ts
    basis_parts, oi_parts = [], []
    for key in sorted(last):
        close = last[key] - last[key] % c.interval_ns
        rows = {name: _of(table, key) for name, table in kept.items()}
        rows["index_price"] = _index_of(kept["index_price"], key)
        if ("mark_price", key) in first:
            grid = _grid(_ceil(first[("mark_price", key)], c.interval_ns), close, c.interval_ns)
            basis_parts.append(derived.basis(rows["mark_price"], rows["index_price"], grid,
                                             max_staleness_ns=c.max_staleness_ns))
        if ("open_interest", key) in first:
            grid = _grid(_ceil(first[("open_interest", key)], c.interval_ns), close, c.interval_ns)
            oi_parts.append(derived.open_interest_change(rows["open_interest"], grid, window_ns=c.window_ns,
                                                         max_staleness_ns=c.max_staleness_ns))
    out = {}
    if basis_parts:
        out[DERIVATIVE_BASIS.name] = basis_record(pa.concat_tables(basis_parts), c)
    if oi_parts:
        out[OPEN_INTEREST_CHANGE.name] = oi_change_record(pa.concat_tables(oi_parts), c)
    return {n: t for n, t in out.items() if t.num_rows}


def basis_record(table: pa.Table, config: DerivedConfig) -> pa.Table:
    """``derived.basis`` rows as ``derivative_basis`` records (a null price: ``UNDEF_PRICE``)."""
    n = table.num_rows
    return DERIVATIVE_BASIS.table({
        "ts_event_ns": table.column("ts_ns"), "ts_recv_ns": table.column("ts_ns"),
        "venue": table.column("venue"), "symbol": table.column("symbol"),
        "interval": pa.array([config.interval] * n, pa.string()),
        "mark_price_nanos": pc.fill_null(table.column("mark_price_nanos"), UNDEF_PRICE),
        "index_price_nanos": pc.fill_null(table.column("index_price_nanos"), UNDEF_PRICE),
        "basis_bps": table.column("basis_bps")})


def oi_change_record(table: pa.Table, config: DerivedConfig) -> pa.Table:
    """``derived.open_interest_change`` rows as ``open_interest_change`` records."""
    n = table.num_rows
    return OPEN_INTEREST_CHANGE.table({
        "ts_event_ns": table.column("ts_ns"), "ts_recv_ns": table.column("ts_ns"),
        "venue": table.column("venue"), "symbol": table.column("symbol"),
        "interval": pa.array([config.interval] * n, pa.string()),
        "window_ns": pa.array([config.window_ns] * n, pa.int64()),
        "open_interest_nanos": pc.fill_null(table.column("open_interest_nanos"), UNDEF_PRICE),
        "change_nanos": pc.fill_null(table.column("change_nanos"), UNDEF_PRICE),
        "change_pct": table.column("change_pct")})


def _grid(start_ns: int, end_ns: int, step_ns: int) -> np.ndarray:
    return np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64) if end_ns >= start_ns else \
        np.zeros(0, dtype=np.int64)


def _keys(table: pa.Table) -> list[Key]:
    return list(zip(table.column("venue").to_pylist(), table.column("symbol").to_pylist(), strict=True))


def _ceil(ts_ns: int, step_ns: int) -> int:
    return -(-ts_ns // step_ns) * step_ns


def _concat(tables: list[pa.Table] | pa.Table | None) -> pa.Table | None:
    if tables is None or isinstance(tables, pa.Table):
        return tables
    return pa.concat_tables(tables) if tables else None


def _index_of(table: pa.Table | None, key: Key) -> pa.Table:
    # the instrument's own index rows and those published under its index's name (derived.index_symbol)
    return _of(None, key) if table is None else derived.instrument_index(table, *key)


def _of(table: pa.Table | None, key: Key) -> pa.Table:
    if table is None:
        return pa.table({"ts_event_ns": pa.array([], pa.int64()), "venue": pa.array([], pa.string()),
                         "symbol": pa.array([], pa.string()), "v": pa.array([], pa.int64())})
    mask = pc.and_(pc.equal(table.column("venue"), key[0]), pc.equal(table.column("symbol"), key[1]))
    return table.filter(mask)
