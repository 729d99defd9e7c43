"""Configuration, read once at entry points from ``TAPEFLOW_*`` variables (never at import)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError


@dataclass(frozen=True)
class Settings:
    """Where tapeflow reads and writes.

    Attributes:
        lake_dir: root of the Parquet lake (``TAPEFLOW_LAKE``).
        clickhouse_dsn: ``chdb:<relative dir>``, ``chdb:///<absolute dir>`` (embedded engine) or
            ``http(s)://host:8123``
            (``TAPEFLOW_CLICKHOUSE``).
        real_data: the shared real-data folder (``TAPEFLOW_REAL_DATA``).
        signals_config: the detectors' thresholds file (``TAPEFLOW_SIGNALS_CONFIG``; None: the
            default shipped in ``tapeflow/signals/thresholds.toml``).
        alerts_config: the alert rules and channels file (``TAPEFLOW_ALERTS_CONFIG``; None: no
            alerts; ``docs/alerts.md``).
    """

    lake_dir: Path = Path("lake")
    clickhouse_dsn: str = "chdb:warehouse"
    real_data: Path = Path("../shared/data")
    signals_config: Path | None = None
    alerts_config: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            lake_dir=Path(env.get("TAPEFLOW_LAKE", str(default.lake_dir))),
            clickhouse_dsn=env.get("TAPEFLOW_CLICKHOUSE", default.clickhouse_dsn),
            real_data=Path(env.get("TAPEFLOW_REAL_DATA", str(default.real_data))),
            signals_config=Path(env["TAPEFLOW_SIGNALS_CONFIG"]) if env.get("TAPEFLOW_SIGNALS_CONFIG")
            else None,
            alerts_config=Path(env["TAPEFLOW_ALERTS_CONFIG"]) if env.get("TAPEFLOW_ALERTS_CONFIG") else None,
        )


CLOCKS = ("auto", "wall", "relative", "none")  # TAPEFLOW_LIVE_CLOCK (see LiveSettings.health_clock)
OUTPUTS = ("lake", "clickhouse", "none")
# Rows per micro-batch of a capture (a live feed's batches are what arrived, whatever this is).
# 20,000 rather than 5,000: a batch's fixed cost through the stages is 1-3 ms on a sparse or L3
# capture (grid rows, bars, metric samples, book state per batch), so a 4x larger batch replays
# the LOBSTER AMZN day and the simulator feed ~1.6-2x faster (docs/live-ops.md, bench.live).
DEFAULT_BATCH_EVENTS = 20_000
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


@dataclass(frozen=True)
class LiveSettings:
    """The live flow's ``TAPEFLOW_LIVE_*`` variables (``docs/live.md``), read once by
    ``flows.market.flow_from_env`` (what ``tapeflow live`` starts).

    Attributes:
        venue: live connector (``TAPEFLOW_LIVE_VENUE``).
        format_name: format of the capture files (``TAPEFLOW_LIVE_FORMAT``, default the venue).
        symbols: the connector's symbols (``TAPEFLOW_LIVE_SYMBOLS``, comma separated).
        endpoint, rest_endpoint: websocket / REST base URLs (``TAPEFLOW_LIVE_ENDPOINT``,
            ``TAPEFLOW_LIVE_REST_ENDPOINT``).
        capture: files to replay (``TAPEFLOW_LIVE_CAPTURE``, ``os.pathsep`` separated).
        journal: journal root of a live feed (``TAPEFLOW_LIVE_JOURNAL``; ``none``: no journal).
        duration_ns, idle_stop_ns: stop a live feed after a time / when idle.
        levels: snapshot depth (``TAPEFLOW_LIVE_LEVELS``).
        snapshot_interval_ns: snapshot and metric grid (``TAPEFLOW_LIVE_INTERVAL``).
        intervals: bar intervals (``TAPEFLOW_LIVE_BARS``; None: the 15 standard ones).
        batch_events: most rows per micro-batch of a capture (``TAPEFLOW_LIVE_BATCH_EVENTS``).
        batch_ns: most capture time per micro-batch of a capture (``TAPEFLOW_LIVE_BATCH_TIME``;
            None, the default: no time bound, a replay runs as fast as it goes).
        outputs: ``lake`` and/or ``clickhouse`` (``TAPEFLOW_LIVE_OUTPUTS``; ``none``: neither).
        bbo_as_quote: store the rebuilt BBO as ``quote`` rows (``TAPEFLOW_LIVE_BBO_AS_QUOTE``).
        raw: store the decoded input records too (``TAPEFLOW_LIVE_RAW``).
        signals: run the signals stage after the metrics (``TAPEFLOW_LIVE_SIGNALS``; off by
            default until its cost per batch is fixed: docs/live.md).
        degraded_ns: latency circuit breaker threshold (``TAPEFLOW_LIVE_DEGRADED_MS``).
        client_options: connector keyword arguments (``TAPEFLOW_LIVE_CLIENT_OPTIONS``, JSON object).
        progress_s: seconds between progress lines (``TAPEFLOW_LIVE_PROGRESS_S``).
        clock: what health judges latency against (``TAPEFLOW_LIVE_CLOCK``, one of :data:`CLOCKS`).
        metrics_port: Prometheus port (``TAPEFLOW_LIVE_METRICS_PORT``; None: no endpoint).
        publish: loopback ``HOST:PORT`` the dashboard's relay subscribes to (``TAPEFLOW_LIVE_PUBLISH``;
            None: not published; docs/dashboard.md).
    """

    venue: str = ""
    format_name: str = ""
    symbols: tuple[str, ...] = ()
    endpoint: str | None = None
    rest_endpoint: str | None = None
    capture: tuple[Path, ...] = ()
    journal: Path | None = Path("journal")
    duration_ns: int | None = None
    idle_stop_ns: int | None = None
    levels: int = 10
    snapshot_interval_ns: int = 1_000_000_000
    intervals: tuple[str, ...] | None = None
    batch_events: int = DEFAULT_BATCH_EVENTS
    batch_ns: int | None = None
    outputs: tuple[str, ...] = ("lake", "clickhouse")
    bbo_as_quote: bool = False
    raw: bool = True
    signals: bool = False
    degraded_ns: int = 1_000_000_000
    client_options: tuple[tuple[str, Any], ...] = ()
    progress_s: float = 2.0
    clock: str = "auto"
    metrics_port: int | None = None
    publish: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveSettings:
        """Read and check the ``TAPEFLOW_LIVE_*`` variables.

        Raises:
            ConfigError: a value that does not parse or is out of range (the message names the
                variable), or neither a capture nor a venue + symbols.
        """
        from tapeflow.derived.bars import STANDARD_INTERVALS, interval_ns

        env = os.environ if env is None else env
        get = env.get
        venue = get("TAPEFLOW_LIVE_VENUE", "")
        capture = tuple(Path(p) for p in get("TAPEFLOW_LIVE_CAPTURE", "").split(os.pathsep) if p)
        symbols = _csv(get("TAPEFLOW_LIVE_SYMBOLS", ""))
        if not capture and not (venue and symbols):
            raise ConfigError("set TAPEFLOW_LIVE_CAPTURE (files to replay) or TAPEFLOW_LIVE_VENUE and "
                              "TAPEFLOW_LIVE_SYMBOLS (a live feed)")
        outputs = _csv(get("TAPEFLOW_LIVE_OUTPUTS", "lake,clickhouse"))
        unknown = sorted(set(outputs) - set(OUTPUTS))
        if unknown:
            raise ConfigError(f"TAPEFLOW_LIVE_OUTPUTS takes lake, clickhouse or none, got {unknown}")
        clock = get("TAPEFLOW_LIVE_CLOCK") or "auto"
        if clock not in CLOCKS:
            raise ConfigError(f"TAPEFLOW_LIVE_CLOCK takes {', '.join(CLOCKS)}, got {clock!r}")
        intervals = _csv(get("TAPEFLOW_LIVE_BARS", ",".join(STANDARD_INTERVALS)))
        for interval in intervals:
            _checked("TAPEFLOW_LIVE_BARS", interval, interval_ns)
        journal = get("TAPEFLOW_LIVE_JOURNAL", "journal")
        port = _int(get, "TAPEFLOW_LIVE_METRICS_PORT", None, low=0)
        if port is not None and port > 65535:
            raise ConfigError(f"TAPEFLOW_LIVE_METRICS_PORT must be a TCP port (0-65535), got {port}")
        return cls(
            venue=venue, format_name=get("TAPEFLOW_LIVE_FORMAT") or venue, symbols=symbols,
            endpoint=get("TAPEFLOW_LIVE_ENDPOINT") or None,
            rest_endpoint=get("TAPEFLOW_LIVE_REST_ENDPOINT") or None,
            capture=capture, journal=Path(journal) if journal and journal != "none" else None,
            duration_ns=_duration(get, "TAPEFLOW_LIVE_DURATION", None),
            idle_stop_ns=_duration(get, "TAPEFLOW_LIVE_IDLE_EXIT", None),
            levels=_int(get, "TAPEFLOW_LIVE_LEVELS", 10, low=1) or 10,
            snapshot_interval_ns=_duration(get, "TAPEFLOW_LIVE_INTERVAL", 1_000_000_000) or 1_000_000_000,
            intervals=intervals,
            batch_events=_int(get, "TAPEFLOW_LIVE_BATCH_EVENTS", DEFAULT_BATCH_EVENTS, low=1)
            or DEFAULT_BATCH_EVENTS,
            batch_ns=_duration(get, "TAPEFLOW_LIVE_BATCH_TIME", None),
            outputs=tuple(o for o in outputs if o != "none"),
            bbo_as_quote=_bool(get, "TAPEFLOW_LIVE_BBO_AS_QUOTE", False),
            raw=_bool(get, "TAPEFLOW_LIVE_RAW", True),
            signals=_bool(get, "TAPEFLOW_LIVE_SIGNALS", False),
            degraded_ns=(_int(get, "TAPEFLOW_LIVE_DEGRADED_MS", 1000, low=1) or 1000) * 1_000_000,
            client_options=tuple(sorted(_json_object(get, "TAPEFLOW_LIVE_CLIENT_OPTIONS").items())),
            progress_s=float(_int(get, "TAPEFLOW_LIVE_PROGRESS_S", 2, low=1) or 2),
            clock=clock,
            metrics_port=port,
            publish=get("TAPEFLOW_LIVE_PUBLISH") or None,
        )

    def health_clock(self) -> str:
        """``wall``, ``relative`` or ``none``: ``auto`` is ``wall`` for a live feed, ``none`` for files."""
        if self.clock != "auto":
            return self.clock
        return "none" if self.capture else "wall"


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _checked(name: str, text: str, parse: Any) -> Any:
    try:
        return parse(text)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from exc


def _duration(get: Any, name: str, default: int | None) -> int | None:
    from tapeflow.timeutil import parse_duration_ns

    text = (get(name) or "").strip()
    if not text or (default is None and text.lower() == "none"):
        return default
    return _checked(name, text, parse_duration_ns)


def _int(get: Any, name: str, default: int | None, *, low: int) -> int | None:
    text = get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from exc
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return value


def _bool(get: Any, name: str, default: bool) -> bool:
    text = (get(name) or "").strip().lower()
    if not text:
        return default
    if text not in _TRUE + _FALSE:
        raise ConfigError(f"{name} takes 1/0, true/false or yes/no, got {text!r}")
    return text in _TRUE


def _json_object(get: Any, name: str) -> dict[str, Any]:
    text = get(name) or "{}"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object, got {text!r}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {text!r}")
    return value
