"""``tapeflow serve``: the dashboard and the read API (docs/dashboard.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tapeflow.settings import Settings


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser(
        "serve",
        help="the live dashboard and the read API on a local web server",
        description="The dashboard (/) and the read API (/api/v1, /openapi.json) over the lake "
        "or ClickHouse, with the live flow relayed (docs/dashboard.md).",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; beyond loopback a token is required)",
    )
    p.add_argument("--port", type=int, default=8050, help="port (default 8050; 0: any free port)")
    p.add_argument("--lake", type=Path, help="lake root history is read from (default $TAPEFLOW_LAKE)")
    p.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="read history from this warehouse instead of the lake (a server http(s)://..., or a "
        "chdb: directory no other process holds)",
    )
    p.add_argument(
        "--live", metavar="HOST:PORT", help="relay the flow started with `tapeflow live --publish HOST:PORT`"
    )
    p.add_argument("--token", help="bearer token (better: TAPEFLOW_SERVE_TOKEN or TAPEFLOW_SERVE_TOKEN_FILE)")
    p.add_argument(
        "--dagster-home",
        type=Path,
        help="Dagster instance folder for quality results and runs (default $DAGSTER_HOME)",
    )
    p.add_argument(
        "--acks", type=Path, help="file for alert acknowledgements (default LAKE/_alerts/acks.jsonl)"
    )
    p.set_defaults(func=run)
    return p


def settings_of(args: argparse.Namespace, settings: Settings) -> Any:
    """The :class:`~tapeflow.serve.settings.ServeSettings` of a command line (checked).

    Raises:
        ConfigError: a bad address, a bad token, or a public address without a token.
    """
    from tapeflow.serve.settings import ServeSettings, check_bind, parse_address, resolve_token

    dagster = args.dagster_home or (
        Path(os.environ["DAGSTER_HOME"]) if os.environ.get("DAGSTER_HOME") else None
    )
    out = ServeSettings(
        host=args.host,
        port=args.port,
        lake=args.lake or settings.lake_dir,
        clickhouse=args.clickhouse,
        token=resolve_token(args.token),
        live=parse_address(args.live, "--live") if args.live else None,
        acks=args.acks,
        dagster_home=dagster,
    )
    check_bind(out)
    return out


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Serve until interrupted."""
    import uvicorn

    from tapeflow.serve.app import build_app

    serve = settings_of(args, settings)
    app = build_app(serve)
    where = f"http://{'[' + serve.host + ']' if ':' in serve.host else serve.host}:{serve.port}/"
    print(f"serve: dashboard {where}  API {where}api/v1  schema {where}openapi.json", flush=True)
    print(
        f"serve: history from {app.state.history.name} "
        f"({serve.clickhouse and 'warehouse' or serve.lake}); live "
        f"{'from ' + ':'.join(map(str, serve.live)) if serve.live else 'off (no --live)'}; "
        f"token {'required' if serve.token is not None else 'off (loopback only)'}",
        flush=True,
    )
    # uvicorn's access log prints query strings, which may carry ?token=: keep it off
    uvicorn.run(app, host=serve.host, port=serve.port, log_level="warning", access_log=False)
    return 0
