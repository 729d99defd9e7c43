"""Check builders shared by the suites.

A check is one or more Great Expectations expectations over one of three frames: ``rows`` (the
table as given: schema, nulls, raw ranges), ``derived`` (one row per table row holding columns
computed with numpy where GX has no expectation: sequence steps, skew, distance to the book) and
``day`` (one row per instrument: counts against the baseline). Every verdict is a GX result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from quality import derive
from quality.config import Baseline, QualityConfig
from quality.engine import Expect
from tapeflow.schemas.core import RecordType
from tapeflow.schemas.records import F_BAD_TS_RECV, F_GAP, UNDEF_PRICE

KEY_COLUMNS = ("ts_event_ns", "ts_recv_ns", "venue", "symbol")


@dataclass
class Check:
    """A planned check: its expectations, the frame they read, and context for the report."""

    name: str
    description: str
    frame: str
    expects: list[Expect]
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    show: tuple[str, ...] = ()


@dataclass
class Carry:
    """What planning a slice of a one-instrument partition needs from the slices before it.

    Filled by the checks as they plan each slice (``quality.slices.SlicedPlanner``): the previous
    row's time (stale intervals) and the last sequence in the chain, each day total for the
    baseline checks, and the banded prices by value (their band is the partition median's, known
    only once every slice is seen: :mod:`quality.slices` judges it then).
    """

    offset: int = 0  # rows of the slices before
    last_ts: int | None = None
    last_sequence: int | None = None
    totals: dict[str, tuple[str, int]] = field(default_factory=dict)  # check -> (baseline field, total)
    banded: dict[str, Any] = field(default_factory=dict)  # band column -> quality.slices.Band
    deferred: set[str] = field(default_factory=set)  # derived columns judged at the end, not per slice


@dataclass
class SuiteData:
    """One partition being checked, with the frames the checks fill."""

    dataset: str
    table: pa.Table
    config: QualityConfig
    day: str | None
    day_inferred: bool
    baseline: Baseline | Mapping[str, Baseline] | None = None
    book: pa.Table | None = None
    session_open: Mapping[str, int | None] | None = None
    inputs: Mapping[str, pa.Table] = field(default_factory=dict)  # record name -> rows a derived
    # dataset was computed from (the liquidation_clusters suite recounts its members in them)
    derived: dict[str, Any] = field(default_factory=dict)
    day_rows: dict[str, np.ndarray] = field(default_factory=dict)
    day_examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    # planning one slice of a partition (``quality.slices``): what the slices before it left
    carry: Carry | None = None

    def __post_init__(self) -> None:
        self.codes, self.instruments = derive.instrument_codes(self.table)
        self.prev = derive.previous_in_group(self.codes)

    def col(self, name: str) -> np.ndarray:
        return self.table.column(name).to_numpy()

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def day_instruments(self) -> list[tuple[str, str]]:
        """Instruments of the day frame: the table's, plus baseline instruments absent from it.

        A day that lost an instrument entirely must still meet its baseline (with a total of 0).
        """
        pairs = list(self.instruments)
        if isinstance(self.baseline, Mapping):
            present = {s for _, s in pairs}
            pairs += [("", s) for s in sorted(self.baseline) if s not in present]
        elif self.baseline is not None and not pairs:
            pairs.append(("", ""))
        return pairs

    def pre_open(self, state_ns: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Rows showing a book state from before the session opened, on venues with an opening auction.

        Args:
            state_ns: per row, the capture time of the book state it shows (the last event applied).

        Returns:
            (mask, details): a row is pre-open when its venue is in ``config.auction_venues``, its
            symbol has an entry in ``session_open`` and ``state_ns`` is before that instant (every
            row of the day when the entry is None: no trade, the session never opened). Details
            name the opens used.
        """
        mask = np.zeros(len(state_ns), bool)
        if self.session_open is None:
            return mask, {}
        opens: dict[str, int | None] = {}
        for code, (venue, symbol) in enumerate(self.instruments):
            if venue not in self.config.auction_venues or symbol not in self.session_open:
                continue
            open_ns = self.session_open[symbol]
            rows = self.codes == code
            mask |= rows if open_ns is None else rows & (state_ns < open_ns)
            opens[f"{venue}/{symbol}"] = open_ns
        return mask, ({"session_open_ns": opens} if opens else {})

    def put(self, name: str, values: Any) -> str:
        """Store a derived column (numpy or pandas nullable array) and return its frame name."""
        self.derived[name] = values
        return name


