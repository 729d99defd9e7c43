"""The cost guard: every historical request is priced, judged against the budgets, and ledgered.

:class:`CostGuard.fetch` asks ``metadata.get_cost`` and ``metadata.get_billable_size`` first, adds
what the spend ledger says was spent the same UTC day and calendar month, and refuses the request
(:class:`OverBudget`, nothing requested) when either total would pass its budget; otherwise it
streams ``timeseries.get_range`` into the landing folder (``<landing>/dbn/databento/...``, where the
landing sensor picks it up for the backfill). Every decision is one ``databento_spend`` row, written
through the one writer (:class:`tapeflow.storage.writer.Writer`) to the lake and, when a DSN is
given, ClickHouse. The lake's ledger is what later requests add up.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.errors import TapeflowError
from tapeflow.schemas.databento import DATABENTO_SPEND
from tapeflow.settings import DatabentoSettings
from tapeflow.storage import lake as lake_store
from tapeflow.venues.databento.historical import DatabentoApiError, HistoricalClient, RangeRequest

log = logging.getLogger(__name__)

NS = 1_000_000_000


class OverBudget(TapeflowError):
    """A request whose estimate would pass the daily or monthly budget (the ledger has its row)."""

    def __init__(self, message: str, row: dict[str, Any]) -> None:
        super().__init__(message)
        self.row = row


@dataclass(frozen=True)
class Spent:
    """What the ledger says was spent before a request: the same UTC day and calendar month."""

    day_usd: float
    month_usd: float


def spent_before(ledger: pa.Table, now_ns: int) -> Spent:
    """Sum the ``spent`` rows of ``ledger`` on ``now_ns``'s UTC day and calendar month."""
    if not ledger.num_rows:
        return Spent(0.0, 0.0)
    outcome = np.asarray(ledger.column("outcome").to_pylist(), dtype=object)
    when = ledger.column("ts_event_ns").to_numpy()
    cost = ledger.column("estimate_usd").to_numpy()
    now = dt.datetime.fromtimestamp(now_ns / NS, dt.UTC)
    day0 = int(dt.datetime(now.year, now.month, now.day, tzinfo=dt.UTC).timestamp()) * NS
    month0 = int(dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC).timestamp()) * NS
    spent = (outcome == "spent") & (when <= now_ns)
    return Spent(float(cost[spent & (when >= day0)].sum()), float(cost[spent & (when >= month0)].sum()))


def landing_path(landing: Path, request: RangeRequest) -> Path:
    """Where ``request``'s data lands: ``<landing>/dbn/databento/<dataset>/<schema>/...dbn.zst``."""
    symbols = "-".join(request.symbols) or "ALL_SYMBOLS"
    name = f"{symbols}_{request.start_ns}_{request.end_ns}.{request.schema}.dbn.zst"
    return Path(landing) / "dbn" / "databento" / request.dataset / request.schema / name


