"""``tapeflow derivatives``: decode derivatives captures into Parquet files, the lake and the warehouse."""

from __future__ import annotations

import argparse
import functools
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tapeflow.errors import TapeflowError
from tapeflow.settings import Settings

EXIT_REJECTED = 3  # as ``tapeflow ingest``: input units were dead-lettered (docs/cli.md)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``derivatives`` on the ``tapeflow`` parser's subparsers."""
    from tapeflow.derivatives import FORMATS

    p = sub.add_parser(
        "derivatives",
        help="decode funding, mark, index, open interest and liquidation streams",
        description="Derivatives captures (websocket frames and REST bodies, docs/derivatives.md) into one "
        "Parquet file per record in --out (dead letters in rejected.parquet), and/or into the lake "
        "and the warehouse as `tapeflow ingest` stores every record.",
    )
    p.add_argument("--format", required=True, choices=sorted(FORMATS))
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--out", type=Path, help="output folder (gets <record>.parquet)")
    p.add_argument("--lake", type=Path, help="also store the rows in this lake root")
    p.add_argument(
        "--clickhouse", help="also load the rows into this warehouse DSN (chdb:///DIR or http(s)://)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--allow-rejects",
        action="store_true",
        help="exit 0 even when input units were dead-lettered (default: exit 3)",
    )
    p.set_defaults(func=_cmd_derivatives)
    return p


def _cmd_derivatives(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.wire.inputs import check_inputs

    if args.out is None and args.lake is None and args.clickhouse is None:
        raise TapeflowError("say where the rows go: --out DIR, --lake DIR and/or --clickhouse DSN")
    paths = check_inputs(args.paths)
    progress = not args.quiet and sys.stderr.isatty()
    reasons: Counter[str] = Counter()
    if args.out is not None:
        reasons = _to_files(args.format, paths, args.out, progress)
    if args.lake is not None or args.clickhouse is not None:
        reasons = _to_storage(args.format, paths, args.lake, args.clickhouse, progress)
    from tapeflow.wire.rejects import IGNORED_BY_RULE

    ignored = {r: n for r, n in reasons.items() if r in IGNORED_BY_RULE}
    if ignored:
        print(f"ignored by rule: {sum(ignored.values()):,} input units ({_reasons(ignored)})")
    bad = {r: n for r, n in reasons.items() if r not in IGNORED_BY_RULE}
    if bad and not args.allow_rejects:
        print(
            f"tapeflow: {sum(bad.values()):,} input units rejected ({_reasons(bad)}); stored with the rows "
            "as `rejected`. Exit code 3; pass --allow-rejects to accept them",
            file=sys.stderr,
        )
        return EXIT_REJECTED
    return 0


def _to_files(fmt: str, paths: list[Path], out: Path, progress: bool) -> Counter[str]:
    """Decode into ``out/<record>.parquet``; the dead letters' reasons, counted."""
    from tapeflow.derivatives import decoder
    from tapeflow.progress import progress_bar
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.wire.capture import merge

    chunks = []
    rows = 0
    dec = decoder(fmt)
    with progress_bar(sum(p.stat().st_size for p in paths), f"derivatives {fmt}", enabled=progress) as bar:
        for chunk in dec.run(paths):
            chunks.append(chunk)
            rows += sum(chunk.counts().values())
            bar.update(max(0, min(chunk.bytes_read, bar.total - bar.n)))
            bar.set_postfix(rows=f"{rows:,}", refresh=False)
    tables = merge(chunks)
    for name, table in sorted(tables.items()):
        nbytes = write_parquet_atomic(table, out / f"{name}.parquet")
        print(f"{name:14} {table.num_rows:>10,} rows  {out / f'{name}.parquet'} ({nbytes:,} bytes)")
    if dec.quiet_frames:
        quiet = ", ".join(f"{k} {n:,}" for k, n in dec.quiet_frames.most_common())
        print(f"control frames (no row by design): {quiet}")
    reasons = Counter(tables["rejected"].column("reason").to_pylist()) if "rejected" in tables else Counter()
    print(f"derivatives: {dec.frames:,} frames -> {rows - sum(reasons.values()):,} rows in {out}")
    return reasons


def _to_storage(
    fmt: str, paths: list[Path], lake: Path | None, dsn: str | None, progress: bool
) -> Counter[str]:
    """Store through ``tapeflow.storage.ingest`` (lake partitions, warehouse tables of every record)."""
    from tapeflow.derivatives import decode
    from tapeflow.storage.ingest import ingest
    from tapeflow.wire.registry import VenueFormat

    venue_format = VenueFormat(f"derivatives {fmt}", functools.partial(decode, fmt))
    summary = ingest(venue_format, paths, lake=lake, clickhouse=dsn, progress=progress)
    print(summary.render())
    return Counter(summary.rejected)


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
