"""One unit of batch work: a UTC day of one instrument, and its reversible instrument key.

Instrument keys are ``<venue>.<symbol>`` with both parts URI-percent-encoded so the key is safe
as a Dagster partition key and a path component (no ``|`` ``,`` ``[`` ``]`` ``...`` or control
characters) and reversible: the venue also encodes ``.`` (``GLBX.MDP3`` -> ``GLBX%2EMDP3``), so
the first ``.`` always separates venue from symbol, and the symbol encodes ``/``
(``XBT/USD`` -> ``XBT%2FUSD``). Examples: ``binance-usdm.BTCUSDT``, ``GLBX%2EMDP3.ESH4``,
``sim.SIM-BTCUSDT``, ``kraken.XBT%2FUSD``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, unquote

from tapeflow.errors import ConfigError


def instrument_key(venue: str, symbol: str) -> str:
    """The key of one instrument (see the module docstring for the encoding).

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

    def history(self, days: int) -> Iterator[Target]:
        """The same instrument on each of the ``days`` days before, latest first."""
        day = self
        for _ in range(days):
            day = day.previous()
            yield day

    @property
    def instrument(self) -> str:
        """The instrument key (:func:`instrument_key`)."""
        return instrument_key(self.venue, self.symbol)

    def __str__(self) -> str:
        return f"{self.date}|{self.venue}/{self.symbol}"
