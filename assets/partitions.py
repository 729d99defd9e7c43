"""Partitions: one UTC day x one instrument (venue + symbol), instruments registered when first seen.

Instrument keys are ``<venue>.<symbol>`` with both parts URI-percent-encoded so the key is safe in
Dagster (no ``|`` ``,`` ``[`` ``]`` ``...`` or control characters) and reversible: the venue also
encodes ``.`` (``GLBX.MDP3`` -> ``GLBX%2EMDP3``), so the first ``.`` always separates venue from
symbol, and the symbol encodes ``/`` (``XBT/USD`` -> ``XBT%2FUSD``). Examples:
``binance-usdm.BTCUSDT``, ``GLBX%2EMDP3.ESH4``, ``sim.SIM-BTCUSDT``, ``kraken.XBT%2FUSD``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from dagster import (
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
)

from tapeflow.errors import ConfigError

INSTRUMENTS_NAME = "instruments"
# The oldest real data the project reads (LOBSTER AMZN) is from 2012-06-21.
FIRST_DAY = "2012-06-01"

DAILY = DailyPartitionsDefinition(start_date=FIRST_DAY, end_offset=1)
INSTRUMENTS = DynamicPartitionsDefinition(name=INSTRUMENTS_NAME)
DAY_BY_INSTRUMENT = MultiPartitionsDefinition({"date": DAILY, "instrument": INSTRUMENTS})


def instrument_key(venue: str, symbol: str) -> str:
    """The dynamic partition key of one instrument (see the module docstring for the encoding).

    Raises:
        ConfigError: an empty venue or symbol (a rejected row without a symbol is no instrument).
    """
    if not venue or not symbol:
        raise ConfigError(f"an instrument needs a venue and a symbol, got {venue!r} / {symbol!r}")
    encoded_symbol = quote(symbol, safe="-_.~")
    if "..." in encoded_symbol:
        encoded_symbol = encoded_symbol.replace(".", "%2E")
    return f"{quote(venue, safe='-_~').replace('.', '%2E')}.{encoded_symbol}"


def parse_instrument_key(key: str) -> tuple[str, str]:
    """``(venue, symbol)`` of an instrument key made by :func:`instrument_key`.

    Raises:
        ConfigError: the key has no ``.`` separating venue and symbol.
    """
    venue, sep, symbol = key.partition(".")
    if not sep or not venue or not symbol:
        raise ConfigError(f"instrument key {key!r} is not <venue>.<symbol>")
    return unquote(venue), unquote(symbol)


@dataclass(frozen=True, order=True)
class Target:
    """One partition to build: a UTC day (``YYYY-MM-DD``) of one instrument."""

    date: str
    venue: str
    symbol: str

    def previous(self) -> Target:
        """The same instrument the day before."""
        day = dt.date.fromisoformat(self.date) - dt.timedelta(days=1)
        return Target(day.isoformat(), self.venue, self.symbol)

    @property
    def key(self) -> MultiPartitionKey:
        return MultiPartitionKey({"date": self.date, "instrument": instrument_key(self.venue, self.symbol)})

    def __str__(self) -> str:
        return f"{self.date}|{self.venue}/{self.symbol}"


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


def partition_key(date: str, venue: str, symbol: str) -> MultiPartitionKey:
    """The multi-partition key of one instrument-day."""
    return Target(date, venue, symbol).key
