"""Thresholds of the quality checks (``QualityConfig``) and the day-level baseline they compare to."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tapeflow.schemas.records import SCALE

_MINUTE_NS = 60 * SCALE


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds for every check; the defaults suit a normal crypto or futures trading day.

    Attributes:
        recv_skew_ns: ``recv_skew`` bound on ``|ts_recv_ns - ts_event_ns|`` (5 s): a capture clock
            or a queue that far behind the venue makes latency-sensitive features wrong.
        crossed_rate_max: ``crossed_book`` share of quotes/snapshots allowed to have bid >= ask (0:
            a rebuilt book must never cross; a venue BBO feed that may lock briefly can raise it).
        trade_in_book_tolerance_bps: ``trade_inside_book`` band around the prevailing bid/ask, in
            basis points of the price (10 bps): a sweep prints beyond the best level, and trade and
            book streams arrive out of step in a fast market (on the Binance capture 7.5% of trades
            sit 5-10 bps outside the bookTicker BBO prevailing at capture time, none beyond 10).
        trade_outside_rate_max: share of judged trades allowed outside that band (0).
        trade_in_book_max_age_ns: a quote older than this (60 s) does not "prevail"; trades with no
            fresh quote are not judged.
        stale_interval_ns: ``stale_intervals`` longest allowed silence between consecutive rows of
            one instrument (60 s): longer means a dead feed or a lost file.
        baseline_z_max: ``rows_vs_baseline`` / ``volume_vs_baseline`` largest allowed |z-score| of the
            day against its trailing baseline (4: about one false alarm a year on normal days).
        baseline_min_days: fewer baseline days than this and the baseline checks pass as "no
            baseline" (a z-score of 3 days means nothing).
        max_price_nanos: ``price_range`` upper bound (1e9 units): above it a scale or decimal error.
        price_band: ``price_range`` relative band around the partition's median price (0.5: a price
            below median/1.5 or above median*1.5 is a fat finger or a decode error).
        max_size_nanos: ``size_range`` upper bound (1e12 units).
        contiguous_sequence: per dataset, the venues whose ``sequence`` rises by exactly 1 per
            message within an instrument, so a jump > 1 is a lost message (elsewhere only the
            decoders' F_GAP flags count as gaps).
        auction_venues: venues whose session opens with a call auction (CME Globex, Nasdaq, ICE,
            ...): their pre-open book is legally crossed until the opening match, so
            ``crossed_book`` counts, without judging, the book states from before the session open
            it is given (``run_suite(session_open_ns=...)``). Continuous venues (crypto) are absent:
            every crossing there fails.
    """

    recv_skew_ns: int = 5 * SCALE
    crossed_rate_max: float = 0.0
    trade_in_book_tolerance_bps: float = 10.0
    trade_outside_rate_max: float = 0.0
    trade_in_book_max_age_ns: int = _MINUTE_NS
    stale_interval_ns: int = _MINUTE_NS
    baseline_z_max: float = 4.0
    baseline_min_days: int = 5
    max_price_nanos: int = 10**9 * SCALE
    price_band: float = 0.5
    max_size_nanos: int = 10**12 * SCALE
    contiguous_sequence: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: {
            # not LOBSTER: a hidden execution (type 5) numbers a message yet makes a trade, no order
            # event, so its order events skip those numbers (AAPL's first 999: 61 of them)
            "order_events": frozenset({"sim"}),
            "trades": frozenset({"binance-usdm", "binance-futures", "binance"}),
        }
    )
    auction_venues: frozenset[str] = frozenset({
        "GLBX.MDP3", "XNAS.ITCH", "XNYS.PILLAR", "XBOS.ITCH", "XPSX.ITCH", "IFEU.IMPACT", "NDEX.IMPACT",
        "XEUR.EOBI", "lobster",
    })


@dataclass(frozen=True)
class Baseline:
    """Trailing per-day totals of one dataset and instrument (e.g. the 20 days before the partition).

    Either the history itself or, where only its summary is kept (the derived ``baseline``
    record), ``summary``: field name -> (days, mean, sample std).

    Attributes:
        row_counts: rows per baseline day.
        volumes_nanos: traded volume per baseline day, 1e-9 units (trades and bars; empty otherwise).
        summary: precomputed statistics, used instead of the history for the fields it names.
    """

    row_counts: Sequence[int] = ()
    volumes_nanos: Sequence[int] = ()
    summary: Mapping[str, tuple[int, float, float]] = field(default_factory=dict)

    @property
    def days(self) -> int:
        return self.summarize("row_counts")[0]

    def summarize(self, name: str) -> tuple[int, float, float]:
        """(days, mean, sample std) of ``row_counts`` or ``volumes_nanos``."""
        if name in self.summary:
            return self.summary[name]
        values = list(getattr(self, name))
        return (len(values), *self.stats(values))

    @staticmethod
    def stats(values: Sequence[int]) -> tuple[float, float]:
        """Mean and sample standard deviation (0 for fewer than 2 values)."""
        n = len(values)
        if n == 0:
            return math.nan, math.nan
        mean = sum(values) / n
        if n < 2:
            return mean, 0.0
        var = sum((v - mean) ** 2 for v in values) / (n - 1)
        return mean, math.sqrt(var)
