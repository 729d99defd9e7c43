"""The failover config file: sources (one connector each) and, per logical instrument, its sources
in priority order with each source's own symbol (docs/failover.md, ``docs/failover.example.toml``).

::

    [failover]
    stale_after = "2s"    # no row of the active source for this long (arrival clock): switch
    hold = "10s"          # a preferred source must stay healthy this long before it is taken back
    lookback = "60s"      # how long a standby source's rows are kept for a switch to it
    start_grace = "10s"   # how long the primary has to become healthy at start before it is left
    degraded_after = "1s" # a source's feed latency this far above its own baseline: degraded
    warm_books = false    # true: every source's book rows pass (each keeps its own book warm)

    [sources.binance]
    venue = "binance"
    options = { market = "usdm" }

    [sources.bybit]
    venue = "bybit"
    endpoint = "wss://stream.bybit.com"

    [instruments.BTC-PERP]
    sources = ["binance:BTCUSDT", "bybit:BTCUSDT"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.timeutil import parse_duration_ns
from tapeflow.tomlconfig import KeyLocator, read_toml

_KNOBS = {"stale_after": "2s", "hold": "10s", "lookback": "60s", "start_grace": "10s", "degraded_after": "1s"}
_SOURCE_KEYS = {"venue", "endpoint", "rest_endpoint", "options", "connector"}


@dataclass(frozen=True)
class SourceSpec:
    """One connection the failover stage reads.

    Attributes:
        name: the config's name of the source (``from_source`` / ``to_source`` of a switch).
        venue: the connector (``tapeflow.venues.<venue>.client``).
        endpoint, rest_endpoint: websocket and REST base URLs (None: the venue's own).
        options: connector keyword arguments, sorted ``(key, value)`` pairs.
        connector: :class:`tapeflow.live.connector.ConnectorSettings` fields (``stale_after_s``,
            ``backoff_initial_s``...), sorted ``(key, value)`` pairs.
    """

    name: str
    venue: str
    endpoint: str | None = None
    rest_endpoint: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    connector: tuple[tuple[str, Any], ...] = ()

    def client_options(self) -> dict[str, Any]:
        """The connector's keyword arguments, its session-loop settings included."""
        out = dict(self.options)
        if self.connector:
            from tapeflow.live.connector import ConnectorSettings

            out["settings"] = ConnectorSettings(**dict(self.connector))
        return out


@dataclass(frozen=True)
class InstrumentSpec:
    """One logical instrument: its ``(source name, venue symbol)`` legs, the primary first."""

    instrument: str
    legs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FailoverConfig:
    """The whole file, checked.

    Attributes:
        sources: every source, in file order.
        instruments: every logical instrument.
        stale_after_ns: an active source with no data row for this long (arrival clock) is stale.
        hold_ns: a source of higher priority than the active one is taken back after being
            healthy for this long.
        lookback_ns: a standby source's rows are kept this long (arrival clock) for a switch.
        start_grace_ns: at start, the primary is not left before this long (connect, subscribe
            and the first snapshot take a moment, and the fallback may be quicker).
        warm_books: ``book_delta`` and ``order_event`` rows of every source pass, so each source's
            book stays warm (needs distinct venue/symbol pairs across the legs of an instrument).
        degraded_after_ns: the stage's latency circuit breaker, one per source: an instrument of a
            source whose batch median feed latency (``ts_recv - ts_event``) is this far above the
            source's own baseline is ``degraded`` (``tapeflow.live.failover.SourceLatency``).
    """

    sources: tuple[SourceSpec, ...]
    instruments: tuple[InstrumentSpec, ...]
    stale_after_ns: int = 2_000_000_000
    hold_ns: int = 10_000_000_000
    lookback_ns: int = 60_000_000_000
    warm_books: bool = False
    start_grace_ns: int = 10_000_000_000
    degraded_after_ns: int = 1_000_000_000

    def source(self, name: str) -> SourceSpec:
        """The source called ``name``."""
        return next(s for s in self.sources if s.name == name)

    def symbols_of(self, name: str) -> list[str]:
        """The venue symbols source ``name`` subscribes to, in first-use order."""
        out: list[str] = []
        for spec in self.instruments:
            for source, symbol in spec.legs:
                if source == name and symbol not in out:
                    out.append(symbol)
        return out


def load_failover(path: Path | str) -> FailoverConfig:
    """Read and check a failover config file.

    Raises:
        ConfigError: unreadable, not TOML, or a bad value (the message names file, line and key).
    """
    path = Path(path)
    text, doc = read_toml(path, "failover config")
    return parse_failover(doc, KeyLocator(path, text))


def parse_failover(doc: dict[str, Any], where: KeyLocator) -> FailoverConfig:
    """Check a parsed failover document (see the module docstring for its shape).

    Raises:
        ConfigError: an unknown key, a bad duration, an unknown source, an instrument with fewer
            than two legs, a source without instruments.
    """
    knobs = doc.get("failover", {})
    _only(knobs, {*_KNOBS, "warm_books"}, "failover", where)
    durations = {}
    for key, default in _KNOBS.items():
        value = knobs.get(key, default)
        try:
            durations[key] = parse_duration_ns(str(value))
        except ConfigError as exc:
            raise where.fail(f"failover.{key}", str(exc)) from None
    warm = knobs.get("warm_books", False)
    if not isinstance(warm, bool):
        raise where.fail("failover.warm_books", f"must be true or false, got {warm!r}")
    _only(doc, {"failover", "sources", "instruments"}, "", where)
    sources = tuple(_source(name, body, where) for name, body in _table(doc, "sources", where).items())
    names = {s.name for s in sources}
    instruments = tuple(_instrument(name, body, names, where)
                        for name, body in _table(doc, "instruments", where).items())
    used = {src for spec in instruments for src, _ in spec.legs}
    for name in sorted(names - used):
        raise where.fail(f"sources.{name}.venue", "no instrument uses this source")
    config = FailoverConfig(sources, instruments, durations["stale_after"], durations["hold"],
                            durations["lookback"], warm, durations["start_grace"],
                            durations["degraded_after"])
    if warm:
        for spec in instruments:
            pairs = [(config.source(src).venue, sym) for src, sym in spec.legs]
            if len(set(pairs)) < len(pairs):
                raise where.fail(f"instruments.{spec.instrument}.sources",
                                 "warm_books needs a different venue or symbol per source (one book each)")
    return config


def _table(doc: dict[str, Any], key: str, where: KeyLocator) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict) or not value:
        raise where.fail(f"{key}.", f"the failover config needs a [{key}.NAME] table")
    return value