def nullable(values: np.ndarray, keep: np.ndarray) -> pd.arrays.IntegerArray:
    """``values`` where ``keep`` else missing (GX counts missing values as not applicable)."""
    return pd.arrays.IntegerArray(np.where(keep, values, 0).astype(np.int64), ~keep.astype(bool))


def schema(d: SuiteData, record: RecordType) -> None:
    """Column names and order, and each column's pandas dtype, as the record declares them."""
    expects = [Expect("ExpectTableColumnsToMatchOrderedList", {"column_list": record.column_names})]
    for f in record.fields:
        if f.name in d.table.column_names:
            dtype = f.numpy_dtype or "object"
            expects.append(Expect("ExpectColumnValuesToBeOfType", {"column": f.name, "type_": dtype}))
    d.add(Check("schema", f"columns, order and types of the {record.name} record", "rows", expects,
                details={"expected_columns": record.column_names}))


def not_null_keys(d: SuiteData, extra: tuple[str, ...] = ()) -> None:
    cols = [c for c in (*KEY_COLUMNS, *extra) if c in d.table.column_names]
    d.add(Check("not_null_keys", f"no missing value in the key columns {', '.join(cols)}", "rows",
                [Expect("ExpectColumnValuesToNotBeNull", {"column": c}) for c in cols]))


def codes(d: SuiteData, name: str, column: str, allowed: tuple[int, ...], what: str) -> None:
    d.add(Check(name, f"{column} is one of {', '.join(chr(a) for a in allowed)} ({what})", "rows",
                [Expect("ExpectColumnValuesToBeInSet", {"column": column, "value_set": list(allowed)})]))


def price_range(d: SuiteData, prices: dict[str, tuple[np.ndarray, np.ndarray, bool]]) -> None:
    """Prices positive, below ``max_price_nanos`` and (where banded) within ``price_band`` of the median.

    Args:
        prices: derived column name -> (prices, mask of rows where the price applies, banded).
            Resting orders and book levels are not banded: deep stub orders far from the market
            are real; executions and best prices are.
    """
    cfg = d.config
    expects, medians = [], {}
    for name, (values, keep, banded) in prices.items():
        keep = keep & (values != UNDEF_PRICE)
        col = d.put(name, nullable(values, keep))
        expects.append(Expect("ExpectColumnValuesToBeBetween",
                              {"column": col, "min_value": 1, "max_value": cfg.max_price_nanos}))
        if banded and d.carry is not None:
            # the band is the whole partition's median's: judged once every slice is seen
            band = col + "_vs_median"
            d.carry.deferred.add(band)
            from quality.slices import add_band

            add_band(d, band, values, keep)
            expects.append(Expect("ExpectColumnValuesToBeBetween",
                                  {"column": band, "min_value": 1 / (1 + cfg.price_band),
                                   "max_value": 1 + cfg.price_band}))
        elif banded and keep.any():
            median = float(np.median(values[keep]))
            medians[name] = median
            band = col + "_vs_median"
            d.put(band, np.where(keep, values / median, np.nan))
            expects.append(Expect("ExpectColumnValuesToBeBetween",
                                  {"column": band, "min_value": 1 / (1 + cfg.price_band),
                                   "max_value": 1 + cfg.price_band}))
    d.add(Check("price_range", f"prices in [1, {cfg.max_price_nanos}] nanos; executions and best prices"
                f" within x(1+{cfg.price_band}) of the partition median", "derived", expects,
                details={"median_price_nanos": medians}, show=tuple(prices)))


