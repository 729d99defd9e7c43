"""Group ``options``: Deribit captures in landing -> each underlying-day's option tickers and IV surfaces.

Partitions are UTC day x underlying (``deribit.BTC``: :func:`day_by_underlying`), registered by the
options sensor (``dagster_project.sensors.options_sensor``) from ``<landing>/deribit/``. Wiring
only: :mod:`tapeflow.options.landing` finds the captures holding the day and decodes them
(:mod:`tapeflow.options.deribit`, priced by :mod:`tapeflow.options.chain`), builds the day's
surfaces (:func:`tapeflow.options.surface.surfaces`, stored by ``surface_records``), and the one
writer (:class:`tapeflow.storage.writer.Writer`) replaces both records in the lake and ClickHouse.
``option_ticker`` files under its option symbol (``BTC-9APR21-58000-C``), so a partition replaces
every option-symbol partition of its underlying and day: those decoded now and those an earlier
run wrote. The ``no_arbitrage`` check counts calendar, butterfly and put-call parity violations;
it warns (``AssetCheckSeverity.WARN``, non-blocking): the marks of a live venue break them by
noise, and a surface with a violation is still the venue's surface.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    multi_asset,
)

from assets import checks
from assets.ingest import RETRY
from assets.partitions import DECLARED_FIRST_DAY, instrument_key, parse_instrument_key
from assets.resources import TapeflowResource
from tapeflow.batch.stats import partition_stats
from tapeflow.batch.targets import Target
from tapeflow.errors import BadInput
from tapeflow.options.instruments import parse_option_name
from tapeflow.options.landing import (
    CHECKS,
    OptionIndex,
    UnderlyingDay,
    capture_files,
    day_rows,
    surface_facts,
)
from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
from tapeflow.storage import lake as lake_store
from tapeflow.storage.writer import Writer

__all__ = ["CHECK", "GROUP", "UNDERLYINGS", "UNDERLYINGS_NAME", "day_by_underlying", "option_surfaces",
           "underlying_days", "underlying_key"]

GROUP = "options"
UNDERLYINGS_NAME = "option_underlyings"
UNDERLYINGS = DynamicPartitionsDefinition(name=UNDERLYINGS_NAME)
CHECK = "no_arbitrage"


def day_by_underlying(first: str) -> MultiPartitionsDefinition:
    """UTC days from ``first`` (``YYYY-MM-DD``) to today included, times the registered underlyings."""
    return MultiPartitionsDefinition({
        "date": DailyPartitionsDefinition(start_date=first, end_offset=1),
        "underlying": UNDERLYINGS,
    })


def underlying_key(venue: str, underlying: str) -> str:
    """The partition key of an underlying (``deribit.BTC``: the instrument keys' encoding)."""
    return instrument_key(venue, underlying)


def partition_key(want: UnderlyingDay) -> MultiPartitionKey:
    """The multi-partition key of one underlying-day."""
    return MultiPartitionKey({"date": want.date, "underlying": underlying_key(want.venue, want.underlying)})


def underlying_days(partition_keys: Sequence[str]) -> list[UnderlyingDay]:
    """The underlying-days of a run's partition keys (one key, or every key of a range)."""
    out = set()
    for key in partition_keys:
        if isinstance(key, MultiPartitionKey):
            date, underlying = key.keys_by_dimension["date"], key.keys_by_dimension["underlying"]
        else:
            date, _, underlying = key.partition("|")
        out.add(UnderlyingDay(date, *parse_instrument_key(underlying)))
    return sorted(out)


@multi_asset(
    specs=[
        AssetSpec("option_tickers", group_name=GROUP, kinds={"parquet", "clickhouse"},
                  description="Deribit option tickers with our Black-76 implied vol of the mark price and "
                              "delta beside the venue's (one lake partition per option symbol).",
                  metadata={"lake_dataset": OPTION_TICKER.name}),
        AssetSpec("option_surfaces", group_name=GROUP, deps=["option_tickers"],
                  kinds={"parquet", "clickhouse"},
                  description="Implied-vol surfaces per underlying, 1-minute snapshot and expiry: ATM IV, "
                              "25-delta RR and BF, total variance, no-arbitrage counts.",
                  metadata={"lake_dataset": OPTION_SURFACE.name}),
    ],
    check_specs=[AssetCheckSpec(CHECK, asset="option_surfaces", blocking=False,
                                description="Calendar, butterfly and put-call parity violations of the "
                                            "surfaces (warns, never blocks)."),
                 *checks.specs("option_tickers"), *checks.specs("option_surfaces")],
    partitions_def=day_by_underlying(DECLARED_FIRST_DAY),
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=True,  # the check yields nothing when no point could be checked (Dagster: Skipped)
)
def option_surfaces(context: AssetExecutionContext,
                    tapeflow: TapeflowResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Decode each underlying-day's captures, price and store its tickers, build and store its surfaces."""
    wanted = underlying_days(context.partition_keys)
    lake = tapeflow.lake
    index = OptionIndex(lake)
    index.refresh(capture_files(tapeflow.landing))
    facts: dict[UnderlyingDay, dict[str, Any]] = {}
    plans: dict[str, dict[Target, Any]] = {"option_tickers": {}, "option_surfaces": {}}
    chosen = {k.to_user_string() for k in context.selected_asset_keys}
    with Writer(lake, tapeflow.dsn) as writer:
        for want in wanted:
            files = index.holding(want)
            rows = day_rows(files, want)
            symbols = set(rows.tickers.column("symbol").to_pylist()) | _stored_symbols(lake, want)
            ticker_slices = [(want.venue, s, want.date) for s in sorted(symbols)]
            tick = writer.replace(OPTION_TICKER, rows.tickers, partitions=ticker_slices)
            surf = writer.replace(OPTION_SURFACE, rows.surfaces,
                                  partitions=[(want.venue, want.underlying, want.date)])
            stats = partition_stats(rows.tickers)
            instruments = len(set(rows.tickers.column("symbol").to_pylist()))
            dead = _counts(rows.rejected.column("reason").to_pylist())
            key = partition_key(want)
            facts[want] = surface_facts(rows.surfaces)
            # the quality suites, keyed by the partition (its tickers span the underlying's options)
            t = Target(want.date, want.venue, want.underlying)
            for asset, table in (("option_tickers", rows.tickers), ("option_surfaces", rows.surfaces)):
                if checks.selected(context, asset):
                    plans[asset][t] = checks.plan(asset, table, lake, t)
            if "option_tickers" in chosen:
                context.add_asset_metadata({
                    "dagster/row_count": stats["rows"], "instruments": instruments,
                    **{k: stats[k] for k in ("first_event", "last_event", "span_s") if k in stats},
                    "captures": MetadataValue.json([f.name for f in files]),
                    "capture_rejects_by_reason": MetadataValue.json(dead),
                    "bytes_written": sum(w.bytes_written for w in tick.partitions),
                    "iv_reasons": MetadataValue.json(_counts(rows.tickers.column("iv_reason").to_pylist())),
                }, asset_key="option_tickers", partition_key=key)
            if "option_surfaces" in chosen:
                shown = {k: v for k, v in facts[want].items() if v is not None}
                context.add_asset_metadata({"dagster/row_count": rows.surfaces.num_rows, **shown,
                                            "bytes_written": sum(w.bytes_written for w in surf.partitions)},
                                           asset_key="option_surfaces", partition_key=key)
    run = {"partitions_in_run": len(wanted)}
    for asset in ("option_tickers", "option_surfaces"):  # a subset run writes both, reports its own
        if asset in chosen:
            yield MaterializeResult(asset_key=asset, metadata=run)
    yield from checks.finish_all({a: p for a, p in plans.items() if p}, lake, context=context)
    if any(k.name == CHECK for k in context.selected_asset_check_keys):
        result = no_arbitrage(facts)
        if result is None:
            context.log.info(f"{CHECK}: no point could be checked on any partition of the run (every "
                             "expiry too thin: no strike with both a call and a put, no three strikes, no "
                             "two overlapping smiles); no result, so Dagster shows the check Skipped")
        else:
            yield result


def no_arbitrage(facts: dict[UnderlyingDay, dict[str, Any]]) -> AssetCheckResult | None:
    """The check over a run's partitions: passed when no violation; None when nothing was checked."""
    totals = {f"{c}_{p}": sum(int(f[f"{c}_{p}"]) for f in facts.values())
              for c in CHECKS for p in ("violations", "checked")}
    if not any(totals[f"{c}_checked"] for c in CHECKS):
        return None
    violations = sum(totals[f"{c}_violations"] for c in CHECKS)
    failing = [str(partition_key(w)) for w, f in sorted(facts.items())
               if any(f[f"{c}_violations"] for c in CHECKS)]
    return AssetCheckResult(
        check_name=CHECK, asset_key="option_surfaces", passed=violations == 0,
        severity=AssetCheckSeverity.WARN,
        description=", ".join(f"{c} {totals[f'{c}_violations']}/{totals[f'{c}_checked']}" for c in CHECKS),
        metadata={**totals, "violations": violations, "partitions": len(facts),
                  "partitions_with_violations": MetadataValue.json(failing)})


def _stored_symbols(lake: Path, want: UnderlyingDay) -> set[str]:
    """The option symbols of ``want``'s underlying the lake already holds on its day."""
    out = set()
    for _, symbol, _, _ in lake_store.partitions(OPTION_TICKER, lake, venue=want.venue, date=want.date):
        try:
            if parse_option_name(symbol).underlying == want.underlying:
                out.add(symbol)
        except BadInput:
            continue
    return out


def _counts(values: list[str]) -> dict[str, int]:
    return {v: values.count(v) for v in sorted(set(values))}