class CostGuard:
    """Price, judge, fetch and ledger historical requests.

    Args:
        client: the historical API client.
        settings: the budgets (``daily_budget_usd``, ``monthly_budget_usd``).
        lake: the lake root holding the ledger (``databento_spend``).
        clickhouse_dsn: also load each ledger row into ClickHouse (None: the lake only).
        clock: wall clock, ns (tests pass a fixed one).
    """

    def __init__(self, client: HistoricalClient, settings: DatabentoSettings, lake: Path, *,
                 clickhouse_dsn: str | None = None, clock: Callable[[], int] = time.time_ns) -> None:
        self.client = client
        self.settings = settings
        self.lake = Path(lake)
        self.clickhouse_dsn = clickhouse_dsn
        self.clock = clock

    def ledger(self) -> pa.Table:
        """Every ledger row in the lake."""
        return lake_store.read(DATABENTO_SPEND, self.lake)

    def fetch(self, request: RangeRequest, landing: Path, why: str) -> dict[str, Any]:
        """Price ``request``, refuse it over budget, else land its data; ledger the outcome.

        A settled range the client's pull cache holds is landed from it with no request at all: a
        ``cached`` ledger row (estimate 0, never counted against a budget) and a log line say so.
        A real ``get_range`` is ledgered ``spent`` exactly once.

        Returns:
            the ledger row written (``outcome`` ``spent`` or ``cached``).

        Raises:
            OverBudget: the estimate would pass a budget (a ``refused`` row was written).
            DatabentoApiError: the API failed (a ``failed`` row was written when the price was known).
        """
        now = self.clock()
        path = landing_path(landing, request)
        cached = self.client.cached_range(request)
        if cached is not None:  # a settled range pulled before: nothing requested, nothing spent
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(path.name + ".part")
            part.write_bytes(cached)
            os.replace(part, path)
            row = self._row(request, now, 0.0, 0, spent_before(self.ledger(), now), why)
            row.update(outcome="cached", bytes_received=len(cached), path=str(path), ts_recv_ns=self.clock(),
                       detail="served from the pull cache: no request, no spend")
            log.info("Databento %s: served from the pull cache (%s bytes), nothing spent",
                     _describe(request), f"{len(cached):,}")
            self._write(row)
            return row
        cost = self.client.get_cost(request)
        size = self.client.get_billable_size(request)
        spent = spent_before(self.ledger(), now)
        s = self.settings
        row = self._row(request, now, cost, size, spent, why)
        over = None
        if spent.day_usd + cost > s.daily_budget_usd:
            over = ("over_daily_budget", f"daily budget ${s.daily_budget_usd:,.2f} "
                                         f"(${spent.day_usd:,.4f} spent today)")
        elif spent.month_usd + cost > s.monthly_budget_usd:
            over = ("over_monthly_budget", f"monthly budget ${s.monthly_budget_usd:,.2f} "
                                           f"(${spent.month_usd:,.4f} spent this month)")
        if over is not None:
            message = (f"Databento request refused: {_describe(request)} is estimated at ${cost:,.4f} "
                       f"({size:,} billable bytes), over the {over[1]}")
            row.update(outcome="refused", reason=over[0], detail=message, ts_recv_ns=self.clock())
            self._write(row)
            raise OverBudget(message, row)
        try:
            received = self.client.get_range(request, path)
        except DatabentoApiError as exc:
            row.update(outcome="failed", reason=exc.reason, detail=str(exc), ts_recv_ns=self.clock())
            self._write(row)
            raise
        row.update(outcome="spent", bytes_received=received, path=str(path), ts_recv_ns=self.clock())
        self._write(row)
        self.client.keep_range(request, path)  # a settled range: the next ask is served from the cache
        return row

    def _row(self, request: RangeRequest, now: int, cost: float, size: int, spent: Spent,
             why: str) -> dict[str, Any]:
        return dict(ts_event_ns=now, ts_recv_ns=now, venue=request.dataset,
                    symbol=request.symbols[0] if request.symbols else "", request_id=request.request_id,
                    endpoint="timeseries.get_range", schema=request.schema, symbols=",".join(request.symbols),
                    start_ns=request.start_ns, end_ns=request.end_ns, estimate_usd=cost, billable_bytes=size,
                    outcome="", reason="", why=why, daily_budget_usd=self.settings.daily_budget_usd,
                    monthly_budget_usd=self.settings.monthly_budget_usd, spent_day_usd=spent.day_usd,
                    spent_month_usd=spent.month_usd, bytes_received=0, path="", detail="")

    def _write(self, row: dict[str, Any]) -> None:
        from tapeflow.storage.writer import Writer

        writer = Writer(self.lake, self.clickhouse_dsn)
        try:
            table = DATABENTO_SPEND.table({k: [row[k]] for k in DATABENTO_SPEND.column_names})
            writer.append(DATABENTO_SPEND, table)
        finally:
            writer.close()


def _describe(request: RangeRequest) -> str:
    start = dt.datetime.fromtimestamp(request.start_ns / NS, dt.UTC).isoformat()
    end = dt.datetime.fromtimestamp(request.end_ns / NS, dt.UTC).isoformat()
    return (f"timeseries.get_range {request.dataset} {request.schema} "
            f"{','.join(request.symbols) or 'ALL_SYMBOLS'} {start}..{end}")


def guard_from_settings(settings: DatabentoSettings, lake: Path, *, clickhouse_dsn: str | None = None,
                        clock: Callable[[], int] = time.time_ns) -> CostGuard:
    """A :class:`CostGuard` on the settings' API key and historical URL.

    Raises:
        ConfigError: no API key is configured.
    """
    from tapeflow.errors import ConfigError

    if settings.api_key is None:
        raise ConfigError("no Databento API key: set DATABENTO_API_KEY or DATABENTO_API_KEY_FILE")
    from tapeflow.pullcache import cache_from_env

    # settled ranges' answers from the pull cache (TAPEFLOW_PULL_CACHE; Globex: the project's ES data)
    client = HistoricalClient(settings.api_key, settings.historical_url, cache=cache_from_env("cme_globex"))
    return CostGuard(client, settings, lake, clickhouse_dsn=clickhouse_dsn, clock=clock)


def ledger_markdown(ledger: pa.Table, last: int = 10) -> str:
    """The last ``last`` ledger rows as a Markdown table (Dagster metadata, the demo)."""
    rows = ledger.sort_by("ts_event_ns").to_pylist()[-last:]
    lines = ["| when (UTC) | request | estimate | billable | outcome | why |", "|---|---|---|---|---|---|"]
    for r in rows:
        when = dt.datetime.fromtimestamp(r["ts_event_ns"] / NS, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        what = f"{r['venue']} {r['schema']} {r['symbols']}"
        outcome = r["outcome"] + (f" ({r['reason']})" if r["reason"] else "")
        lines.append(f"| {when} | {what} | ${r['estimate_usd']:,.4f} | {r['billable_bytes']:,} B | {outcome} "
                     f"| {r['why']} |")
    return "\n".join(lines)
