"""Partitions: one UTC day x one instrument (venue + symbol), instruments registered when first seen.

Days run from a first day to today. The asset decorators carry :data:`DAY_BY_INSTRUMENT` (from
:data:`DECLARED_FIRST_DAY`); the Definitions (``dagster_project.definitions``) re-partition every
asset with :func:`day_by_instrument` from the first day that is configured
(``TAPEFLOW_PARTITIONS_START``) or where the data starts, so the UI shows the days that can hold
data, not every day since 2012. Instrument keys: :func:`tapeflow.batch.targets.instrument_key`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    PartitionsDefinition,
)

from tapeflow.batch.targets import Target, instrument_key, parse_instrument_key
from tapeflow.errors import ConfigError

__all__ = [
    "DAY_BY_INSTRUMENT", "INSTRUMENTS", "INSTRUMENTS_NAME", "Target", "day_by_instrument", "first_day",
    "instrument_key", "parse_instrument_key", "partition_key", "target_key", "targets",
]

INSTRUMENTS_NAME = "instruments"
# The oldest real data the project reads (LOBSTER AMZN) is from 2012-06-21: the declaration's
# first day, which the Definitions replace with the configured or data-derived one.
DECLARED_FIRST_DAY = "2012-06-01"

INSTRUMENTS = DynamicPartitionsDefinition(name=INSTRUMENTS_NAME)


def day_by_instrument(first: str) -> MultiPartitionsDefinition:
    """UTC days from ``first`` (``YYYY-MM-DD``) to today included, times the registered instruments."""
    return MultiPartitionsDefinition({
        "date": DailyPartitionsDefinition(start_date=first, end_offset=1),
        "instrument": INSTRUMENTS,
    })


DAY_BY_INSTRUMENT = day_by_instrument(DECLARED_FIRST_DAY)


def first_day(partitions: PartitionsDefinition | None) -> str | None:
    """The first day of a :func:`day_by_instrument` definition (None for anything else)."""
    if not isinstance(partitions, MultiPartitionsDefinition):
        return None
    for dim in partitions.partitions_defs:
        if isinstance(dim.partitions_def, DailyPartitionsDefinition):
            return dim.partitions_def.start.date().isoformat()
    return None


def partition_key(date: str, venue: str, symbol: str) -> MultiPartitionKey:
    """The multi-partition key of one instrument-day."""
    return MultiPartitionKey({"date": date, "instrument": instrument_key(venue, symbol)})


def target_key(t: Target) -> MultiPartitionKey:
    """The multi-partition key of a target."""
    return partition_key(t.date, t.venue, t.symbol)


def targets(partition_keys: Sequence[str]) -> list[Target]:
    """The targets of a run's partition keys (one key, or every key of a single-run range)."""
    out = []
    for key in partition_keys:
        dims = key.keys_by_dimension if isinstance(key, MultiPartitionKey) else _split_key(key)
        venue, symbol = parse_instrument_key(dims["instrument"])
        out.append(Target(dims["date"], venue, symbol))
    return sorted(set(out))


def _split_key(key: str) -> dict[str, str]:
    date, sep, instrument = key.partition("|")
    if not sep:
        raise ConfigError(f"partition key {key!r} is not <date>|<instrument>")
    return {"date": date, "instrument": instrument}