def size_range(d: SuiteData, sizes: dict[str, tuple[np.ndarray, np.ndarray, int]]) -> None:
    """Sizes within [min, ``max_size_nanos``]; ``sizes`` maps name -> (values, mask, minimum)."""
    expects = []
    for name, (values, keep, low) in sizes.items():
        col = d.put(name, nullable(values, keep))
        expects.append(Expect("ExpectColumnValuesToBeBetween",
                              {"column": col, "min_value": low, "max_value": d.config.max_size_nanos}))
    d.add(Check("size_range", f"sizes within their minimum and {d.config.max_size_nanos} nanos", "derived",
                expects, show=tuple(sizes)))


def flag_false(d: SuiteData, name: str, description: str, bad: np.ndarray, *, mostly: float = 1.0,
               details: dict[str, Any] | None = None, show: tuple[str, ...] = (),
               skip: np.ndarray | None = None) -> None:
    """A check whose offending rows are ``bad`` (computed exactly with integer numpy).

    Rows in ``skip`` are not judged (missing in GX terms, so not in ``element_count``).
    """
    bad = bad.astype(bool)
    col = d.put(name, bad if skip is None else pd.arrays.BooleanArray(bad & ~skip, skip.astype(bool)))
    kwargs: dict[str, Any] = {"column": col, "value_set": [False]}
    if mostly < 1.0:
        kwargs["mostly"] = mostly
    d.add(Check(name, description, "derived", [Expect("ExpectColumnValuesToBeInSet", kwargs)],
                details=details or {}, show=show))


def ts_within_day(d: SuiteData, ts_ns: np.ndarray, *, snapshot: np.ndarray | None = None) -> None:
    """Partition time (venue time, capture time where the venue gave none) inside the partition day.

    ``snapshot`` marks rows that replay resting orders with their original (earlier) venue times:
    such a row is in the day when its venue time is (the lake files it by venue time) or its
    capture time is (the capture it came with).
    """
    if d.day is None:
        d.add(Check("ts_within_day", "timestamps inside the partition day", "derived", [],
                    skipped="no timestamps to place in a day"))
        return
    start, end = derive.day_bounds(d.day)
    if snapshot is not None:
        outside = (ts_ns < start) | (ts_ns >= end)
        ts_ns = np.where(snapshot & outside, d.col("ts_recv_ns"), ts_ns)
    d.put("partition_ts_ns", ts_ns)
    # judged as the offset into the day: GX holds range bounds as float64, which cannot tell the
    # last nanosecond of a day (~1.7e18) from the next midnight; offsets stay below 2**53, and
    # every day shares one expectation
    col = d.put("ns_into_day", ts_ns - start)
    d.add(Check("ts_within_day", f"timestamps inside {d.day} UTC", "derived",
                [Expect("ExpectColumnValuesToBeBetween",
                        {"column": col, "min_value": 0, "max_value": end - start - 1})],
                details={"day": d.day, "day_inferred": d.day_inferred, "start_ns": start, "end_ns": end},
                show=("partition_ts_ns",)))


def recv_skew(d: SuiteData, keep: np.ndarray | None = None) -> None:
    """``ts_recv_ns - ts_event_ns`` within +-``recv_skew_ns`` where both clocks are known and trusted."""
    ev, rc = d.col("ts_event_ns"), d.col("ts_recv_ns")
    ok = (ev >= 0) & (rc >= 0) & ((d.col("flags") & F_BAD_TS_RECV) == 0)
    if keep is not None:
        ok &= keep
    col = d.put("recv_skew_ns", nullable(rc - ev, ok))
    bound = d.config.recv_skew_ns
    d.add(Check("recv_skew", f"|ts_recv_ns - ts_event_ns| <= {bound} ns", "derived",
                [Expect("ExpectColumnValuesToBeBetween",
                        {"column": col, "min_value": -bound, "max_value": bound})],
                details={"bound_ns": bound}, show=("recv_skew_ns",)))


