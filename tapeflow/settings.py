"""Configuration, read once at entry points from ``TAPEFLOW_*`` variables (never at import)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.ml.kinds import MODELS, checked_kinds


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
        ml_flat_share: retraining's label threshold as a share of flat training rows
            (``TAPEFLOW_ML_FLAT_SHARE``, in (0, 1); None: the examples' own alpha; ``docs/models.md``).
        ml_retrain_kinds: the model kinds the nightly retraining and the drift sensor train and
            compare (``TAPEFLOW_ML_RETRAIN_KINDS``, comma-separated, from ``tapeflow.ml.kinds.KINDS``;
            default logreg, mlp, tcn; add ``deeplob`` to retrain the raw-book model; ``docs/models.md``).
    """

    lake_dir: Path = Path("lake")
    clickhouse_dsn: str = "chdb:warehouse"
    real_data: Path = Path("../shared/data")
    signals_config: Path | None = None
    alerts_config: Path | None = None
    ml_flat_share: float | None = None
    ml_retrain_kinds: tuple[str, ...] = MODELS

    def __repr__(self) -> str:
        # a server DSN may carry a password in its userinfo or query: never in a repr (logs,
        # tracebacks, Dagster metadata print it)
        from tapeflow.storage.dsn import redact_dsn

        return (f"Settings(lake_dir={self.lake_dir!r}, clickhouse_dsn={redact_dsn(self.clickhouse_dsn)!r}, "
                f"real_data={self.real_data!r}, signals_config={self.signals_config!r}, "
                f"alerts_config={self.alerts_config!r}, ml_flat_share={self.ml_flat_share!r}, "
                f"ml_retrain_kinds={self.ml_retrain_kinds!r})")

    __str__ = __repr__

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
            ml_flat_share=_share(env.get("TAPEFLOW_ML_FLAT_SHARE", "")),
            ml_retrain_kinds=_retrain_kinds(env.get("TAPEFLOW_ML_RETRAIN_KINDS", "")),
        )


def _retrain_kinds(text: str) -> tuple[str, ...]:
    if not text.strip():
        return MODELS
    return checked_kinds(_csv(text), "TAPEFLOW_ML_RETRAIN_KINDS")


def _share(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise ConfigError(f"TAPEFLOW_ML_FLAT_SHARE must be a number in (0, 1), got {text!r}")
    return value


CLOCKS = ("auto", "wall", "relative", "none")  # TAPEFLOW_LIVE_CLOCK (see LiveSettings.health_clock)
OUTPUTS = ("lake", "clickhouse", "none")
# Rows per micro-batch of a capture (a live feed's batches are what arrived, whatever this is).
# 20,000 rather than 5,000: a batch's fixed cost through the stages is 1-3 ms on a sparse or L3
# capture (grid rows, bars, metric samples, book state per batch), so a 4x larger batch replays
# the LOBSTER AMZN day and the simulator feed ~1.6-2x faster (docs/live-ops.md, bench.live); and
# 100,000 rather than 20,000 (round s27): the stages over those two replays ~1.4-1.7x faster again.
DEFAULT_BATCH_EVENTS = 100_000
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
        polls: derivatives REST polls, ``VENUE:SYMBOL[,SYMBOL...][;...]`` (``TAPEFLOW_LIVE_POLL``;
            ``tapeflow.derivatives.stream.parse_polls``); empty: none.
        poll_url: base URL replacing every polled venue's (``TAPEFLOW_LIVE_POLL_URL``; a replay
            server's ``rest_url``).
        publish: loopback ``HOST:PORT`` the dashboard's relay subscribes to (``TAPEFLOW_LIVE_PUBLISH``;
            None: not published; docs/dashboard.md).
        failover: a failover config file (``TAPEFLOW_LIVE_FAILOVER``; docs/failover.md): its sources
            replace ``venue``/``symbols``; None: no failover.
        derivatives: the venue's derivatives websocket channels (``TAPEFLOW_LIVE_DERIVATIVES``):
            ``with`` the book feed, ``only`` (no book feed), or '' (none; docs/derivatives.md).
        derivatives_options: their connector's keyword arguments
            (``TAPEFLOW_LIVE_DERIVATIVES_OPTIONS``, JSON object).
        stream_silence_ns: with both the derivatives channels and polls, the channels' silence (event
            time) that hands an instrument's derived rows to the polls (``TAPEFLOW_LIVE_STREAM_SILENCE``,
            a duration, default 10 s; docs/derivatives.md).
        predict: score the registry's champion model on the 1 s grid and emit ``prediction`` rows
            (``TAPEFLOW_LIVE_PREDICT``; off by default; docs/models.md).
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
    polls: str = ""
    poll_url: str | None = None
    publish: str | None = None
    failover: Path | None = None
    derivatives: str = ""
    derivatives_options: tuple[tuple[str, Any], ...] = ()
    predict: bool = False
    stream_silence_ns: int = 10_000_000_000

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
        polls = get("TAPEFLOW_LIVE_POLL", "").strip()
        failover = Path(get("TAPEFLOW_LIVE_FAILOVER")) if get("TAPEFLOW_LIVE_FAILOVER") else None
        if failover is not None:
            from tapeflow.live.failover_config import load_failover

            if capture or venue:
                raise ConfigError("TAPEFLOW_LIVE_FAILOVER names the sources: leave TAPEFLOW_LIVE_CAPTURE "
                                  "and TAPEFLOW_LIVE_VENUE unset")
            _checked("TAPEFLOW_LIVE_FAILOVER", failover, load_failover)
        if not capture and not (venue and symbols) and not polls and failover is None:
            raise ConfigError("set TAPEFLOW_LIVE_CAPTURE (files to replay), TAPEFLOW_LIVE_VENUE and "
                              "TAPEFLOW_LIVE_SYMBOLS (a live feed), or TAPEFLOW_LIVE_POLL "
                              "(derivatives polls)")
        if polls:
            from tapeflow.derivatives.poll_spec import parse_spec

            _checked("TAPEFLOW_LIVE_POLL", polls, parse_spec)
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
        derivatives = get("TAPEFLOW_LIVE_DERIVATIVES", "")
        if derivatives not in ("", "with", "only"):
            raise ConfigError(f"TAPEFLOW_LIVE_DERIVATIVES takes with or only, got {derivatives!r}")
        if derivatives and not (venue and symbols):
            raise ConfigError("TAPEFLOW_LIVE_DERIVATIVES needs TAPEFLOW_LIVE_VENUE and TAPEFLOW_LIVE_SYMBOLS")
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
            polls=polls,
            poll_url=get("TAPEFLOW_LIVE_POLL_URL") or None,
            publish=get("TAPEFLOW_LIVE_PUBLISH") or None,
            failover=failover,
            derivatives=derivatives,
            derivatives_options=tuple(sorted(_json_object(get, "TAPEFLOW_LIVE_DERIVATIVES_OPTIONS").items())),
            predict=_bool(get, "TAPEFLOW_LIVE_PREDICT", False),
            stream_silence_ns=_duration(get, "TAPEFLOW_LIVE_STREAM_SILENCE", 10_000_000_000)
            or 10_000_000_000,
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


