"""The ``tapeflow signals`` subcommands: ``score`` alerts against planted truth, ``detect`` signals."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from tapeflow.settings import Settings


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``signals score`` and ``signals detect`` on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser("signals", help="detect signals in any input, score them against planted truth",
                       description="Detectors and their scores (docs/signals.md).")
    inner = p.add_subparsers(dest="signals_command", metavar="SUBCOMMAND", required=True)

    sc = inner.add_parser("score", help="precision, recall, F1, latency and calibration against truth")
    sc.add_argument("--truth", type=Path, required=True, help="the simulator's episodes.parquet")
    sc.add_argument("--signals", type=Path, required=True,
                    help="a Parquet file of signal rows, a folder of them, or a lake root")
    sc.add_argument("--kinds", default=None, help="comma-separated kinds to score (default: all present)")
    sc.add_argument("--json", action="store_true", help="print the scores as JSON")
    sc.set_defaults(func=_cmd_score)

    from tapeflow.wire.registry import format_names

    de = inner.add_parser("detect", help="run every detector over input files, write signal rows as Parquet")
    de.add_argument("--format", required=True, choices=format_names())
    de.add_argument("paths", nargs="+", type=Path)
    de.add_argument("--out", type=Path, required=True, help="output folder (gets signals.parquet)")
    de.add_argument("--preset", default=None,
                    help="thresholds preset for every instrument (default: each instrument's own)")
    de.set_defaults(func=_cmd_detect)
    return p


def _cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.signals.config import config_path, load
    from tapeflow.signals.detect import detect_format
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.wire.inputs import check_inputs
    from tapeflow.wire.registry import get_format
    from tapeflow.wire.sniff import check_format

    thresholds = load(config_path(settings))
    if args.preset is not None and args.preset not in thresholds.presets:
        from tapeflow.errors import ConfigError

        raise ConfigError(f"--preset {args.preset!r} is not in {thresholds.path} "
                          f"(have {', '.join(thresholds.presets)})")
    paths = check_inputs(args.paths)
    check_format(get_format(args.format), paths)
    table = detect_format(args.format, paths, thresholds, preset=args.preset)
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "signals.parquet"
    write_parquet_atomic(table, out)
    kinds = table.column("kind").to_pylist() if table.num_rows else []
    counts = ", ".join(f"{k} {kinds.count(k)}" for k in sorted(set(kinds))) or "none"
    print(f"signals: {table.num_rows} ({counts}) with thresholds from {thresholds.path}")
    print(f"wrote {out}")
    return 0


def _cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.signals.score import read_signals, read_truth, score

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    report = score(read_truth(args.truth), read_signals(args.signals), kinds=kinds)
    if args.json:
        print(json.dumps({
            "kinds": [{"kind": k.kind, "episodes": k.episodes, "alerts": k.alerts, "hits": k.hits,
                       "precision": _num(k.precision), "recall": _num(k.recall), "f1": _num(k.f1),
                       "latency_median_ns": _num(k.latency_median_ns)} for k in report.kinds],
            "ece": _num(report.ece),
            "reliability": [{"low": b.low, "high": b.high, "count": b.count,
                             "mean_confidence": _num(b.mean_confidence), "hit_rate": _num(b.hit_rate)}
                            for b in report.bins],
        }, indent=1))
    else:
        print(report.render())
    return 0


def _num(x: float) -> float | None:
    return None if math.isnan(x) else x