def sequence_checks(d: SuiteData, *, contiguous: bool, exclude: np.ndarray | None = None,
                    gaps: bool = True) -> None:
    """``sequence_monotonic`` (never falls within an instrument) and ``sequence_gaps``.

    A gap is a row flagged F_GAP by the decoder, or, where the venue numbers every message
    (``contiguous``), a row whose sequence jumps by more than 1: ``missing_sequences`` in the
    details sums the numbers lost.
    """
    seq, flags = d.col("sequence"), d.col("flags")
    use = seq >= 0
    if exclude is not None:
        use &= ~exclude
    # the previous row that takes part (skipped rows do not break the chain)
    idx = np.flatnonzero(use)
    prev = derive.previous_in_group(d.codes[idx])
    has_prev = prev >= 0
    step = np.zeros(len(seq), np.int64)
    applies = np.zeros(len(seq), bool)
    rows = idx[has_prev]
    step[rows] = seq[rows] - seq[idx[prev[has_prev]]]
    applies[rows] = True
    if d.carry is not None and len(idx):
        # one instrument: the first row of the chain in this slice follows the last of the slices before
        if d.carry.last_sequence is not None:
            step[idx[0]] = seq[idx[0]] - d.carry.last_sequence
            applies[idx[0]] = True
        d.carry.last_sequence = int(seq[idx[-1]])
    d.put("sequence_step", nullable(step, applies))
    d.add(Check("sequence_monotonic", "sequence never decreases within an instrument", "derived",
                [Expect("ExpectColumnValuesToBeBetween", {"column": "sequence_step", "min_value": 0})],
                details={"rows_left_out": int(np.count_nonzero(exclude)) if exclude is not None else 0},
                show=("sequence_step",)))
    if not gaps:
        return
    missing = np.where(applies & contiguous, np.maximum(step - 1, 0), 0)
    gap = (missing > 0) | ((flags & F_GAP) != 0)
    d.put("missing_before", missing)
    flag_false(d, "sequence_gaps",
               "no sequence gap: no F_GAP row" + (" and sequence rises by at most 1" if contiguous else ""),
               gap, details={"missing_sequences": int(missing.sum()),
                             "f_gap_rows": int(((flags & F_GAP) != 0).sum()), "contiguous": contiguous},
               show=("sequence_step", "missing_before"))


def stale_intervals(d: SuiteData, ts_ns: np.ndarray, *, age_ns: np.ndarray | None = None) -> None:
    """No silence longer than ``stale_interval_ns`` between consecutive rows of an instrument.

    ``age_ns``, when given, is added as a second reading of staleness per row (a snapshot grid
    carries the book forward, so its silence shows as the age of the last change).
    """
    has = d.prev >= 0
    silence = np.zeros(len(ts_ns), np.int64)
    silence[has] = ts_ns[has] - ts_ns[d.prev[has]]
    if d.carry is not None and len(ts_ns):
        # one instrument: the slice's first row follows the last row of the slices before
        if d.carry.last_ts is not None:
            silence[0], has[0] = ts_ns[0] - d.carry.last_ts, True
        d.carry.last_ts = int(ts_ns[-1])
    if age_ns is not None:
        silence = np.maximum(silence, age_ns)
        has = np.ones(len(ts_ns), bool)
    col = d.put("silence_ns", nullable(silence, has))
    bound = d.config.stale_interval_ns
    d.add(Check("stale_intervals", f"no silence over {bound} ns between rows of an instrument", "derived",
                [Expect("ExpectColumnValuesToBeBetween", {"column": col, "max_value": bound})],
                details={"bound_ns": bound, "longest_silence_ns": int(silence.max()) if len(silence) else 0},
                show=("silence_ns",)))


def crossed_book(d: SuiteData, bid: np.ndarray, ask: np.ndarray, state_ns: np.ndarray) -> None:
    """Best bid < best ask wherever both sides exist (see :func:`crossed_rows` for the pre-open)."""
    both = (bid != UNDEF_PRICE) & (ask != UNDEF_PRICE)
    d.put("best_bid_nanos", bid)
    d.put("best_ask_nanos", ask)
    crossed_rows(d, both & (bid >= ask), both, state_ns,
                 f"best bid < best ask (crossed rate <= {d.config.crossed_rate_max})",
                 show=("best_bid_nanos", "best_ask_nanos"))


