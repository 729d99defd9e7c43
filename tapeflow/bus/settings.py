"""The bus's ``TAPEFLOW_BUS*`` settings, read once at the flow's entry point (``flow_from_env``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tapeflow.errors import ConfigError
from tapeflow.schemas import ALL_RECORDS

# dead letters stay in the lake and the warehouse: their raw bytes are no live data for other programs
DEFAULT_TABLES = tuple(name for name in ALL_RECORDS if name != "rejected")
SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class BusSettings:
    """Where and what the live flow publishes (docs/bus.md).

    Attributes:
        url: ``redis://host:port[/db]`` (``TAPEFLOW_BUS``; ``tapeflow live --bus``), or None: no Redis.
        maxlen: approximate ``MAXLEN`` of each stream (``TAPEFLOW_BUS_MAXLEN``, 100000; 0: none).
        tables: record names published (``TAPEFLOW_BUS_TABLES``, comma separated; default all but
            ``rejected``).
        prefix: prepended to every stream name (``TAPEFLOW_BUS_PREFIX``).
        retry_s: an outage longer than this dead-letters the waiting rows (``TAPEFLOW_BUS_RETRY_S``, 60).
        buffer_rows: most rows waiting for Redis (``TAPEFLOW_BUS_BUFFER_ROWS``, 100000).
        dead_letters: the dead-letter file (``TAPEFLOW_BUS_DEAD_LETTERS``; default
            ``<lake>/_bus/dead_letters.jsonl``).
        kafka_brokers: Kafka ``host:port`` bootstrap servers (``TAPEFLOW_KAFKA_BROKERS``, comma
            separated; ``tapeflow live --kafka``); empty: no Kafka.
    """

    url: str | None
    dead_letters: Path
    maxlen: int = 100_000
    tables: tuple[str, ...] = DEFAULT_TABLES
    prefix: str = ""
    retry_s: float = 60.0
    buffer_rows: int = 100_000
    kafka_brokers: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, lake_dir: Path, env: Mapping[str, str] | None = None) -> BusSettings | None:
        """The bus settings, or None when neither ``TAPEFLOW_BUS`` nor ``TAPEFLOW_KAFKA_BROKERS`` is set.

        Raises:
            ConfigError: a bad value (names its variable).
        """
        env = os.environ if env is None else env
        url = env.get("TAPEFLOW_BUS", "").strip()
        brokers = tuple(b.strip() for b in env.get("TAPEFLOW_KAFKA_BROKERS", "").split(",") if b.strip())
        if not url and not brokers:
            return None
        bad = [b for b in brokers if not b.rpartition(":")[2].isdigit()]
        if bad:
            raise ConfigError(f"TAPEFLOW_KAFKA_BROKERS takes host:port, comma separated, got {bad}")
        scheme = url.partition("://")[0]
        if url and (scheme not in SCHEMES or "://" not in url):
            raise ConfigError(f"TAPEFLOW_BUS must be a redis://host:port URL, got scheme {scheme!r}")
        tables = tuple(t.strip() for t in env.get("TAPEFLOW_BUS_TABLES", "").split(",") if t.strip())
        unknown = sorted(set(tables) - set(ALL_RECORDS))
        if unknown:
            raise ConfigError(f"TAPEFLOW_BUS_TABLES names no record type: {unknown}")
        dead = env.get("TAPEFLOW_BUS_DEAD_LETTERS") or str(lake_dir / "_bus" / "dead_letters.jsonl")
        return cls(url=url or None, kafka_brokers=brokers, dead_letters=Path(dead),
                   maxlen=_number(env, "TAPEFLOW_BUS_MAXLEN", 100_000),
                   tables=tables or DEFAULT_TABLES, prefix=env.get("TAPEFLOW_BUS_PREFIX", ""),
                   retry_s=float(_number(env, "TAPEFLOW_BUS_RETRY_S", 60)),
                   buffer_rows=_number(env, "TAPEFLOW_BUS_BUFFER_ROWS", 100_000))


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number >= 0, got {text!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be a whole number >= 0, got {value}")
    return value
