"""The ``tapeflow alerts`` subcommands: ``check`` a rules file, ``test`` every channel, load the
delivery ``ledger`` into the lake and ClickHouse."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError
from tapeflow.settings import Settings


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``alerts check`` and ``alerts test`` on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser("alerts", help="check the alert rules, send a test alert on every channel",
                       description="Alert rules, channels and delivery (docs/alerts.md).")
    inner = p.add_subparsers(dest="alerts_command", metavar="SUBCOMMAND", required=True)
    for name, text, func in (("check", "validate the alerts file, list its rules and channels", _cmd_check),
                             ("test", "send one test alert through every configured channel", _cmd_test)):
        cmd = inner.add_parser(name, help=text)
        cmd.add_argument("--config", type=Path, default=None,
                         help="the alerts file (default: TAPEFLOW_ALERTS_CONFIG)")
        cmd.set_defaults(func=func)
        if name == "test":
            cmd.add_argument("--timeout", type=float, default=60.0,
                             help="seconds to wait for every channel's outcome (retries included)")
            cmd.add_argument("--ledger", type=Path, default=None,
                             help="lake root to append the attempts' ledger rows to")
    cmd = inner.add_parser("ledger", help="load the delivery ledger journals into the lake and ClickHouse",
                           description="Merge every <lake>/_alerts/*.ledger.jsonl into alert_delivery "
                           "(idempotent: rows stored already are kept once).")
    cmd.add_argument("--lake", type=Path, default=None, help="the lake root (default: TAPEFLOW_LAKE)")
    cmd.add_argument("--journals", type=Path, default=None,
                     help="folder of the ledger journals (default: LAKE/_alerts)")
    where = cmd.add_mutually_exclusive_group()
    where.add_argument("--clickhouse", metavar="DSN", default=None,
                       help="warehouse DSN (default: TAPEFLOW_CLICKHOUSE_DSN; a chdb: directory must not "
                       "be held by another process)")
    where.add_argument("--no-clickhouse", action="store_true", help="load the lake only")
    cmd.add_argument("--no-lake", action="store_true", help="load ClickHouse only")
    cmd.set_defaults(func=_cmd_ledger)
    return p


def _path(args: argparse.Namespace, settings: Settings) -> Path:
    path = args.config or settings.alerts_config
    if path is None:
        raise ConfigError("give --config FILE or set TAPEFLOW_ALERTS_CONFIG")
    return Path(path)


def _cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.alerts.config import load

    config = load(_path(args, settings))
    print(f"{config.path}: {len(config.rules)} rules, {len(config.channels)} channels"
          + (" (quiet: nothing is sent)" if config.quiet else ""))
    for rule in config.rules:
        what = ",".join(rule.kinds or rule.states or rule.assets + rule.checks or rule.jobs) or "any"
        print(f"  rule {rule.name:<20} {rule.source:<7} {what:<24} >= {rule.min_confidence:.2f} "
              f"{rule.severity:<8} -> {', '.join(rule.channels)}")
    for channel in config.channels.values():
        print(f"  channel {channel.name:<17} {channel.type}")
    return 0


def _cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.alerts.config import load
    from tapeflow.alerts.engine import AlertEngine

    engine = AlertEngine(load(_path(args, settings)))
    alert = engine.send_test()
    deadline = time.monotonic() + args.timeout
    while engine.pending and time.monotonic() < deadline:
        engine.deliver_pending()
        due = engine.outbox.next_due_s()
        if engine.pending and due is not None:
            time.sleep(min(max(0.0, due - time.monotonic()), max(0.0, deadline - time.monotonic())))
    print(f"test alert {alert.alert_id}:")
    final = {row["channel"]: row for row in engine.ledger}
    failed = 0
    for name in engine.config.channels:
        row = final.get(name)
        if row is None or row["outcome"] != "delivered":
            failed += 1
        if row is None:
            print(f"  {name:<20} pending (no outcome within {args.timeout:g} s)")
            continue
        reason = f" {row['reason']}" if row["reason"] else ""
        print(f"  {name:<20} {row['outcome']:<12}{reason} after {row['attempt']} attempt(s), "
              f"{row['latency_ns'] / 1e6:.0f} ms")
    if args.ledger is not None:
        from tapeflow.storage.writer import Writer

        with Writer(args.ledger) as writer:
            engine.write_ledger(writer)
    return 1 if failed else 0


def _cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.alerts.ledger import load_ledger

    lake = args.lake or settings.lake_dir
    dsn = None if args.no_clickhouse else args.clickhouse or settings.clickhouse_dsn
    found = load_ledger(args.journals or lake / "_alerts", None if args.no_lake else lake, dsn)
    from tapeflow.storage.dsn import redact_dsn

    targets = [str(lake)] * (not args.no_lake) + [redact_dsn(dsn)] * (dsn is not None)
    print(f"alerts ledger: {found.rows} row(s) from {found.journals} journal(s) merged into "
          f"{' and '.join(targets) or 'nothing'}"
          + (f"; {found.torn_lines} torn line(s) skipped" if found.torn_lines else ""))
    return 0
