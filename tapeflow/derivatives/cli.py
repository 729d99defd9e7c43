"""``tapeflow derivatives``: decode derivatives captures into one Parquet file per record."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tapeflow.settings import Settings

EXIT_REJECTED = 3  # as ``tapeflow ingest``: input units were dead-lettered (docs/cli.md)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``derivatives`` on the ``tapeflow`` parser's subparsers."""
    from tapeflow.derivatives import FORMATS

    p = sub.add_parser(
        "derivatives",
        help="decode funding, mark, index, open interest and liquidation streams to Parquet",
        description="Derivatives captures (websocket frames and REST bodies, docs/derivatives.md) into "
        "one Parquet file per record in --out, dead letters in rejected.parquet.",
    )
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="output folder (gets <record>.parquet)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--allow-rejects",
        action="store_true",
        help="exit 0 even when input units were dead-lettered (default: exit 3)",
    )
    p.set_defaults(func=_cmd_derivatives)
    return p


def _cmd_derivatives(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.derivatives import decoder
    from tapeflow.progress import progress_bar
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.wire.capture import merge
    from tapeflow.wire.inputs import check_inputs
    from tapeflow.wire.rejects import IGNORED_BY_RULE

    paths = check_inputs(args.paths)
    chunks = []
    rows = 0
    dec = decoder(args.format)
    enabled = not args.quiet and sys.stderr.isatty()
    with progress_bar(
        sum(p.stat().st_size for p in paths), f"derivatives {args.format}", enabled=enabled
    ) as bar:
        for chunk in dec.run(paths):
            chunks.append(chunk)
            rows += sum(chunk.counts().values())
            bar.update(max(0, min(chunk.bytes_read, bar.total - bar.n)))
            bar.set_postfix(rows=f"{rows:,}", refresh=False)
    tables = merge(chunks)
    for name, table in sorted(tables.items()):
        nbytes = write_parquet_atomic(table, args.out / f"{name}.parquet")
        print(f"{name:14} {table.num_rows:>10,} rows  {args.out / f'{name}.parquet'} ({nbytes:,} bytes)")
    if dec.quiet_frames:
        quiet = ", ".join(f"{k} {n:,}" for k, n in dec.quiet_frames.most_common())
        print(f"control frames (no row by design): {quiet}")
    reasons = Counter(tables["rejected"].column("reason").to_pylist()) if "rejected" in tables else Counter()
    ignored = {r: n for r, n in reasons.items() if r in IGNORED_BY_RULE}
    if ignored:
        print(f"ignored by rule: {sum(ignored.values()):,} input units ({_reasons(ignored)})")
    bad = {r: n for r, n in reasons.items() if r not in IGNORED_BY_RULE}
    print(f"derivatives: {dec.frames:,} frames -> {rows - sum(reasons.values()):,} rows in {args.out}")
    if bad and not args.allow_rejects:
        print(
            f"tapeflow: {sum(bad.values()):,} input units rejected ({_reasons(bad)}); stored in "
            f"{args.out / 'rejected.parquet'}. Exit code 3; pass --allow-rejects to accept them",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    return 0


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