def _only(body: Any, allowed: set[str], prefix: str, where: KeyLocator) -> None:
    if not isinstance(body, dict):
        raise where.fail(f"{prefix}.", "must be a table")
    for key in body:
        if key not in allowed:
            dotted = f"{prefix}.{key}" if prefix else key
            raise where.fail(dotted, f"unknown key (known: {', '.join(sorted(allowed))})")


def _source(name: str, body: Any, where: KeyLocator) -> SourceSpec:
    _only(body, _SOURCE_KEYS, f"sources.{name}", where)
    venue = body.get("venue")
    if not isinstance(venue, str) or not venue:
        raise where.fail(f"sources.{name}.venue", "names the connector, e.g. \"binance\"")
    options = body.get("options", {})
    if not isinstance(options, dict):
        raise where.fail(f"sources.{name}.options", "must be a table of connector keyword arguments")
    for key in ("endpoint", "rest_endpoint"):
        if key in body and not isinstance(body[key], str):
            raise where.fail(f"sources.{name}.{key}", f"must be a URL string, got {body[key]!r}")
    connector = body.get("connector", {})
    if not isinstance(connector, dict):
        raise where.fail(f"sources.{name}.connector", "must be a table of session-loop settings")
    if connector:
        import dataclasses

        from tapeflow.live.connector import ConnectorSettings

        known = {f.name for f in dataclasses.fields(ConnectorSettings)}
        for key in connector:
            if key not in known:
                raise where.fail(f"sources.{name}.connector.{key}",
                                 f"unknown setting (known: {', '.join(sorted(known))})")
    return SourceSpec(name, venue, body.get("endpoint"), body.get("rest_endpoint"),
                      tuple(sorted(options.items())), tuple(sorted(connector.items())))


def _instrument(name: str, body: Any, sources: set[str], where: KeyLocator) -> InstrumentSpec:
    _only(body, {"sources"}, f"instruments.{name}", where)
    legs_text = body.get("sources")
    dotted = f"instruments.{name}.sources"
    if not isinstance(legs_text, list) or len(legs_text) < 2:
        raise where.fail(dotted, "lists at least two \"SOURCE:SYMBOL\" legs, the primary first")
    legs = []
    for leg in legs_text:
        source, sep, symbol = str(leg).partition(":")
        if not sep or not symbol:
            raise where.fail(dotted, f"{leg!r} is not SOURCE:SYMBOL")
        if source not in sources:
            known = ", ".join(sorted(sources))
            raise where.fail(dotted, f"{leg!r}: no [sources.{source}] table (known: {known})")
        legs.append((source, symbol))
    if len({src for src, _ in legs}) < len(legs):
        raise where.fail(dotted, "lists a source twice")
    return InstrumentSpec(name, tuple(legs))