@dataclass(frozen=True)
class DatabentoSettings:
    """Databento access and spending limits (``docs/databento.md``), read once by entry points.

    Attributes:
        api_key: the API key (``DATABENTO_API_KEY``, or the file ``DATABENTO_API_KEY_FILE`` names):
            a :class:`~tapeflow.secrets.Secret`, masked in ``repr``/``str``; None when unset.
        historical_url: the historical API's base URL (``TAPEFLOW_DATABENTO_HISTORICAL``).
        live_host, live_port: the live gateway (``TAPEFLOW_DATABENTO_LIVE`` = ``host:port``;
            default: ``<dataset>.lsg.databento.com``, with the dots of the dataset code as dashes,
            port 13000).
        daily_budget_usd, monthly_budget_usd: the most the historical requests of one UTC day /
            calendar month may cost together (``TAPEFLOW_DATABENTO_DAILY_BUDGET_USD``,
            ``TAPEFLOW_DATABENTO_MONTHLY_BUDGET_USD``; default 0: only free requests run).
    """

    api_key: Any = None
    historical_url: str = "https://hist.databento.com"
    live_host: str | None = None
    live_port: int = 13000
    daily_budget_usd: float = 0.0
    monthly_budget_usd: float = 0.0

    def __repr__(self) -> str:
        # the dataclass repr would call repr() on the key, which masks it; spelled out to keep it so
        return (f"DatabentoSettings(api_key={self.api_key!r}, historical_url={self.historical_url!r}, "
                f"live={self.live_host}:{self.live_port}, daily_budget_usd={self.daily_budget_usd}, "
                f"monthly_budget_usd={self.monthly_budget_usd})")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DatabentoSettings:
        """Read and check the variables.

        Raises:
            ConfigError: a budget that is not a non-negative number, a live gateway that is not
                ``host:port``, an unreadable key file (messages name the variable, never the key).
        """
        from tapeflow.secrets import env_secret

        env = os.environ if env is None else env
        default = cls()
        host, port = default.live_host, default.live_port
        live = env.get("TAPEFLOW_DATABENTO_LIVE", "").strip()
        if live:
            host, sep, port_text = live.rpartition(":")
            if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise ConfigError(f"TAPEFLOW_DATABENTO_LIVE must be host:port, got {live!r}")
            port = int(port_text)
        return cls(
            api_key=env_secret(env, "DATABENTO_API_KEY"),
            historical_url=(env.get("TAPEFLOW_DATABENTO_HISTORICAL") or default.historical_url).rstrip("/"),
            live_host=host, live_port=port,
            daily_budget_usd=_usd(env, "TAPEFLOW_DATABENTO_DAILY_BUDGET_USD"),
            monthly_budget_usd=_usd(env, "TAPEFLOW_DATABENTO_MONTHLY_BUDGET_USD"),
        )


def _usd(env: Mapping[str, str], name: str) -> float:
    text = (env.get(name) or "").strip()
    if not text:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of US dollars, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= 0, got {text!r}")
    return value
