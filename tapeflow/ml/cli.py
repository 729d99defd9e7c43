"""``tapeflow ml evaluate``: walk-forward evaluation of the models against the naive baselines."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tapeflow.settings import Settings


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``ml evaluate`` on the ``tapeflow`` parser's subparsers."""
    from tapeflow.wire.registry import format_names

    p = sub.add_parser("ml", help="train and evaluate the models walk-forward against naive baselines",
                       description="Models, walk-forward and the out-of-sample table (docs/models.md).")
    inner = p.add_subparsers(dest="ml_command", metavar="SUBCOMMAND", required=True)
    ev = inner.add_parser("evaluate", help="walk-forward by day (or hour): the model-vs-baseline table")
    ev.add_argument("--format", required=True, choices=format_names())
    ev.add_argument("paths", nargs="+", type=Path, help="input files, one instrument-day each")
    ev.add_argument("--out", type=Path, required=True, help="output folder (gets table.md and scores.json)")
    ev.add_argument("--horizon", type=int, default=10, help="label horizon in seconds (1, 10 or 60)")
    ev.add_argument("--fold", default="day",
                    help="walk-forward unit: day (one per file), or a duration such as 1h or 15m")
    ev.add_argument("--train-folds", type=int, default=3, help="folds before the test fold that train")
    ev.add_argument("--models", default="logreg,mlp,tcn",
                    help="comma-separated: logreg, mlp, tcn, deeplob (raw book levels; its examples get "
                         "the book inputs, docs/models.md)")
    ev.add_argument("--block", default="1h", help="bootstrap block length for the intervals")
    ev.add_argument("--seed", type=int, default=0, help="initialization and mini-batch seed")
    ev.add_argument("--flat-share", type=float, default=None,
                    help="relabel each fold at the threshold that makes this share of its training rows "
                         "flat (e.g. 0.333; default: the examples' alpha)")
    ev.add_argument("--signal-window", type=int, default=0, metavar="S",
                    help="add signal-score inputs over the last S seconds (every batch detector runs "
                         "over each file; docs/models.md); default 0: none")
    ev.set_defaults(func=_cmd_evaluate)
    reg = inner.add_parser("registry", help="browse the model registry: versions, champion, lineage")
    reg.add_argument("--lake", type=Path, default=None, help="lake root (default TAPEFLOW_LAKE); the "
                     "registry is <lake>/_models")
    reg.add_argument("name", nargs="?", help="one registered model (default: every one)")
    reg.set_defaults(func=_cmd_registry)
    return p


def _cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.errors import ConfigError
    from tapeflow.ml.registry import DB_NAME, Registry, default_root

    root = default_root(args.lake or settings.lake_dir)
    if not (root / DB_NAME).is_file():
        raise ConfigError(f"no model registry under {root} (the champion asset or make demo creates it)")
    registry = Registry(root)
    names = [args.name] if args.name else registry.names()
    for name in names:
        print(f"{name}")
        for v in registry.versions(name):
            mark = "*" if v.champion else " "
            f1 = v.metrics.get("macro_f1", v.metrics.get("val_macro_f1", float("nan")))
            delta = v.metrics.get("delta_vs_champion")
            versus = "-" if delta is None else f"{delta:+.3f}"
            parts = json.loads(v.tags.get("training_partitions", "[]"))
            print(f" {mark} v{v.version:<3} {v.kind:<6} macro-F1 {f1:.3f}  vs champion {versus:<6}  "
                  f"{v.tags.get('decision', '-'):<15} held out {v.tags.get('held_out', '-')}  "
                  f"trained on {len(parts)} partition(s)  "
                  f"schema {v.tags.get('feature_schema_hash', '')[:12]}  "
                  f"code {v.tags.get('code_version', '')[:12]}")
    print(f"(* champion; store {registry.uri}; the MLflow UI: make mlflow-ui)")
    return 0


def _cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.errors import ConfigError
    from tapeflow.ml.evaluate import evaluate, load
    from tapeflow.ml.examples import ExampleParams
    from tapeflow.ml.report import render, to_json
    from tapeflow.ml.walkforward import KINDS, WalkForwardConfig
    from tapeflow.timeutil import parse_duration_ns
    from tapeflow.wire.inputs import check_inputs
    from tapeflow.wire.registry import get_format
    from tapeflow.wire.sniff import check_format

    if args.signal_window < 0:
        raise ConfigError(f"--signal-window must be 0 or more seconds, was {args.signal_window}")
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    params = ExampleParams(signal_window_s=args.signal_window)
    if "deeplob" in models:  # the raw book levels join the examples (the other kinds do not read them)
        params = ExampleParams(signal_window_s=args.signal_window, book_levels=params.levels)
    if args.horizon not in params.horizons_s:
        raise ConfigError(f"--horizon {args.horizon} is not a label horizon (have {params.horizons_s})")
    unknown = [m for m in models if m not in KINDS]
    if unknown or not models:
        raise ConfigError(f"--models {args.models!r}: unknown {unknown} (have {', '.join(KINDS)})")
    if args.train_folds < 1:
        raise ConfigError(f"--train-folds must be at least 1, was {args.train_folds}")
    if args.flat_share is not None and not 0.0 < args.flat_share < 1.0:
        raise ConfigError(f"--flat-share must lie in (0, 1), was {args.flat_share}")
    fold_ns = None if args.fold == "day" else parse_duration_ns(args.fold)
    paths = check_inputs(args.paths)
    check_format(get_format(args.format), paths)
    cfg = WalkForwardConfig(horizon_s=args.horizon, train_folds=args.train_folds, models=models,
                            seed=args.seed, block_ns=parse_duration_ns(args.block),
                            flat_share=args.flat_share)
    loaded = load(args.format, paths, params, args.horizon, fold_ns)
    results = evaluate(loaded, params, cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    too_few = [f"{inst}: {len(segs)} fold(s), walk-forward needs 2" for inst, segs in loaded.segments.items()
               if len(segs) < 2]
    if not results:
        from tapeflow.errors import TapeflowError

        reasons = "; ".join(too_few + loaded.skipped) or "no instrument in the input"
        raise TapeflowError(f"nothing to evaluate walk-forward ({reasons}); try a shorter --fold")
    text = "".join(render(r, inst) + "\n" for inst, r in results.items())
    if too_few or loaded.skipped:
        text += "Not evaluated:\n\n" + "".join(f"- {line}\n" for line in too_few + loaded.skipped)
    print(text, end="")
    (args.out / "table.md").write_text(text)
    scores = {inst: to_json(r) for inst, r in results.items()}
    (args.out / "scores.json").write_text(json.dumps(scores, indent=1))
    print(f"wrote {args.out / 'table.md'} and scores.json")
    return 0
