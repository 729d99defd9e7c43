"""``tapeflow databento cost|fetch|ledger``: price a historical request, pull it under the cost guard,
show the spend ledger (docs/databento.md)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.settings import Settings


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``databento`` on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser("databento", help="price, pull (within budget) and ledger Databento history",
                       description="Databento's historical API under the cost guard: every pull is priced "
                       "first and refused over the daily or monthly budget "
                       "(TAPEFLOW_DATABENTO_*_BUDGET_USD); the key comes from DATABENTO_API_KEY or "
                       "DATABENTO_API_KEY_FILE.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("cost", "print a request's estimate and billable size (free)"),
                       ("fetch", "pull a request into the landing folder if the budgets allow it")):
        a = actions.add_parser(name, help=text)
        a.add_argument("--dataset", default="GLBX.MDP3", help="dataset code (default GLBX.MDP3)")
        a.add_argument("--schema", default="mbo", help="DBN schema (default mbo)")
        a.add_argument("--symbols", required=True, help="symbols, comma separated (ALL_SYMBOLS: every one)")
        a.add_argument("--start", required=True, help="inclusive start: ns since the epoch or ISO UTC")
        a.add_argument("--end", required=True, help="exclusive end: ns since the epoch or ISO UTC")
        a.add_argument("--why", default="tapeflow databento fetch", help="the ledger's reason for the pull")
        a.add_argument("--landing", type=Path, help="landing folder (default $TAPEFLOW_LANDING or ./landing)")
        _storage(a)
        a.set_defaults(func=_cmd_cost if name == "cost" else _cmd_fetch)
    ledger = actions.add_parser("ledger", help="print the spend ledger's last rows")
    ledger.add_argument("--last", type=int, default=20, help="rows to print (default 20)")
    _storage(ledger)
    ledger.set_defaults(func=_cmd_ledger)
    return p


def _storage(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", type=Path, help="lake root of the ledger (default $TAPEFLOW_LAKE or ./lake)")
    p.add_argument("--clickhouse", help="also load ledger rows into this DSN (default: the lake only)")


def _request(args: argparse.Namespace) -> Any:
    from tapeflow.venues.databento.historical import RangeRequest, parse_time_ns

    try:
        start, end = parse_time_ns(args.start), parse_time_ns(args.end)
    except ValueError as exc:
        raise ConfigError(f"--start/--end take ns since the epoch or an ISO time: {exc}") from None
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip() and s.strip() != "ALL_SYMBOLS")
    return RangeRequest(args.dataset, args.schema, symbols, start, end)


def _guard(args: argparse.Namespace, settings: Settings) -> Any:
    from tapeflow.settings import DatabentoSettings
    from tapeflow.venues.databento.spend import guard_from_settings

    return guard_from_settings(DatabentoSettings.from_env(), args.lake or settings.lake_dir,
                               clickhouse_dsn=args.clickhouse)


def _cmd_cost(args: argparse.Namespace, settings: Settings) -> int:
    request = _request(args)
    guard = _guard(args, settings)
    cost, size = guard.client.get_cost(request), guard.client.get_billable_size(request)
    print(f"databento: {request.dataset} {request.schema} {args.symbols}: ${cost:,.4f} "
          f"({size:,} billable bytes); budgets ${guard.settings.daily_budget_usd:,.2f}/day, "
          f"${guard.settings.monthly_budget_usd:,.2f}/month")
    return 0


def _cmd_fetch(args: argparse.Namespace, settings: Settings) -> int:
    landing = args.landing or Path(os.environ.get("TAPEFLOW_LANDING", "landing"))
    row = _guard(args, settings).fetch(_request(args), landing, args.why)
    print(f"databento: landed {row['bytes_received']:,} bytes for ${row['estimate_usd']:,.4f} "
          f"({row['billable_bytes']:,} billable bytes): {row['path']}")
    return 0


def _cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.schemas.databento import DATABENTO_SPEND
    from tapeflow.storage import lake
    from tapeflow.venues.databento.spend import ledger_markdown

    ledger = lake.read(DATABENTO_SPEND, args.lake or settings.lake_dir)
    if not ledger.num_rows:
        print("databento: the spend ledger is empty")
        return 0
    print(ledger_markdown(ledger, last=args.last))
    return 0