def crossed_rows(d: SuiteData, crossed: np.ndarray, both: np.ndarray, state_ns: np.ndarray,
                 description: str, *, show: tuple[str, ...]) -> None:
    """The ``crossed_book`` check over rows flagged ``crossed``; up to ``crossed_rate_max`` may cross.

    On a venue with an opening auction (``config.auction_venues``) the pre-open book is an auction
    book, legally crossed until the opening match uncrosses it (CME ES 2023-12-25: 891 of 925
    pre-open published states). Given the session opens (``SuiteData.session_open``: the day's
    first trade), rows whose book state (``state_ns``: capture time of its last event) is from
    before the open are not judged; their crossings are counted in ``pre_open_crossed``. Every
    crossing from the open on fails, with its exact count.
    """
    pre_open, session = d.pre_open(state_ns)
    details: dict[str, Any] = {"both_sides_rows": int(both.sum()), **session}
    if session:
        details |= {"pre_open_rows": int(pre_open.sum()), "pre_open_crossed": int((crossed & pre_open).sum()),
                    "session_rule": "auction venue: book states captured before the session open (the"
                                    " day's first trade) are the pre-open auction: counted, not judged"}
    flag_false(d, "crossed_book", description, crossed, mostly=1.0 - d.config.crossed_rate_max,
               details=details, show=show, skip=pre_open if pre_open.any() else None)


def vs_baseline(d: SuiteData, name: str, totals: dict[int, int], field_name: str) -> None:
    """The day's total per instrument against the trailing baseline, as a z-score within +-z_max."""
    if d.carry is not None:
        # one instrument (code 0): the day's total adds up over the slices, judged at the end
        _, total = d.carry.totals.get(name, (field_name, 0))
        d.carry.totals[name] = (field_name, total + totals.get(0, 0))
        return
    cfg = d.config
    instruments = d.day_instruments()
    z = np.full(len(instruments), np.nan)
    rows: list[dict[str, Any]] = [{} for _ in instruments]
    for code, (venue, symbol) in enumerate(instruments):
        b = d.baseline.get(symbol) if isinstance(d.baseline, Mapping) else d.baseline
        days, mean, std = b.summarize(field_name) if b is not None else (0, math.nan, math.nan)
        if days < cfg.baseline_min_days or not math.isfinite(mean):
            continue
        value = totals.get(code, 0)
        # a flat baseline (std 0) makes any change infinitely unlikely: report it as such
        if value == mean:
            z[code] = 0.0
        else:
            z[code] = (value - mean) / std if std > 0 else np.copysign(np.inf, value - mean)
        rows[code] = {"venue": venue, "symbol": symbol, "value": value, "baseline_mean": mean,
                      "baseline_std": std, "baseline_days": days, "z": float(z[code])}
    what = "rows" if field_name == "row_counts" else "traded volume"
    desc = f"the day's {what} within {cfg.baseline_z_max} standard deviations of the baseline"
    if np.isnan(z).all():
        d.add(Check(name, desc, "day", [], skipped=f"no baseline of at least {cfg.baseline_min_days} days"))
        return
    col = f"{name}_z"
    d.day_rows[col] = z
    d.day_examples[col] = rows
    d.add(Check(name, desc, "day",
                [Expect("ExpectColumnValuesToBeBetween",
                        {"column": col, "min_value": -cfg.baseline_z_max, "max_value": cfg.baseline_z_max})],
                details={"instruments": [r for r in rows if r]}, show=(col,)))


def totals_by_instrument(codes: np.ndarray, values: np.ndarray | None = None) -> dict[int, int]:
    """Sum of ``values`` (or the row count) per instrument code, exactly in int64."""
    if values is None:
        counts = np.bincount(codes) if len(codes) else np.zeros(0, np.int64)
        return {i: int(c) for i, c in enumerate(counts)}
    out: dict[int, int] = {}
    for code in np.unique(codes):
        out[int(code)] = int(values[codes == code].sum())
    return out
