"""The ``tapeflow signals`` subcommands: ``score`` alerts against planted truth, ``detect`` signals,
``report`` them over every real capture."""

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
    de.add_argument("--format", required=True, choices=[*format_names(), "options"],
                    help="a venue format, or options: trade and option_ticker Parquet files "
                         "(tapeflow simulate --options) for the cross-strike detector")
    de.add_argument("paths", nargs="+", type=Path)
    de.add_argument("--out", type=Path, required=True, help="output folder (gets signals.parquet)")
    de.add_argument("--preset", default=None,
                    help="thresholds preset for every instrument (default: each instrument's own)")
    de.set_defaults(func=_cmd_detect)

    rp = inner.add_parser("report", help="detect over every real capture, write alert rates and top alerts "
                                          "as Markdown")
    rp.add_argument("--data", type=Path, default=None, help="real-data folder (default: TAPEFLOW_REAL_DATA)")
    rp.add_argument("--out", type=Path, required=True, help="Markdown file to write")
    rp.add_argument("--max-hours", type=float, default=8.0, help="judge each file's first hours only")
    rp.add_argument("--top", type=int, default=5, help="alerts shown per kind")
    rp.set_defaults(func=_cmd_report)
    return p


def _cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.signals.config import config_path, load
    from tapeflow.signals.realruns import run_all, unread_notes
    from tapeflow.signals.report import render

    thresholds = load(config_path(settings))
    root = args.data if args.data is not None else settings.real_data
    runs = run_all(root, thresholds, max_hours=args.max_hours)
    text = render(runs, args.top) + "\nNot run (no decoder, or not a market capture):\n\n" + unread_notes()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"report: {sum(r.signals is not None for r in runs)} of {len(runs)} inputs run, "
          f"thresholds from {thresholds.path}")
    print(f"wrote {args.out}")
    return 0


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
    if args.format == "options":
        from tapeflow.signals.cross_strike import detect_paths

        table = detect_paths(args.paths, thresholds, preset=args.preset)
    else:
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
            "calibration_z": _num(report.calibration_z),
            "calibration_p": _num(report.calibration_p),
            "reliability": [{"low": b.low, "high": b.high, "count": b.count,
                             "mean_confidence": _num(b.mean_confidence), "hit_rate": _num(b.hit_rate)}
                            for b in report.bins],
        }, indent=1))
    else:
        print(report.render())
    return 0


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else x
